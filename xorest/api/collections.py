"""``/rest/v0``, ``/rest/v0/<collection>`` and ``/rest/v0/<collection>/<id>``."""
from urllib.parse import urlencode

from flask import Blueprint, current_app, request

from ..services.schemas import collection_names, collection_type, object_schema
from . import BASE_URL, params, services
from .output import (RenderCache, json_response, ndjson_response, parse_fields, projector, render_json,
                     with_links)
from .routes import Answer, Header, Listing, Variable, operation
from .streaming import client_speaks_http10

bp = Blueprint("collections", __name__)


def _render_cache():
    return current_app.extensions.setdefault("xorest.render_cache", RenderCache())


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
           answers=(Answer(200, "the objects' URLs, or the chosen fields of each (ETag: not with ndjson)",
                           lambda collection: Listing(object_schema(collection)), headers=("ETag", "Link"),
                           alternatives=("application/x-ndjson",)),
                    _NOT_MODIFIED))
def list_collection(collection, query):
    """Objects in id order (or ``sort``), filtered, projected on ``fields``, cut at ``limit``
    with a ``Link: rel="next"`` to the following page."""
    svc = services().collections
    generation = svc.generation(collection)
    key = (generation, collection, query["filter"], query["limit"], query["fields_"], query["sort"],
           query["after"])
    if generation is not None and not query["ndjson"]:
        cached = _render_cache().get(key)
        if cached is not None:
            body, etag, cursor = cached
            return _link_next(json_response(None, rendered=(body, etag)), cursor)
    objects, cursor = svc.select(collection, query["filter"], query["limit"], query["sort"], query["after"])
    items = map(projector(collection, parse_fields(query["fields_"])), objects)
    if query["ndjson"]:
        return _link_next(ndjson_response(items, whole=client_speaks_http10()), cursor)
    rendered = render_json(list(items))
    if generation is not None:
        _render_cache().put(key, *rendered, cursor)
    return _link_next(json_response(None, rendered=rendered), cursor)


def _link_next(response, cursor):
    """``Link: <...>; rel="next"`` (RFC 8288) when the page was cut at ``limit``."""
    if cursor is not None:
        args = [(k, v) for k, v in request.args.items(multi=True) if k != "after"] + [("after", cursor)]
        response.headers["Link"] = f'<{request.path}?{urlencode(args)}>; rel="next"'
    return response


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
