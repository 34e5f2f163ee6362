"""The HTTP API: blueprints under ``/rest/v0`` and the one JSON error handler.

Rule of this package: views parse input, call one service method and render; all
Flask-specific code of xorest lives here and in ``xorest/app.py``.
"""
import logging

from flask import current_app, jsonify
from werkzeug.exceptions import HTTPException

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
    from . import auth, collections, docs, exports, imports, selftest

    app.register_blueprint(auth.bp, url_prefix=BASE_URL)
    app.register_blueprint(exports.bp, url_prefix=BASE_URL)
    app.register_blueprint(imports.bp, url_prefix=BASE_URL)
    app.register_blueprint(selftest.bp, url_prefix=BASE_URL)
    app.register_blueprint(docs.bp, url_prefix=BASE_URL)
    app.register_blueprint(collections.bp, url_prefix=BASE_URL)

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
        headers = []
        if error.code == 405 and error.valid_methods:
            headers.append(("Allow", ", ".join(sorted(error.valid_methods))))
        message = {404: "not found", 405: "method not allowed"}.get(error.code, error.description)
        return _error_response(error.code or 500, {"error": message}, headers)

    @app.errorhandler(Exception)
    def handle_unexpected(error):
        log.exception("unhandled error")
        return _error_response(500, {"error": "internal error"})
