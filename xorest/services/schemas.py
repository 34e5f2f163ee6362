"""The object schemas of every collection, for the API's description (``xorest/api/openapi.py``).

The schemas themselves are declared next to the mappers (``xorest/objects/schemas.py``);
this only says which one each collection serves.
"""
from ..objects import COLLECTIONS
from ..objects.schemas import REFERENCED, SCHEMAS
from .collections import LOCAL_COLLECTIONS, CollectionService

#: Collections of xorest's own store -> the type of their objects.
_LOCAL_TYPES = {"servers": "server", "users": "user", "tasks": "xo-task", "audit": "audit"}
assert set(_LOCAL_TYPES) == set(LOCAL_COLLECTIONS)


def collection_type(name):
    """The Xen Orchestra type of the objects of collection ``name``."""
    return COLLECTIONS.get(name) or _LOCAL_TYPES[name]


def object_schema(name):
    """The marshmallow schema class of the objects of collection ``name``."""
    return SCHEMAS[collection_type(name)]


def collection_names():
    return CollectionService.names()


__all__ = ["REFERENCED", "SCHEMAS", "collection_type", "object_schema", "collection_names"]
