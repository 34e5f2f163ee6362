"""``/rest/v0``, ``/rest/v0/<collection>`` and ``/rest/v0/<collection>/<id>``."""
from urllib.parse import urlencode

from flask import Blueprint, current_app, request

from . import BASE_URL, params, services
from .output import (RenderCache, json_response, ndjson_response, parse_fields, projector, render_json,
                     with_links)
from .routes import Answer, operation
from .streaming import client_speaks_http10

bp = Blueprint("collections", __name__)


def _render_cache():
    return current_app.extensions.setdefault("xorest.render_cache", RenderCache())


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


@operation(bp, "/<collection>/<key>", permission="read", tags=("collections",), summary="One object",
           answers=(Answer(200, "the object", headers=("ETag",)), Answer(404, "no such object")))
def get_object(collection, key):
    """One object, by its id or its XAPI opaque reference."""
    obj = services().collections.get(collection, key)
    return json_response(with_links(obj, collection))
