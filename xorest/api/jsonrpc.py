"""``/api/``: Xen Orchestra's JSON-RPC API over a WebSocket, for ``xo-cli`` and ``xo-lib``.

The WebSocket protocol is ``wsproto``'s (framing, handshake, close codes); this module
runs one connection in the request's own thread: it reads the client's messages, answers
each call (:class:`~xorest.services.jsonrpc.RpcSession`), pings the client, and pushes the
``all`` notifications when objects change.  Every limit is enforced here: connections per
worker, message size, batch size, idle clients.
"""
import logging
import select
import threading
import time

import orjson
from flask import Blueprint, Response, request
from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, RejectConnection, Request,
                            TextMessage)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..errors import Unavailable, Unsupported
from ..services.jsonrpc import RpcSession, invalid_json, invalid_request
from . import services
from .routes import Answer, operation
from .streaming import client_socket

log = logging.getLogger(__name__)
bp = Blueprint("jsonrpc", __name__)

POLL_SECONDS = 0.25  # how often a silent connection looks for object changes
PING_SECONDS = 30.0  # Xen Orchestra's clients (and proxies) expect regular traffic
MAX_BATCH = 100

_open = 0
_open_lock = threading.Lock()


class _Handled(Response):
    """What the view returns once it has spoken on the socket itself: gunicorn then closes
    the connection without writing a response of its own."""

    def __call__(self, environ, start_response):
        raise StopIteration


@operation(bp, "/api/", permission="public", tags=("json-rpc",), websocket=True,
           summary="Xen Orchestra's JSON-RPC API (WebSocket)",
           answers=(Answer(101, "switching to the WebSocket protocol"),
                    Answer(400, "not a WebSocket upgrade"), Answer(503, "too many WebSocket connections")))
def api_socket():
    """JSON-RPC 2.0 over a WebSocket, as Xen Orchestra serves it: ``session.signIn``,
    ``token.create``, ``xo.getAllObjects``, ``system.*``... (``system.getMethodsInfo`` lists
    them); authentication happens inside the protocol, with the REST API's rules."""
    sock = client_socket()
    if sock is None:
        raise Unsupported("WebSocket connections need xorest's own server (xorest serve, gunicorn)")
    config = services().config
    global _open
    with _open_lock:
        if _open >= config.jsonrpc_max_connections:
            raise Unavailable("too many WebSocket connections in this worker, retry later",
                              limit=config.jsonrpc_max_connections)
        _open += 1
    try:
        _Connection(sock, request.environ, services(), config).run()
    finally:
        with _open_lock:
            _open -= 1
    return _Handled()


class _Connection:
    """One WebSocket: handshake, then messages in and out until either side closes."""

    def __init__(self, sock, environ, svc, config):
        self.sock, self.environ, self.config = sock, environ, config
        self.ws = WSConnection(ConnectionType.SERVER)
        self.session = RpcSession(svc, environ.get("REMOTE_ADDR") or "-")
        self.parts, self.size = [], 0
        self.last_heard = self.last_ping = time.monotonic()
        self.closed = False

    def run(self):
        if not self._handshake():
            return
        try:
            while not self.closed:
                self._step()
        except (OSError, LocalProtocolError) as exc:
            log.debug("WebSocket from %s ended: %s", self.session.address, exc)
        finally:
            self.sock.close()

    def _handshake(self):
        head = "GET / HTTP/1.1\r\n" + "".join(
            f"{key[5:].replace('_', '-').title()}: {value}\r\n"
            for key, value in self.environ.items() if key.startswith("HTTP_")) + "\r\n"
        self.ws.receive_data(head.encode("latin-1"))
        for event in self.ws.events():
            if isinstance(event, Request):
                self._send(AcceptConnection())
                return True
        self._send(RejectConnection(status_code=400))
        return False

    def _step(self):
        readable, _, _ = select.select([self.sock], [], [], POLL_SECONDS)
        if readable:
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                return
            self.last_heard = time.monotonic()
            try:
                self.ws.receive_data(data)
            except RemoteProtocolError as exc:
                self._close(1002, str(exc))
                return
            for event in self.ws.events():
                self._on(event)
                if self.closed:
                    return
        for notification in self.session.updates():
            self._send_json({"jsonrpc": "2.0", "method": "all", "params": notification})
        self._keep_alive()

    def _keep_alive(self):
        now = time.monotonic()
        if now - self.last_heard > self.config.jsonrpc_idle_timeout:
            self._close(1001, "idle: nothing from the client")
        elif now - self.last_ping > PING_SECONDS:
            self.last_ping = now
            self._send(Ping())

    def _on(self, event):
        if isinstance(event, (TextMessage, BytesMessage)):
            self.size += len(event.data)
            if self.size > self.config.jsonrpc_max_message:
                self._close(1009, f"message larger than {self.config.jsonrpc_max_message} bytes")
                return
            self.parts.append(event.data if isinstance(event.data, str) else event.data.decode("utf-8", "replace"))
            if event.message_finished:
                text, self.parts, self.size = "".join(self.parts), [], 0
                answer = self._answer(text)
                if answer is not None:
                    self._send_json(answer)
        elif isinstance(event, Ping):
            self._send(event.response())
        elif isinstance(event, CloseConnection):
            self._send(event.response())
            self.closed = True
        elif isinstance(event, Pong):
            pass  # heard: last_heard is already updated

    def _answer(self, text):
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            return {"jsonrpc": "2.0", "id": None, "error": invalid_json().to_dict()}
        if isinstance(message, list):
            if not message or len(message) > MAX_BATCH:
                return {"jsonrpc": "2.0", "id": None,
                        "error": invalid_request(f"a batch holds 1 to {MAX_BATCH} requests").to_dict()}
            answers = [self.session.handle(item) for item in message]
            return [answer for answer in answers if answer is not None] or None
        return self.session.handle(message)

    def _send_json(self, value):
        self._send(TextMessage(data=orjson.dumps(value).decode("utf-8")))

    def _send(self, event):
        self.sock.sendall(self.ws.send(event))

    def _close(self, code, reason):
        log.info("closing the WebSocket from %s: %s", self.session.address, reason)
        try:
            self._send(CloseConnection(code=code, reason=reason))
        except (OSError, LocalProtocolError):
            pass
        self.closed = True
