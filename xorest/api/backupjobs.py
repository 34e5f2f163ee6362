"""``GET /rest/v0/vms/<id>/backup-jobs``: the backup jobs that back a VM up.

Backup jobs are Xen Orchestra's (its backup engine runs them, its database keeps them);
xorest has neither, so no job ever backs a VM up and the answer is an empty listing, which
is also what Xen Orchestra answers for a VM in no job.  The route is served rather than
left a 404 so that clients asking about a VM's protection get a true answer (none) in the
shape they expect; the query is checked as any listing's and an unknown VM is a 404.
"""
from flask import Blueprint, Response

from .. import filter as live_filter
from ..errors import BadRequest
from . import params, services
from .listing import markdown_table
from .output import json_response, ndjson_response
from .routes import Answer, Variable, operation
from .streaming import client_speaks_http10

bp = Blueprint("backupjobs", __name__)


@operation(bp, "/vms/<key>/backup-jobs", permission="read", tags=("vms",), query=params.COLLECTION_QUERY,
           summary="The backup jobs of a VM (none: xorest runs no backups)",
           variables={"key": Variable("the VM's id (its uuid) or its XAPI opaque reference")},
           answers=(Answer(200, "always an empty listing: xorest has no backup engine, so no job backs up any VM",
                           {"type": "array", "maxItems": 0}, alternatives=("application/x-ndjson", "text/markdown")),
                    Answer(400, "an invalid query (filter, limit...)"), Answer(404, "no such VM")))
def vm_backup_jobs(key, query):
    """The backup jobs whose selection holds the VM: none, since xorest runs no backup jobs
    (Xen Orchestra's backup engine does); the VM must exist and the query be valid."""
    if query["ndjson"] and query["markdown"]:
        raise BadRequest("ndjson and markdown exclude each other", parameters=["ndjson", "markdown"])
    if query["filter"]:
        live_filter.parse(query["filter"])  # an invalid one is a 400, as on any listing
    services().collections.get("vms", key)
    if query["ndjson"]:
        return ndjson_response((), whole=client_speaks_http10())
    if query["markdown"]:
        return Response(markdown_table([]), mimetype="text/markdown")
    return json_response([])
