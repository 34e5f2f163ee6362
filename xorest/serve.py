"""Running the app under gunicorn with settings suited to hour-long streams."""
import multiprocessing

from gunicorn.app.base import BaseApplication

#: gthread workers heartbeat while a thread streams; ``timeout`` is liveness, not duration.
GUNICORN_SETTINGS = {
    "worker_class": "gthread",
    "workers": min(4, max(2, multiprocessing.cpu_count())),
    "threads": 32,  # >= concurrent exports + headroom: each export holds a thread
    "timeout": 30,
    "graceful_timeout": 3600,  # reloads let running exports finish
    "max_requests": 0,  # never recycle a worker in the middle of a stream
    "keepalive": 75,
    "limit_request_line": 8190,
    "limit_request_fields": 100,
    "limit_request_field_size": 8190,
    # X-Forwarded-* are trusted by the app only from XOREST_TRUSTED_PROXIES; gunicorn's own
    # default would believe them from any loopback client.
    "forwarded_allow_ips": "",
    "secure_scheme_headers": {},
    "control_socket_disable": True,
    "post_worker_init": lambda worker: start_services(worker.wsgi),
    "accesslog": "-",
    # Never log query strings in full: they may carry a filter, not secrets, but keep it short.
    "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(L)ss',
}


def start_services(app):
    """Connect the pools as soon as a worker boots (after the fork), before any request."""
    services = getattr(app, "extensions", {}).get("xorest")
    if services is not None:
        services.start()


class GunicornServer(BaseApplication):
    """gunicorn with :data:`GUNICORN_SETTINGS`, overridden by ``options``."""

    def __init__(self, app_factory, options=None):
        self.app_factory = app_factory
        self.options = {**GUNICORN_SETTINGS, **(options or {})}
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        return self.app_factory()
