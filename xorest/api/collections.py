"""``/rest/v0``, ``/rest/v0/<collection>`` and ``/rest/v0/<collection>/<id>``."""
from flask import Blueprint, current_app, request

from . import BASE_URL, params, services
from .output import (RenderCache, json_response, ndjson_response, parse_fields, projector, render_json,
                     with_links)

bp = Blueprint("collections", __name__)


def _render_cache():
    return current_app.extensions.setdefault("xorest.render_cache", RenderCache())


@bp.get("/")
@bp.get("")
def index():
    """The collections, as URLs."""
    return json_response([f"{BASE_URL}/{name}" for name in services().collections.names()])


@bp.get("/<collection>")
def list_collection(collection):
    query = params.load(params.COLLECTION_QUERY, request.args)
    svc = services().collections
    generation = svc.generation(collection)
    key = (generation, collection, query["filter"], query["limit"], query["fields_"])
    if generation is not None and not query["ndjson"]:
        rendered = _render_cache().get(key)
        if rendered is not None:
            return json_response(None, rendered=rendered)
    objects = svc.select(collection, query["filter"], query["limit"])
    items = map(projector(collection, parse_fields(query["fields_"])), objects)
    if query["ndjson"]:
        return ndjson_response(items)
    rendered = render_json(list(items))
    if generation is not None:
        _render_cache().put(key, *rendered)
    return json_response(None, rendered=rendered)


@bp.get("/<collection>/<key>")
def get_object(collection, key):
    obj = services().collections.get(collection, key)
    return json_response(with_links(obj, collection))
