"""Rendering objects: field projection, ``href``/``url``, JSON (2-space) and NDJSON streams."""
import hashlib
import json

from flask import Response, request

from . import BASE_URL


def object_url(collection, key):
    return f"{BASE_URL}/{collection}/{key}"


def _pick(obj, path):
    """Copy the value at a dotted ``path`` of ``obj`` into a nested dict (lodash ``pick``)."""
    value = obj
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    result = current = {}
    for part in path[:-1]:
        current[part] = {}
        current = current[part]
    current[path[-1]] = value
    return result


def _merge(target, source):
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def parse_fields(text):
    """``None`` (URLs only), ``"*"`` (whole objects) or a list of dotted paths."""
    if text is None:
        return None
    names = [f.strip() for f in text.split(",") if f.strip()]
    if "*" in names:
        return "*"
    return [tuple(n.split(".")) for n in names]


def project(obj, collection, fields):
    """One list item: a URL string, or the chosen fields plus ``href`` and ``url``."""
    url = object_url(collection, obj["id"])
    if fields is None:
        return url
    if fields == "*":
        item = dict(obj)
    else:
        item = {}
        for path in fields:
            picked = _pick(obj, path)
            if picked is not None:
                _merge(item, picked)
    item["href"] = url
    item["url"] = url
    return item


def with_links(obj, collection):
    return {**obj, "href": object_url(collection, obj["id"]), "url": object_url(collection, obj["id"])}


def json_response(value, status=200):
    """Pretty JSON (two spaces, as Xen Orchestra) with a content ETag and 304 support."""
    body = (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    etag = hashlib.blake2b(body, digest_size=12).hexdigest()
    response = Response(body, status=status, mimetype="application/json")
    response.set_etag(etag)
    if status == 200 and request.method == "GET" and request.if_none_match.contains(etag):
        response = Response(status=304)
        response.set_etag(etag)
    return response


def ndjson_response(items):
    """Stream one compact JSON document per line; nothing is built whole in memory."""
    def generate():
        for item in items:
            yield json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"
    return Response(generate(), mimetype="application/x-ndjson")
