"""VM exports (``.xva``) and disk exports (``.vhd``, ``.raw``), streamed.

Status and every header are decided before the first byte.  If the pool fails midway the
generator raises, so the server cuts the connection and the client sees an error instead
of a short file; clean-up (task, snapshot, upstream connection) runs on close.
"""
import logging
import threading
from urllib.parse import quote

from flask import Blueprint, Response, request

from . import params, services
from .streaming import WATCH_INTERVAL, poll_client

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
            log.info("client went away, aborting the export")
            export.close()
    threading.Thread(target=run, name="export-client-watchdog", daemon=True).start()


def _stream_response(export):
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
    client = request.environ.get("gunicorn.socket")
    if client is not None:
        _watch_client(client, export)
    return response


def _head(filename, content_type, length=None):
    """HEAD: say what a GET would send, without starting an export (or a snapshot)."""
    response = Response(status=200, mimetype=content_type)
    response.headers["Content-Disposition"] = _disposition(filename)
    response.headers["Cache-Control"] = "no-store"
    if length is not None:
        response.headers["Content-Length"] = str(length)
    return response


@bp.get("/<any(vms, 'vm-snapshots', 'vm-templates'):collection>/<key>.xva")
def export_vm(collection, key):
    query = params.load(params.EXPORT_QUERY, request.args)
    if request.method == "HEAD":
        plan = services().exports.plan_vm_export(collection, key, query["compress"], query["use_snapshot"])
        return _head(plan.filename, plan.content_type)
    export = services().exports.open_vm_export(collection, key, query["compress"], query["use_snapshot"])
    return _stream_response(export)


@bp.get("/<any(vdis, 'vdi-snapshots'):collection>/<key>.<any(vhd, raw):fmt>")
def export_vdi(collection, key, fmt):
    if request.method == "HEAD":
        plan = services().exports.plan_vdi_export(collection, key, fmt, request.args.get("base"))
        return _head(plan.filename, plan.content_type, plan.length)
    export = services().exports.open_vdi_export(collection, key, fmt, request.args.get("base"))
    return _stream_response(export)
