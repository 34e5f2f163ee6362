"""The application factory: wires services, blueprints and the error handler; connects nothing."""
import logging

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import api
from .config import Config, load
from .services.registry import Services

log = logging.getLogger(__name__)


class TrustedProxyFix:
    """Honour ``X-Forwarded-*`` only from the configured proxy addresses.

    ``unix`` in the list stands for clients of a Unix socket (REMOTE_ADDR is empty for
    them): with nginx reaching gunicorn over a socket only it may open, no other local
    process can pass for the proxy, as any of them can on a loopback address.
    ``X-Forwarded-Http-Version`` (nginx's ``$server_protocol``) tells which HTTP version
    the proxy's client speaks: an HTTP/1.0 client cannot see a cut stream for what it is.
    """

    FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                 "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_X_FORWARDED_HTTP_VERSION")

    def __init__(self, app, trusted):
        self.app = app
        self.trusted = {"" if address == "unix" else address for address in trusted}
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_port=1)

    def __call__(self, environ, start_response):
        if environ.get("REMOTE_ADDR", "") in self.trusted:
            protocol = environ.pop("HTTP_X_FORWARDED_HTTP_VERSION", None)
            if protocol:
                environ["xorest.client_protocol"] = protocol
            return self.fixed(environ, start_response)
        for key in self.FORWARDED:
            environ.pop(key, None)
        return self.app(environ, start_response)


def create_app(config=None):
    """Build the WSGI application.

    :param config: a :class:`~xorest.config.Config`, a mapping of settings (highest
        precedence over ``XOREST_*`` variables and the config file), or ``None``.
    """
    if not isinstance(config, Config):
        config = load(config)
    app = Flask(__name__)
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False
    app.url_map.strict_slashes = False
    services = Services(config)
    app.extensions["xorest"] = services
    api.register(app)
    app.wsgi_app = TrustedProxyFix(app.wsgi_app, config.trusted_proxies)
    return app
