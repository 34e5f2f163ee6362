"""``PUT /rest/v0/vdis/<id>.raw|.vhd``: write a disk's content from the request body."""
from flask import Blueprint, Response, request

from . import services

bp = Blueprint("imports", __name__)


@bp.put("/vdis/<key>.<any(vhd, raw):fmt>")
def import_vdi(key, fmt):
    """204 once the pool has the whole body; the body is streamed, never held."""
    services().imports.import_vdi_content(key, fmt, request.stream, request.content_length)
    return Response(status=204)
