"""``/api/``: Xen Orchestra's JSON-RPC API over a WebSocket, for ``xo-cli`` and ``xo-lib``.

The request's thread does the handshake (wsproto) and hands the connection over to the
worker's WebSocket thread (:mod:`.websockets`), which serves every WebSocket of the
process; the request's thread is free again at once.  Calls are answered by
:class:`~xorest.services.jsonrpc.RpcSession`.
"""
import logging
import threading

from flask import Blueprint, Response, current_app, request
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request

from ..errors import Unavailable, Unsupported
from ..services.jsonrpc import METHODS, RpcSession
from . import bodies, params, services
from .routes import Answer, operation
from .streaming import client_socket, stopping_check
from .websockets import Hub

log = logging.getLogger(__name__)
bp = Blueprint("jsonrpc", __name__)
_hub_lock = threading.Lock()

# vm.set takes the body of PATCH /vms/<id>, checked by the same schema.
METHODS["vm.set"].body_loader = lambda body: params.load(bodies.EDIT_BODIES["vms"], body)


class _Handled(Response):
    """What the view returns once it has spoken on the socket itself: gunicorn then ends
    the request without writing a response of its own."""

    def __call__(self, environ, start_response):
        raise StopIteration


def _hub(config):
    """This process's WebSocket hub, started on first use (after gunicorn's fork)."""
    with _hub_lock:
        hub = current_app.extensions.get("xorest.websockets")
        if hub is None or not hub.thread.is_alive():
            hub = current_app.extensions["xorest.websockets"] = Hub(config, stopping_check())
        return hub


@operation(bp, "/api/", permission="public", tags=("json-rpc",), websocket=True,
           summary="Xen Orchestra's JSON-RPC API (WebSocket)",
           answers=(Answer(101, "switching to the WebSocket protocol"),
                    Answer(400, "not a WebSocket upgrade"), Answer(503, "too many WebSocket connections")))
def api_socket():
    """JSON-RPC 2.0 over a WebSocket, as Xen Orchestra serves it: ``session.signIn``,
    ``token.create``, ``xo.getAllObjects``, ``vm.start``... (``system.getMethodsInfo`` lists
    them); authentication happens inside the protocol, with the REST API's rules."""
    sock = client_socket()
    if getattr(sock, "stopping", None) is None:  # only xorest's worker can hand a connection over
        raise Unsupported("WebSocket connections need xorest's own server (xorest serve, gunicorn)")
    svc = services()
    hub = _hub(svc.config)
    if not hub.reserve():
        raise Unavailable("too many WebSocket connections in this worker, retry later", limit=hub.max_connections)
    try:
        ws = WSConnection(ConnectionType.SERVER)
        if not _handshake(sock, ws, request.environ):
            hub.release()
            return _Handled()
        hub.adopt(sock.detach(), ws, RpcSession(svc, request.remote_addr or "-"))
    except OSError as exc:
        hub.release()
        log.info("WebSocket handshake with %s failed: %s", request.remote_addr, exc)
    return _Handled()


def _handshake(sock, ws, environ):
    """Accept the upgrade (wsproto checks it); ``False`` if refused (400 sent)."""
    head = "GET / HTTP/1.1\r\n" + "".join(
        f"{key[5:].replace('_', '-').title()}: {value}\r\n"
        for key, value in environ.items() if key.startswith("HTTP_")) + "\r\n"
    ws.receive_data(head.encode("latin-1"))
    for event in ws.events():
        if isinstance(event, Request):
            sock.sendall(ws.send(AcceptConnection()))
            return True
    sock.sendall(ws.send(RejectConnection(status_code=400)))
    return False
