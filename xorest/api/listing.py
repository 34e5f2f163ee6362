"""Answering a listing (a collection or a sub-collection): filter, sort, page, project,
then JSON (render-cached, with an ETag), NDJSON or a Markdown table."""
from urllib.parse import urlencode

import orjson
from flask import Response, current_app, request

from ..errors import BadRequest
from ..services import scopes
from ..services.schemas import object_schema
from . import services
from .routes import Answer, Listing
from .fragments import Fragments
from .output import (RenderCache, body_response, json_array_pieces, json_listing_response, json_response,
                     ndjson_response, parse_fields, projector, render_json)
from .streaming import client_speaks_http10


def listing_answer(description, collection=None):
    """The documented 200 of a listing: of ``collection``'s objects, or (``None``) of the
    collection the path names."""
    if collection is None:
        schema = lambda collection: Listing(object_schema(collection))  # noqa: E731 (the path's value)
    else:
        schema = Listing(object_schema(collection))
    return Answer(200, description, schema, headers=("ETag", "Link"),
                  alternatives=("application/x-ndjson", "text/markdown"))


def _render_cache():
    return current_app.extensions.setdefault("xorest.render_cache", RenderCache())


def _fragments():
    return current_app.extensions.setdefault("xorest.fragments", Fragments())


def _fields_key(fields):
    return fields if fields is None or isinstance(fields, str) else tuple(fields)


def listing(name, query, within=None, scope=()):
    """The answer for a listing of collection ``name``.

    :param query: the loaded :data:`~xorest.api.params.COLLECTION_QUERY`.
    :param within: a predicate limiting the objects (a sub-collection), or ``None``.
    :param scope: what identifies ``within`` in the render cache (the parent's id).
    """
    if query["ndjson"] and query["markdown"]:
        raise BadRequest("ndjson and markdown exclude each other", parameters=["ndjson", "markdown"])
    svc = services().collections
    generation = svc.generation(name)
    key = (generation, name, tuple(scope), scopes.cache_key(), query["filter"], query["limit"], query["fields_"],
           query["sort"], query["after"], query["markdown"])
    cacheable = generation is not None and not query["ndjson"]
    if cacheable:
        cached = _render_cache().get(key)
        if cached is not None:
            body, etag, cursor = cached
            return _link_next(_rendered(body, etag, query["markdown"]), cursor)
    objects, cursor = svc.select(name, query["filter"], query["limit"], query["sort"], query["after"], within)
    fields = parse_fields(query["fields_"])
    project = projector(name, fields)
    items = map(project, objects)
    if query["ndjson"]:
        return _link_next(ndjson_response(items, whole=client_speaks_http10()), cursor)
    if query["markdown"]:
        body = markdown_table(list(items)).encode("utf-8")
        rendered = body, render_json(body.decode("utf-8"))[1]
        response = _rendered(*rendered, markdown=True)
    else:
        if cacheable:  # pool objects: their items are kept rendered while they do not change
            pieces = _fragments().pieces((name, _fields_key(fields)), project, objects,
                                         svc.cache.snapshot().collection(name))
        else:
            pieces = json_array_pieces(items)
        response, rendered = json_listing_response(pieces, key, whole=client_speaks_http10())
    if cacheable and rendered is not None:
        _render_cache().put(key, *rendered, cursor)
    return _link_next(response, cursor)


def _rendered(body, etag, markdown):
    if not markdown:
        return json_response(None, rendered=(body, etag))
    if request.if_none_match.contains_weak(etag):
        response = Response(status=304)
    else:
        response = body_response(body, mimetype="text/markdown")
    response.set_etag(etag)
    return response


def _link_next(response, cursor):
    """``Link: <...>; rel="next"`` (RFC 8288) when the page was cut at ``limit``."""
    if cursor is not None:
        args = [(k, v) for k, v in request.args.items(multi=True) if k != "after"] + [("after", cursor)]
        response.headers["Link"] = f'<{request.path}?{urlencode(args)}>; rel="next"'
    return response


def _cell(value):
    if value is None:
        return ""
    text = value if isinstance(value, str) else orjson.dumps(value).decode("utf-8")  # JSON.stringify
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(items):
    """Items as a Markdown table (as Xen Orchestra writes it: one column per key of the
    first item but the link; URLs one per line; ``No results.`` when empty)."""
    if not items:
        return "No results."
    if isinstance(items[0], str):
        return "\n".join(items)
    headers = [key for key in items[0] if key not in ("href", "url")]  # the link is the one column left out
    rows = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    rows += ["| " + " | ".join(_cell(item.get(header)) for header in headers) + " |" for item in items]
    return "\n".join(rows)
