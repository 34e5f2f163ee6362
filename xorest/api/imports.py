"""Imports, in Xen Orchestra's forms: ``PUT /rest/v0/vdis/<id>.raw|.vhd`` writes a disk's
content, ``POST /rest/v0/srs/<id>/vdis`` creates a disk from the body, ``POST
/rest/v0/pools/<id>/vms`` creates a VM from an XVA."""
from flask import Blueprint, Response, request

from . import BASE_URL, params, services
from .exports import check_format
from .routes import BINARY, Answer, Variable, operation
from .streaming import set_client_timeout

_CREATED = Answer(201, "the new object's uuid", "text", ("Location",), "text/plain")
_UPSTREAM = (Answer(411, "no Content-Length: the pool needs the size up front, so no chunked uploads"), Answer(502, "the pool failed the import"),
             Answer(503, "the pool, or the data store, is not reachable"))

bp = Blueprint("imports", __name__)


@operation(bp, "/vdis/<key>.<fmt>", methods=("PUT",), permission="vm.admin", tags=("imports",), body=BINARY,
           summary="Write a disk's content from a VHD or raw body",
           variables={"key": Variable("the disk's id (its uuid) or its XAPI opaque reference"),
                      "fmt": Variable("the body's format", values=("vhd", "raw"))},
           body_description="a VHD (its blocks are written, other regions are left as they were) or raw content",
           answers=(Answer(204, "the pool has the whole body"), *_UPSTREAM,
                    Answer(413, "raw content larger than the disk")))
def import_vdi(key, fmt):
    """204 once the pool has the whole body; the body is streamed, never held."""
    check_format("vdis", fmt)
    set_client_timeout(services().config.export_idle_timeout)
    services().imports.import_vdi_content(key, fmt, request.stream, request.content_length)
    return Response(status=204)


@operation(bp, "/srs/<key>/vdis", methods=("POST",), permission="vm.admin", tags=("imports",), body=BINARY,
           query=params.VDI_IMPORT_QUERY, summary="A new disk from a VHD or raw body",
           variables={"key": Variable("the SR's id (its uuid) or its XAPI opaque reference")},
           body_description="a VHD (the disk's size is its virtual size) or, with ?raw, raw content (the disk's "
                            "size is its length)",
           answers=(_CREATED, *_UPSTREAM))
def create_vdi(key, query):
    """A new disk from a VHD body (or raw content with ``?raw``); answers its uuid, as Xen
    Orchestra does, and its URL in ``Location``."""
    set_client_timeout(services().config.export_idle_timeout)
    uuid = services().imports.create_vdi(key, "raw" if query["raw"] else "vhd", request.stream,
                                         request.content_length, query["name_label"], query["name_description"])
    return _created("vdis", uuid)


@operation(bp, "/pools/<key>/vms", methods=("POST",), permission="vm.admin", tags=("imports",), body=BINARY,
           query=params.VM_IMPORT_QUERY, summary="A new VM from an XVA body",
           variables={"key": Variable("the pool's id (its uuid) or its XAPI opaque reference")},
           body_description="an XVA, plain, gzip or zstd (the pool detects which)",
           answers=(_CREATED, *_UPSTREAM))
def import_vm(key, query):
    """A new VM from an XVA body, its disks on ``?sr=`` (default: the pool's default SR);
    answers its uuid, as Xen Orchestra does, and its URL in ``Location``."""
    set_client_timeout(services().config.export_idle_timeout)
    uuid = services().imports.import_vm(key, request.stream, request.content_length, query["sr"])
    return _created("vms", uuid)


def _created(collection, uuid):
    response = Response(uuid, status=201, mimetype="text/plain")
    response.headers["Location"] = f"{BASE_URL}/{collection}/{uuid}"
    return response
