"""A host's own information: ``GET /rest/v0/hosts/<id>/audit.txt`` and ``/logs.tgz`` (its logs,
streamed from the host as exports are) and ``/smt`` (whether it runs with SMT)."""
from flask import Blueprint, request

from . import services
from .exports import _stream_response as stream_export  # an export's headers, watchdog and clean-up
from .output import json_response
from .routes import BINARY, Answer, Variable, operation

bp = Blueprint("hostinfo", __name__)

_KEY = Variable("the host's id (its uuid) or its XAPI opaque reference")
_HEADERS = ("Content-Disposition", "X-Xapi-Task", "Cache-Control", "X-Accel-Buffering")
_REFUSED = (Answer(404, "no such host"),
            Answer(409, "the host does not run (it serves its logs itself)"),
            Answer(502, "the host failed the download before its first byte"),
            Answer(503, "the pool or the host is not reachable"),
            Answer(505, "HTTP/1.0: the length of the download is not known in advance"))


def _accepts_gzip():
    """Whether the client takes a gzip ``Content-Encoding`` (``gzip`` or ``x-gzip``, as Xen
    Orchestra reads ``Accept-Encoding``)."""
    offered = (item.split(";")[0].strip().lower() for item in request.headers.get("Accept-Encoding", "").split(","))
    return any(item in ("gzip", "x-gzip") for item in offered)


@operation(bp, "/hosts/<key>/audit.txt", permission="pool.admin", tags=("hosts",),
           summary="A host's audit log", variables={"key": _KEY},
           answers=(Answer(200, "the host's audit trail, one line per API call it carried out, as XAPI writes it "
                                "(gzip Content-Encoding for a client that accepts it)", BINARY, _HEADERS,
                           "application/octet-stream"), *_REFUSED))
def host_audit_log(key):
    """The audit log of a running host, from XAPI's ``/audit_log`` on that host: every
    API call with its outcome, its user and the objects it named.  Compressed (gzip) when
    the client's ``Accept-Encoding`` allows it, as Xen Orchestra does."""
    gzip = _accepts_gzip()
    response = stream_export(services().host_logs.audit_log(key, gzip=gzip))
    if gzip:
        response.headers["Content-Encoding"] = "gzip"
        response.vary.add("Accept-Encoding")
    return response


@operation(bp, "/hosts/<key>/logs.tgz", permission="pool.admin", tags=("hosts",),
           summary="A host's log files", variables={"key": _KEY},
           answers=(Answer(200, "the host's /var/log as a gzipped tar", BINARY, _HEADERS, "application/gzip"),
                    *_REFUSED))
def host_logs(key):
    """The log files of a running host, from XAPI's ``/host_logs_download`` on that host
    (``/var/log`` as a gzipped tar), streamed as an export is."""
    return stream_export(services().host_logs.logs_archive(key))


@operation(bp, "/hosts/<key>/smt", permission="read", tags=("hosts",),
           summary="Whether a host runs with SMT", variables={"key": _KEY},
           answers=(Answer(200, '`{"enabled": true|false}`', {
                        "type": "object", "required": ["enabled"], "properties": {"enabled": {"type": "boolean"}}},
                           example={"enabled": True}),
                    Answer(404, "no such host"),
                    Answer(409, "the host does not run (older hosts are asked through a plugin)"),
                    Answer(502, "the hyperthreading plugin failed"),
                    Answer(503, "the pool is not reachable")))
def host_smt(key):
    """Whether simultaneous multithreading (hyper-threading) is enabled on the host: from
    its ``cpu_info`` (``threads_per_core``), or from XCP-ng's ``hyperthreading.py`` plugin on
    hosts older than XCP-ng 8.3; ``false`` when the host cannot tell, as Xen Orchestra."""
    return json_response({"enabled": services().smt.enabled(key)})
