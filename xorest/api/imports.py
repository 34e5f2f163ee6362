"""Imports, in Xen Orchestra's forms: ``PUT /rest/v0/vdis/<id>.raw|.vhd`` writes a disk's
content, ``POST /rest/v0/srs/<id>/vdis`` creates a disk from the body, ``POST
/rest/v0/pools/<id>/vms`` creates a VM from an XVA."""
from flask import Blueprint, Response, request

from . import BASE_URL, params, services
from .exports import check_format
from .streaming import set_client_timeout

bp = Blueprint("imports", __name__)


@bp.put("/vdis/<key>.<fmt>")
def import_vdi(key, fmt):
    """204 once the pool has the whole body; the body is streamed, never held."""
    check_format("vdis", fmt)
    set_client_timeout(services().config.export_idle_timeout)
    services().imports.import_vdi_content(key, fmt, request.stream, request.content_length)
    return Response(status=204)


@bp.post("/srs/<key>/vdis")
def create_vdi(key):
    """A new disk from a VHD body (or raw content with ``?raw``); answers its uuid, as Xen
    Orchestra does, and its URL in ``Location``."""
    query = params.load(params.VDI_IMPORT_QUERY, request.args)
    set_client_timeout(services().config.export_idle_timeout)
    uuid = services().imports.create_vdi(key, "raw" if query["raw"] else "vhd", request.stream,
                                         request.content_length, query["name_label"], query["name_description"])
    return _created("vdis", uuid)


@bp.post("/pools/<key>/vms")
def import_vm(key):
    """A new VM from an XVA body, its disks on ``?sr=`` (default: the pool's default SR);
    answers its uuid, as Xen Orchestra does, and its URL in ``Location``."""
    query = params.load(params.VM_IMPORT_QUERY, request.args)
    set_client_timeout(services().config.export_idle_timeout)
    uuid = services().imports.import_vm(key, request.stream, request.content_length, query["sr"])
    return _created("vms", uuid)


def _created(collection, uuid):
    response = Response(uuid, status=200, mimetype="text/plain")
    response.headers["Location"] = f"{BASE_URL}/{collection}/{uuid}"
    return response
