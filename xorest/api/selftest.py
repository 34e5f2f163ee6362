"""``GET /rest/v0/selftest/stream``: a download to check the proxies between clients and xorest.

Operators put nginx, load balancers and firewalls in front of exports; each can cut a
long or silent transfer. This endpoint streams ``size`` bytes with a silence of ``pause``
seconds halfway, like a pool compressing empty disk space, so a misconfigured idle
timeout shows up in minutes rather than in the middle of a real backup. It needs no pool.
"""
import logging
import random
import time

from flask import Blueprint, Response

from . import params, services
from .routes import BINARY, Answer, operation
from .streaming import WATCH_INTERVAL, client_socket, poll_client, require_framing, set_client_timeout

log = logging.getLogger(__name__)
bp = Blueprint("selftest", __name__)

BLOCK = random.Random(0).randbytes(1 << 20)  # incompressible: a compressing proxy changes nothing


def _quiet_for(seconds, client):
    """Send nothing for ``seconds``; ``False`` as soon as the client goes away."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if client is None:
            time.sleep(min(left, WATCH_INTERVAL))
        elif poll_client(client, min(left, WATCH_INTERVAL)) == "gone":
            return False
    return True


def _body(size, pause, client):
    half, sent = size // 2, 0
    view = memoryview(BLOCK)
    while sent < size:
        if pause and sent >= half:
            if not _quiet_for(pause, client):
                log.info("selftest client went away during the pause")
                return
            pause = 0
        step = min(len(BLOCK), (half if sent < half else size) - sent)
        yield view[:step].tobytes()
        sent += step


@operation(bp, "/selftest/stream", permission="read", tags=("selftest",), query=params.SELFTEST_QUERY,
           summary="A download to check the proxies in front of xorest",
           answers=(Answer(200, "size incompressible bytes", BINARY,
                           ("Content-Length", "Cache-Control", "X-Accel-Buffering"), "application/octet-stream"),
                    Answer(505, "HTTP/1.0 with length=false: a chunked body cannot be told from a cut one")))
def stream(query):
    """``size`` bytes (default 64 MiB), silent for ``pause`` seconds halfway through."""
    require_framing(query["size"] if query["length"] else None)
    set_client_timeout(services().config.export_idle_timeout)
    response = Response(_body(query["size"], query["pause"], client_socket()),
                        mimetype="application/octet-stream", direct_passthrough=True)
    if query["length"]:
        response.headers["Content-Length"] = str(query["size"])
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response
