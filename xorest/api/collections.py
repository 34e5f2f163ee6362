"""``/rest/v0``, ``/rest/v0/<collection>`` and ``/rest/v0/<collection>/<id>``."""
from flask import Blueprint

from . import BASE_URL, params, services
from .listing import listing
from .output import json_response, with_links
from .routes import Answer, operation

bp = Blueprint("collections", __name__)


@operation(bp, "/", permission="read", tags=("collections",), summary="The collections",
           answers=(Answer(200, "the collections' URLs"),))
def index():
    """The collections, as URLs."""
    return json_response([f"{BASE_URL}/{name}" for name in services().collections.names()])


@operation(bp, "/<collection>", permission="read", tags=("collections",), summary="List a collection",
           query=params.COLLECTION_QUERY,
           answers=(Answer(200, "the objects' URLs, or the chosen fields of each", headers=("ETag", "Link")),
                    Answer(304, "not modified since the ETag sent in If-None-Match")))
def list_collection(collection, query):
    """Objects in id order (or ``sort``), filtered, projected on ``fields``, cut at ``limit``
    with a ``Link: rel="next"`` to the following page."""
    return listing(collection, query)


@operation(bp, "/<collection>/<key>", permission="read", tags=("collections",), summary="One object",
           answers=(Answer(200, "the object", headers=("ETag",)), Answer(404, "no such object")))
def get_object(collection, key):
    """One object, by its id or its XAPI opaque reference."""
    obj = services().collections.get(collection, key)
    return json_response(with_links(obj, collection))
