"""``/rest/v0``, ``/rest/v0/<collection>`` and ``/rest/v0/<collection>/<id>``."""
from flask import Blueprint, request

from . import BASE_URL, params, services
from .output import json_response, ndjson_response, parse_fields, project, with_links

bp = Blueprint("collections", __name__)


@bp.get("/")
@bp.get("")
def index():
    """The collections, as URLs."""
    return json_response([f"{BASE_URL}/{name}" for name in services().collections.names()])


@bp.get("/<collection>")
def list_collection(collection):
    query = params.load(params.COLLECTION_QUERY, request.args)
    objects = services().collections.select(collection, query["filter"], query["limit"])
    fields = parse_fields(query["fields_"])
    items = (project(obj, collection, fields) for obj in objects)
    if query["ndjson"]:
        return ndjson_response(items)
    return json_response(list(items))


@bp.get("/<collection>/<key>")
def get_object(collection, key):
    obj = services().collections.get(collection, key)
    return json_response(with_links(obj, collection))
