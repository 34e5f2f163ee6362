"""VM exports (``.xva``) and disk exports (``.vhd``, ``.raw``), streamed.

Status and every header are decided before the first byte.  If the pool fails midway the
generator raises, so the server cuts the connection and the client sees an error instead
of a short file; clean-up (task, snapshot, upstream connection) runs on close.
"""
import logging
import threading
from urllib.parse import quote

from flask import Blueprint, Response, request

from ..errors import BadRequest
from . import params, services
from .routes import BINARY, Answer, Variable, operation
from .streaming import WATCH_INTERVAL, client_socket, poll_client, require_framing, set_client_timeout

log = logging.getLogger(__name__)
bp = Blueprint("exports", __name__)


def _disposition(filename):
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _watch_client(sock, export):
    """Notice a client that went away while the pool is silent (no write would fail).

    Polls the client socket: end of stream means the client closed; the export is then
    closed from here, which cancels the XAPI task and breaks the blocked upstream read.
    """
    def run():
        state = "quiet"
        while not export.closed and state == "quiet":
            state = poll_client(sock, WATCH_INTERVAL)
        if state == "gone" and not export.closed:
            export.abort()
    threading.Thread(target=run, name="export-client-watchdog", daemon=True).start()


def _stream_response(export):
    try:
        require_framing(export.length)
    except BaseException:
        export.close()
        raise

    def body():
        try:
            yield from export.chunks
        finally:
            export.close()

    response = Response(body(), mimetype=export.content_type, direct_passthrough=True)
    response.headers["Content-Disposition"] = _disposition(export.filename)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    if export.length is not None:
        response.headers["Content-Length"] = str(export.length)
    if export.task:
        response.headers["X-Xapi-Task"] = export.task
    if export.snapshot:
        response.headers["X-Snapshot"] = export.snapshot
    if export.compression:
        algorithm, where = export.compression
        response.headers["X-Compression"] = f"{algorithm}; by={where}"
    response.call_on_close(export.close)
    set_client_timeout(services().config.export_idle_timeout)
    client = client_socket()
    if client is not None:
        _watch_client(client, export)
    return response


def _head(filename, content_type, length=None):
    """HEAD: say what a GET would send, without starting an export (or a snapshot): the
    length when it is known up front, no length otherwise."""
    response = Response(status=200, mimetype=content_type)
    response.automatically_set_content_length = False  # an empty HEAD body is not the length
    response.headers["Content-Disposition"] = _disposition(filename)
    response.headers["Cache-Control"] = "no-store"
    if length is not None:
        response.headers["Content-Length"] = str(length)
    return response


#: Export formats per collection (the extension of the URL).
FORMATS = {"vms": ("xva",), "vm-snapshots": ("xva",), "vm-templates": ("xva",),
           "vdis": ("vhd", "raw"), "vdi-snapshots": ("vhd", "raw")}


def check_format(collection, fmt):
    """A 400 naming the formats when ``fmt`` is not one of ``collection``'s."""
    if fmt not in FORMATS[collection]:
        raise BadRequest(f"unknown format {fmt!r} for {collection}: use "
                         + " or ".join(f".{name}" for name in FORMATS[collection]),
                         formats=list(FORMATS[collection]))


_EXPORT_HEADERS = ("Content-Disposition", "Content-Length", "X-Xapi-Task", "X-Compression", "X-Snapshot",
                   "Cache-Control", "X-Accel-Buffering")
_KEY = Variable("the object's id (its uuid) or its XAPI opaque reference")
_FORMAT = Variable("the file format", values=lambda collection: FORMATS[collection])
_UNAVAILABLE = (Answer(502, "the pool failed the export before its first byte"),
                Answer(503, "the pool, or the data store, is not reachable"))


@operation(bp, "/<any(vms, 'vm-snapshots', 'vm-templates'):collection>/<key>.<fmt>", permission="vm.admin",
           methods=("GET", "HEAD"), tags=("exports",), summary="Export a VM as XVA", query=params.EXPORT_QUERY,
           variables={"key": _KEY, "fmt": _FORMAT},
           answers=(Answer(200, "the XVA stream (gzip or zstd with compress=); HEAD: its headers, no length",
                           BINARY, _EXPORT_HEADERS, "application/octet-stream"),
                    Answer(409, "the VM is running and use_snapshot=false"),
                    *_UNAVAILABLE,
                    Answer(505, "HTTP/1.0: the length of an XVA is not known in advance")))
def export_vm(collection, key, fmt, query):
    """A VM, snapshot or template as XVA; a running VM is exported through a snapshot."""
    check_format(collection, fmt)
    require_framing(None)  # an XVA's length is never known up front; refuse before a snapshot
    if request.method == "HEAD":
        plan = services().exports.plan_vm_export(collection, key, query["compress"], query["use_snapshot"])
        return _head(plan.filename, plan.content_type)
    export = services().exports.open_vm_export(collection, key, query["compress"], query["use_snapshot"])
    return _stream_response(export)


@operation(bp, "/<any(vdis, 'vdi-snapshots'):collection>/<key>.<fmt>", permission="vm.admin",
           methods=("GET", "HEAD"), tags=("exports",), summary="Export a disk as VHD or raw",
           query=params.VDI_EXPORT_QUERY, variables={"key": _KEY, "fmt": _FORMAT},
           answers=(Answer(200, "the disk's content (application/vhd or application/octet-stream); HEAD: its "
                                "headers, with the length when it is known up front (raw)",
                           BINARY, _EXPORT_HEADERS, "application/octet-stream", alternatives=("application/vhd",)),
                    *_UNAVAILABLE))
def export_vdi(collection, key, fmt, query):
    """A disk as VHD (optionally a delta from ``base``) or raw, with its exact length."""
    check_format(collection, fmt)
    if request.method == "HEAD":
        plan = services().exports.plan_vdi_export(collection, key, fmt, query["base"])
        return _head(plan.filename, plan.content_type, plan.length)
    export = services().exports.open_vdi_export(collection, key, fmt, query["base"])
    return _stream_response(export)
