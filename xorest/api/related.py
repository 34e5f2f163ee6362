"""Sub-collections of an object (``/<collection>/<id>/messages``, ``/alarms``, ``/vdis``, ``/tasks``)
and the ``/users/me`` alias, as Xen Orchestra serves them."""
from flask import Blueprint, Response, g, request

from ..services.schemas import object_schema
from . import BASE_URL, params, services
from .listing import listing
from .routes import Answer, Listing, operation

bp = Blueprint("related", __name__)


def _related_listing(sub):
    """The listing of a sub-collection: its collection's objects (a VM's disks, or a snapshot's)."""
    names = {"vdis": ("vdis", "vdi-snapshots")}.get(sub, (sub,))
    return Listing(tuple(object_schema(name) for name in names))


@operation(bp, "/<collection>/<key>/<any(messages, alarms, vdis, tasks):sub>", permission="read", tags=("collections",),
           query=params.COLLECTION_QUERY, summary="An object's messages, alarms, disks or tasks",
           answers=(Answer(200, "the related objects, as a collection listing", _related_listing,
                           headers=("ETag", "Link"), alternatives=("application/x-ndjson", "text/markdown")),
                    Answer(404, "no such object, or it has no such sub-collection")))
def list_related(collection, key, sub, query):
    """The messages, alarms or tasks about an object, or the disks of a VM (through its VBDs), with
    the query parameters of any collection; items link to their own collection."""
    name, within = services().collections.related(collection, key, sub)
    return listing(name, query, within, scope=(collection, key, sub))


@operation(bp, "/users/me", permission="self", tags=("users",), summary="Yourself (a redirect)",
           answers=(Answer(307, "to your own user", headers=("Location",)),))
def me():
    """``/users/me`` is the authenticated user: a 307 to ``/rest/v0/users/<your id>``."""
    target = f"{BASE_URL}/users/{g.user['id']}"
    if request.query_string:
        target += "?" + request.query_string.decode("latin-1")
    response = Response(status=307)
    response.headers["Location"] = target
    return response
