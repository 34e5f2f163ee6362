"""``/rest/v0``, ``/rest/v0/<collection>`` and ``/rest/v0/<collection>/<id>``."""
from flask import Blueprint

from ..services.schemas import collection_names, collection_type, object_schema
from . import BASE_URL, params, services
from .listing import listing, listing_answer
from .output import json_response, with_links
from .routes import Answer, Header, Variable, operation

bp = Blueprint("collections", __name__)


_IF_NONE_MATCH = Header("If-None-Match", "an ETag of a previous answer: 304 while the answer is the same")
_NOT_MODIFIED = Answer(304, "not modified since the ETag sent in If-None-Match", headers=("ETag",))
#: The collections, each its own path in the document (each with its objects' schema).
_COLLECTION = Variable("a collection", values=collection_names(), expand=True,
                       describe=lambda name: f"The {name} collection: {collection_type(name)} objects "
                                             f"(schema {object_schema(name).__name__}).")
#: Where the API describes itself (RFC 8631), on the API's root.
SERVICE_LINKS = f'<{BASE_URL}/docs>; rel="service-doc", <{BASE_URL}/openapi.json>; rel="service-desc"'


@operation(bp, "/", permission="read", tags=("collections",), summary="The collections",
           request_headers=(_IF_NONE_MATCH,),
           answers=(Answer(200, "the collections' URLs", {"type": "array", "items": {
                        "type": "string", "format": "uri-reference", "enum": [
                            f"{BASE_URL}/{name}" for name in collection_names()]}},
                           headers=("ETag", "Link"), example=[f"{BASE_URL}/{name}" for name in collection_names()]),
                    _NOT_MODIFIED))
def index():
    """The collections, as URLs; ``Link`` names this API's description and its page."""
    response = json_response([f"{BASE_URL}/{name}" for name in services().collections.names()])
    response.headers["Link"] = SERVICE_LINKS
    return response


@operation(bp, "/<collection>", permission="read", tags=("{collection}",), summary="List a collection",
           query=params.COLLECTION_QUERY, variables={"collection": _COLLECTION}, request_headers=(_IF_NONE_MATCH,),
           answers=(listing_answer("the objects' URLs, or the chosen fields of each (ETag: not with ndjson)"),
                    _NOT_MODIFIED))
def list_collection(collection, query):
    """Objects in id order (or ``sort``), filtered, projected on ``fields``, cut at ``limit``
    with a ``Link: rel="next"`` to the following page."""
    return listing(collection, query)


@operation(bp, "/<collection>/<key>", permission="read", tags=("{collection}",), summary="One object",
           variables={"collection": _COLLECTION,
                      "key": Variable("the object's id (its uuid; a default template's: the pool's uuid, a dash "
                                      "and its uuid) or its XAPI opaque reference")},
           request_headers=(_IF_NONE_MATCH,),
           answers=(Answer(200, "the object, whole", lambda collection: object_schema(collection), headers=("ETag",)),
                    _NOT_MODIFIED, Answer(404, "no such object")))
def get_object(collection, key):
    """One object, by its id or its XAPI opaque reference."""
    obj = services().collections.get(collection, key)
    return json_response(with_links(obj, collection))
