"""``/rest/v0/events``: a server-sent event stream, in Xen Orchestra's protocol.

``init`` (the stream's id), ``ping`` every 30 s, and for each subscription ``add``,
``update`` and ``remove`` with the object's subscribed fields and ``$subscription``.
The stream holds one thread; it ends when the client leaves, when the client falls too
far behind (an ``error`` event says so), when the client stops reading for
``XOREST_CLIENT_TIMEOUT`` (a write waits that long at most: what is unread is the kernel's
socket buffers and one piece of events here), or when the worker stops.
"""
import logging
import threading
import time

import orjson
from flask import Blueprint, Response, g

from .. import filter as live_filter
from ..errors import Unavailable
from ..services import scopes
from ..services.auth import token_scope
from ..services.events import FellBehind
from ..services.metrics import instruments
from . import params, services
from .output import json_response, parse_fields, projector
from .routes import Answer, operation
from .streaming import client_socket, poll_client, require_framing, set_client_timeout

log = logging.getLogger(__name__)
bp = Blueprint("events", __name__)

POLL_SECONDS = 0.25
PING_SECONDS = 30.0
TOUCH_SECONDS = 60.0
#: Events are written in pieces of about this many bytes (a whole collection may change at once).
WRITE_BYTES = 64 * 1024

#: One event of the stream, as OpenAPI 3.1 describes server-sent events.
SSE_EVENT = {"type": "object", "required": ["event", "data"], "properties": {
    "event": {"type": "string", "enum": ["init", "ping", "add", "update", "remove", "error"]},
    "data": {"type": "string", "contentMediaType": "application/json",
             "description": "init: {id}; ping: {ping: ms}; add/update/remove: the object's subscribed fields "
                            "and $subscription; error: {error}"}}}

_open = 0
_open_lock = threading.Lock()


def _frame(event, data):
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _project(xo_type, fields, obj):
    """The subscribed fields of ``obj`` and ``$subscription``, as Xen Orchestra sends them."""
    item = dict(obj) if fields == "*" else projector("", parse_fields(",".join(fields)))(obj)
    item.pop("href", None)
    item.pop("url", None)
    return {"$subscription": xo_type, **item}


@operation(bp, "/events", permission="read", tags=("events",), summary="A stream of object changes (SSE)",
           answers=(Answer(200, "text/event-stream: init, ping, add, update, remove, error", SSE_EVENT, (),
                           "text/event-stream"),
                    Answer(503, "too many event streams in this worker")))
def open_stream():
    """Open a stream, then subscribe it to collections with ``POST /events/<id>/subscriptions``."""
    require_framing(None)
    config = services().config
    global _open
    with _open_lock:
        if _open >= config.events_max_streams:
            raise Unavailable("too many event streams in this worker, retry later", limit=config.events_max_streams)
        _open += 1
    try:
        stream_id = services().events.open(g.user)
    except BaseException:
        with _open_lock:
            _open -= 1
        raise
    instruments().event_streams.inc()
    set_client_timeout(config.client_timeout)
    response = Response(_stream(services(), stream_id, token_scope(g.token), client_socket()),
                        mimetype="text/event-stream", direct_passthrough=True)
    response.headers["Cache-Control"] = "no-cache, no-transform"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def _stream(svc, stream_id, scope, sock):
    """The stream's body (it runs after the view returned: it holds what it needs)."""
    global _open
    events, config = svc.events, svc.config
    try:
        yield _frame("init", {"id": stream_id})
        snapshot = svc.cache.snapshot()
        last_ping = last_touch = time.monotonic()
        while True:
            if sock is not None and poll_client(sock, POLL_SECONDS) == "gone":
                return
            if sock is None:
                time.sleep(POLL_SECONDS)
            subscriptions = events.subscriptions(stream_id)
            scopes.use(scope)
            try:
                with live_filter.evaluation_budget(config.regex_timeout):
                    snapshot, changes = events.changes(snapshot.generation, snapshot, subscriptions)
            except FellBehind as exc:
                yield _frame("error", {"error": str(exc)})
                return
            except live_filter.RegexTimeout as exc:
                yield _frame("error", {"error": f"a subscription's filter is too costly: {exc}"})
                return
            finally:
                scopes.use(None)
            out, size = [], 0
            for event, xo_type, fields, obj, before in changes:
                data = _project(xo_type, fields, obj)
                if event == "update" and fields != "*" and data == _project(xo_type, fields, before):
                    continue  # nothing the client asked for changed
                out.append(_frame(event, data))
                size += len(out[-1])
                if size >= WRITE_BYTES:
                    # written as it is rendered: a client that reads slowly (or not at all)
                    # holds one piece here, whatever changed, until the client timeout
                    yield b"".join(out)
                    out, size = [], 0
            now = time.monotonic()
            if now - last_ping >= PING_SECONDS:
                out.append(_frame("ping", {"ping": int(time.time() * 1000)}))
                last_ping = now
            if now - last_touch >= TOUCH_SECONDS:
                events.touch(stream_id)
                last_touch = now
            if out:
                yield b"".join(out)
    finally:
        with _open_lock:
            _open -= 1
        instruments().event_streams.dec()
        try:
            events.close(stream_id)
        except Exception:  # the store may be unavailable; the stream is gone either way
            log.exception("cannot remove event stream %s", stream_id)


@operation(bp, "/events/<stream_id>/subscriptions", methods=("POST",), permission="read", tags=("events",),
           summary="Subscribe a stream to a collection", body=params.SUBSCRIPTION,
           answers=(Answer(201, "subscribed: its collection", {
                        "type": "object", "required": ["id"], "additionalProperties": False,
                        "properties": {"id": {"type": "string", "description": "the collection"}}}),
                    Answer(404, "no such stream of yours")))
def subscribe(stream_id, body):
    """``{"collection": "VM", "fields": ["name_label", "power_state"] or "*", "filter": "tags:prod"}``
    (``filter``, a live filter, is xorest's addition); any worker may take it."""
    name = services().events.subscribe(stream_id, g.user, body["collection"], body["fields_"], body["filter"])
    return json_response({"id": name}, status=201)


@operation(bp, "/events/<stream_id>/subscriptions/<collection>", methods=("DELETE",), permission="read",
           tags=("events",), summary="Unsubscribe a stream from a collection",
           answers=(Answer(204, "unsubscribed"), Answer(404, "no such stream or subscription")))
def unsubscribe(stream_id, collection):
    """The stream stops sending that collection's changes."""
    services().events.unsubscribe(stream_id, g.user, collection)
    return Response(status=204)
