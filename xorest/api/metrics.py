"""``GET /rest/v0/metrics`` for Prometheus (:mod:`xorest.services.metrics`), and the WSGI
layer that counts every request: by route template (``/rest/v0/{collection}/{key}``, not the
URL: one series per route, whatever the ids), method and status, with its latency to the
answer's last byte; exports' and imports' bytes and how many run."""
import gzip
import re
import time

from flask import Blueprint, Response, request

from ..services.exposition import CONTENT_TYPE
from ..services.metrics import instruments
from . import services
from .routes import Answer, operation

bp = Blueprint("metrics", __name__)

_VARIABLE = re.compile(r"<(?:[^<>]*:)?(\w+)>")  # <any(vms, hosts):collection> -> {collection}
#: Blueprints whose requests are transfers, and their kind.
TRANSFERS = {"exports": "export", "imports": "import"}
UNMATCHED = "unmatched"  # requests no route took (404s, 405s)
#: zlib's fastest level: 8x smaller series for a fraction of the rendering's time.
GZIP_LEVEL = 1


@operation(bp, "/metrics", permission="read", tags=("metrics",), summary="Metrics for Prometheus",
           answers=(Answer(200, "the Prometheus text format (version 0.0.4)", "text", (), CONTENT_TYPE),))
def get_metrics():
    """The gateway's metrics (requests by route and status and their latency, transfers,
    tasks, pool connections and their last events, objects cached) and the pools' (hosts'
    and VMs' CPU, memory, network and disks from their RRDs, read every
    ``XOREST_METRICS_INTERVAL`` by one collector per instance; SRs' size and usage):
    scrapes never wait for a pool.  A scoped token gets only the series of its objects.
    ``Authorization: Bearer <token>`` is how Prometheus sends a token (its ``authorization``
    scrape setting).  Compressed (gzip) for clients that accept it, as Prometheus does."""
    body = services().metrics.scrape()
    response = Response(content_type=CONTENT_TYPE)
    response.vary.add("Accept-Encoding")
    if request.accept_encodings["gzip"]:  # Prometheus asks for it: a 10k-VM pool is tens of MiB
        body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        response.content_encoding = "gzip"
    response.set_data(body)
    return response


class _CountedInput:
    """The request body, counting the bytes the app reads."""

    def __init__(self, stream):
        self.stream, self.count = stream, 0

    def read(self, *args):
        data = self.stream.read(*args)
        self.count += len(data)
        return data

    def readline(self, *args):
        data = self.stream.readline(*args)
        self.count += len(data)
        return data

    def readinto(self, buffer):
        reader = getattr(self.stream, "readinto", None)
        if reader is None:  # a WSGI input needs only read(): werkzeug asks for readinto when it is there
            data = self.stream.read(len(buffer))
            buffer[:len(data)] = data
            size = len(data)
        else:
            size = reader(buffer)
        self.count += size or 0
        return size

    def __iter__(self):
        return iter(self.readline, b"")

    def __getattr__(self, name):
        return getattr(self.stream, name)


class _MeasuredBody:
    """An answer's body, passed through; its end (or the client's leaving) is measured."""

    def __init__(self, body, count, done):
        self.body, self.count, self.done = body, count, done
        self.sent = 0

    def __iter__(self):
        if not self.count:
            yield from self.body
            return
        for chunk in self.body:
            self.sent += len(chunk)
            yield chunk

    def close(self):
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            self.done(self.sent)


class RequestMetrics:
    """WSGI middleware feeding :class:`~xorest.services.metrics.Instruments`."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        status = ["500"]
        body_in = environ.get("wsgi.input")
        if body_in is not None:
            environ["wsgi.input"] = body_in = _CountedInput(body_in)

        def start(line, headers, exc_info=None):
            status[0] = line.split(" ", 1)[0]
            return start_response(line, headers, exc_info)

        def done(sent):
            meter = instruments()
            route, method = environ.get("xorest.route", UNMATCHED), environ.get("REQUEST_METHOD", "")
            meter.requests.labels(route, method, status[0]).inc()
            meter.latency.labels(route, method).observe(time.perf_counter() - started)
            kind = environ.get("xorest.transfer")
            if kind:
                meter.transfers.labels(kind).dec()
                count = sent if kind == "export" else (body_in.count if body_in is not None else 0)
                meter.transferred.labels(kind).inc(count)

        try:
            body = self.app(environ, start)
        except BaseException:
            done(0)
            raise
        return _MeasuredBody(body, environ.get("xorest.transfer") == "export", done)


def install(app):
    """Count every request of ``app``."""

    @app.url_value_preprocessor
    def name_the_route(endpoint, values):
        # runs before authentication: refused requests are counted under their route too
        rule = request.url_rule
        if rule is None:
            return
        request.environ["xorest.route"] = _VARIABLE.sub(r"{\1}", rule.rule)
        kind = TRANSFERS.get(request.blueprint)
        if kind and "xorest.transfer" not in request.environ:
            request.environ["xorest.transfer"] = kind
            instruments().transfers.labels(kind).inc()

    app.wsgi_app = RequestMetrics(app.wsgi_app)
