"""Rendering objects: field projection, ``href``/``url``, JSON (2-space) and NDJSON streams."""
import hashlib
import itertools
import os
import threading
from collections import OrderedDict

import orjson
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


def projector(collection, fields):
    """A function turning one object into its list item: a URL string, or the chosen
    fields plus ``href`` and ``url``.  Built once per request; called per object."""
    prefix = f"{BASE_URL}/{collection}/"
    if fields is None:
        return lambda obj: prefix + obj["id"]
    if fields == "*":
        def whole(obj):
            item = dict(obj)
            item["href"] = item["url"] = prefix + obj["id"]
            return item
        return whole
    simple = [path[0] for path in fields if len(path) == 1]
    nested = [path for path in fields if len(path) > 1]

    def pick(obj):
        item = {}
        for key in simple:  # a plain loop: cheaper than a comprehension's own frame
            if key in obj:
                item[key] = obj[key]
        for path in nested:
            picked = _pick(obj, path)
            if picked is not None:
                _merge(item, picked)
        item["href"] = item["url"] = prefix + obj["id"]
        return item
    return pick


def with_links(obj, collection):
    return {**obj, "href": object_url(collection, obj["id"]), "url": object_url(collection, obj["id"])}


class RenderCache:
    """Recently rendered listings, keyed by cache generation and query, bounded in bytes.

    Scripts and monitoring poll the same URLs; while the pools do not change, the same
    bytes (and ETag) are served again instead of being filtered and encoded anew.
    """

    def __init__(self, max_bytes=16 * 2**20):
        self.max_bytes = max_bytes
        self._items = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key, body, etag, cursor=None):
        """Keep a rendered page: its body, ETag and next-page cursor (``None``: last page)."""
        if len(body) > self.max_bytes // 4:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (body, etag, cursor)
            self._size += len(body)
            while self._size > self.max_bytes:
                _, (old, _, _) = self._items.popitem(last=False)
                self._size -= len(old)


def render_json(value):
    """``(body, etag)``: pretty JSON (two spaces, as Xen Orchestra) and its content hash."""
    body = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    return body, hashlib.blake2b(body, digest_size=12).hexdigest()


#: Bodies are handed to the server in pieces of this size: each write must progress within
#: the client timeout, so a slow but steady client gets a big listing, and a stalled one
#: is noticed after the timeout instead of after the whole body.
WRITE_CHUNK = 1 << 20


def _pieces(body):
    for start in range(0, len(body), WRITE_CHUNK):
        yield body[start:start + WRITE_CHUNK]


def body_response(body, status=200, mimetype="application/json"):
    """A response with ``body`` (bytes) and its ``Content-Length``, written in pieces."""
    if len(body) <= WRITE_CHUNK:
        return Response(body, status=status, mimetype=mimetype)
    response = Response(_pieces(body), status=status, mimetype=mimetype, direct_passthrough=True)
    response.content_length = len(body)
    return response


def json_response(value, status=200, rendered=None):
    """A JSON response with a content ETag and 304 support; ``rendered`` skips the encoding.

    ``If-None-Match`` uses the weak comparison (RFC 9110, 13.1.2): ``W/"tag"`` matches.
    """
    body, etag = rendered or render_json(value)
    if status == 200 and request.method in ("GET", "HEAD") and request.if_none_match.contains_weak(etag):
        response = Response(status=304)
    else:
        response = body_response(body, status)
    response.set_etag(etag)
    return response


#: A JSON listing up to this size is rendered whole (cached, content ETag, Content-Length);
#: a larger one is rendered and written in pieces as the client reads, so an answer holds
#: about this much memory whatever the number of objects it lists.
WHOLE_LISTING = 4 << 20
#: Objects rendered at a time in a listing.
LISTING_BATCH = 256
#: Names this process's renderings in weak ETags (generations are per process: the same
#: generation elsewhere may list other objects).
_PROCESS_NONCE = os.urandom(8).hex()


def json_array_pieces(items):
    """The bytes of ``render_json(list(items))``, in pieces of :data:`LISTING_BATCH` items
    (byte for byte the same document: each batch is rendered as an array, then its
    brackets are replaced by the separators of the whole)."""
    first = True
    iterator = iter(items)
    while True:
        batch = list(itertools.islice(iterator, LISTING_BATCH))
        if not batch:
            break
        body = orjson.dumps(batch, option=orjson.OPT_INDENT_2)  # b"[\n  ...\n]"
        yield (b"[\n" if first else b",\n") + body[2:-2]
        first = False
    yield b"[]\n" if first else b"\n]\n"


def rendering_etag(key):
    """The (weak) entity tag naming one rendering of a listing: its query and the cache generation it
    was read from, in this process (used for answers too large to hash first)."""
    return hashlib.blake2b(f"{_PROCESS_NONCE}:{key!r}".encode("utf-8"), digest_size=12).hexdigest()


def json_listing_response(pieces, key, whole=False):
    """A listing's JSON answer (``pieces``: its rendering, see :func:`json_array_pieces`)
    and, when it was rendered whole, ``(body, etag)`` to cache.

    Up to :data:`WHOLE_LISTING` bytes (or always, with ``whole``: HTTP/1.0 clients need a
    length), the body is rendered whole with a content ETag.  Beyond, it is streamed with
    :func:`rendering_etag`; ``If-None-Match`` is checked against both.

    :param key: what identifies the rendering (see :func:`rendering_etag`).
    """
    streamed_etag = rendering_etag(key)
    if request.method in ("GET", "HEAD") and request.if_none_match.contains_weak(streamed_etag):
        response = Response(status=304)
        response.set_etag(streamed_etag, weak=True)
        return response, None
    head, size = [], 0
    for piece in pieces:
        head.append(piece)
        size += len(piece)
        if size > WHOLE_LISTING and not whole:
            break
    else:
        body = b"".join(head)
        rendered = body, hashlib.blake2b(body, digest_size=12).hexdigest()
        return json_response(None, rendered=rendered), rendered
    response = Response(itertools.chain(head, pieces), mimetype="application/json", direct_passthrough=True)
    response.set_etag(streamed_etag, weak=True)
    return response, None


def ndjson_response(items, whole=False):
    """One compact JSON document per line, streamed (nothing is built whole in memory), or
    rendered ``whole`` with its length (for HTTP/1.0 clients: without a length, a cut
    stream would look complete to them)."""
    lines = (orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE) for item in items)
    if whole:
        return body_response(b"".join(lines), mimetype="application/x-ndjson")
    # An empty first piece sends the headers at once: a watcher waiting for its first
    # change still learns that its request was accepted.
    response = Response(itertools.chain((b"",), lines), mimetype="application/x-ndjson")
    response.headers["X-Accel-Buffering"] = "no"  # nginx passes each line on as it comes
    return response
