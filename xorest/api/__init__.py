"""The HTTP API: blueprints under ``/rest/v0`` and the one JSON error handler.

Rule of this package: views parse input, call one service method and render; all
Flask-specific code of xorest lives here and in ``xorest/app.py``.
"""
import logging

from flask import current_app, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.routing import WebsocketMismatch

from ..errors import XorestError

log = logging.getLogger(__name__)

BASE_URL = "/rest/v0"


def services():
    """The :class:`~xorest.services.registry.Services` of the current app."""
    return current_app.extensions["xorest"]


def _error_response(status, body, headers=()):
    response = jsonify(body)
    response.status_code = status
    for key, value in headers:
        response.headers[key] = value
    return response


def register(app):
    from . import (actions, auth, backupjobs, collections, dashboards, docs, edits, events, exports, hostinfo, imports,
                   jsonrpc, metrics, overview, patches, related, selftest, stats, tasks, users)

    # Order matters where rules weigh the same for werkzeug: the exports' <id>.<format>
    # before any other rule with a <collection>, the plain /<collection>/<id> last.
    for module in (auth, exports, imports, selftest, docs, actions, tasks, edits, overview, related, stats, patches,
                   dashboards, hostinfo, backupjobs, users, events, metrics, collections):
        app.register_blueprint(module.bp, url_prefix=BASE_URL)
    metrics.install(app)
    app.register_blueprint(jsonrpc.bp)  # /api/, Xen Orchestra's JSON-RPC

    @app.errorhandler(XorestError)
    def handle_xorest_error(error):
        headers = []
        if error.status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="xorest", Basic realm="xorest"'))
        if error.status == 429 and error.data.get("retry_after"):
            headers.append(("Retry-After", str(error.data["retry_after"])))
        return _error_response(error.status, error.to_dict(), headers)

    @app.errorhandler(HTTPException)
    def handle_http_exception(error):
        if isinstance(error, WebsocketMismatch):
            return _error_response(400, {"error": "this path is a WebSocket endpoint (Xen Orchestra's JSON-RPC API "
                                                  "at /api/: connect with xo-cli or xo-lib)"})
        headers = []
        if error.code == 405 and error.valid_methods:
            headers.append(("Allow", ", ".join(sorted(error.valid_methods))))
        message = {404: "not found", 405: "method not allowed"}.get(error.code, error.description)
        return _error_response(error.code or 500, {"error": message}, headers)

    @app.errorhandler(Exception)
    def handle_unexpected(error):
        log.exception("unhandled error")
        return _error_response(500, {"error": "internal error"})
