"""``GET /rest/v0/vms/<id>/dashboard`` and ``/pools/<id>/dashboard``: one object at a glance,
as Xen Orchestra's dashboards (:mod:`xorest.services.vmdashboard`,
:mod:`xorest.services.pooldashboard`)."""
from flask import Blueprint

from ..services.dashboard import assemble, nested
from . import params, services
from .output import json_response, ndjson_response
from .routes import Answer, Variable, operation
from .streaming import client_speaks_http10

bp = Blueprint("dashboards", __name__)

_KEY = Variable("the object's id (its uuid) or its XAPI opaque reference")
_NDJSON = "one line per part, each nested where it belongs (`{\"backupsInfo\": {\"replication\": {...}}}`)"
_OBJECT = {"type": "object", "additionalProperties": True}

VM_DASHBOARD = {"type": "object", "required": ["quickInfo", "alarms", "backupsInfo"], "properties": {
    "quickInfo": {**_OBJECT, "description": "the VM's essentials (power state, CPUs, memory, address, OS, host, "
                                            "PV drivers...)"},
    "alarms": {"type": "array", "items": {"type": "string"}, "description": "the ids of the alarms about the VM"},
    "backupsInfo": {"type": "object", "properties": {
        "lastRuns": {"type": "array", "items": _OBJECT, "description": "always empty: xorest runs no backup jobs"},
        "vmProtection": {"enum": ["protected", "unprotected", "not-in-active-job"],
                         "description": "always not-in-active-job: xorest runs no backup jobs"},
        "replication": {**_OBJECT, "description": "the newest replica (`id`, `timestamp` in ms, `sr` when its disks "
                                                  "are on one SR) a backup job left in the pools, or `{}`"},
        "backupArchives": {"type": "array", "items": _OBJECT,
                           "description": "always empty: xorest has no backup repositories"}}}}}

_TOP = {"type": "array", "items": _OBJECT}
_FAILED = "or `{\"error\": true}` when the hosts' RRDs could not be read"
POOL_DASHBOARD = {"type": "object", "required": ["hosts", "vms", "srs", "alarms", "cpuProvisioning"], "properties": {
    "hosts": {"type": "object", "properties": {
        "status": {**_OBJECT, "description": "`running`, `disabled`, `halted`, `total`"},
        "topFiveUsage": {"type": "object", "properties": {
            "ram": {**_TOP, "description": "`name_label`, `id`, `size`, `usage`, `percent` of the five hosts using "
                                           "the most memory"},
            "cpu": {"description": f"`name_label`, `id`, `percent` of the five busiest hosts, {_FAILED}"}}},
        "missingPatches": {**_OBJECT, "description": "`{\"hasAuthorization\": true, \"missingPatches\": [...]}`; "
                                                     "`{\"hasAuthorization\": false}` for hosts that are not "
                                                     "XCP-ng's; `{\"error\": true}` when the updater plugin failed"}}},
    "vms": {"type": "object", "properties": {
        "status": {**_OBJECT, "description": "`running`, `halted`, `paused`, `total`, `suspended`"},
        "topFiveUsage": {**_OBJECT, "description": f"`cpu` and `ram`: the five busiest VMs, {_FAILED}"}}},
    "srs": {"type": "object", "properties": {"topFiveUsage": {
        **_TOP, "description": "`name_label`, `id`, `percent`, `physical_usage`, `size` of the five fullest SRs"}}},
    "alarms": {"type": "array", "items": {"type": "string"}, "description": "the ids of the pool's alarms"},
    "cpuProvisioning": {**_OBJECT, "description": "`total` cores, vCPUs `assigned` to running VMs, `percent`"}}}


def _answer(parts, query):
    if query["ndjson"]:
        return ndjson_response((nested(path, value) for path, value in parts), whole=client_speaks_http10())
    return json_response(assemble(parts))


@operation(bp, "/vms/<key>/dashboard", permission="read", tags=("vms",), summary="A VM at a glance",
           query=params.DASHBOARD_QUERY, variables={"key": _KEY},
           answers=(Answer(200, "its essentials, its alarms and its backups' state", VM_DASHBOARD,
                           alternatives=("application/x-ndjson",)),
                    Answer(400, "an invalid query"), Answer(404, "no such VM")))
def vm_dashboard(key, query):
    """Xen Orchestra's VM dashboard, from the cache: ``quickInfo``, ``alarms`` and
    ``backupsInfo`` (xorest runs no backup jobs: only the replicas found in the pools show);
    with ``ndjson``, one line per part."""
    return _answer(services().vm_dashboard.parts(key), query)


@operation(bp, "/pools/<key>/dashboard", permission="read", tags=("pools",), summary="A pool at a glance",
           query=params.DASHBOARD_QUERY, variables={"key": _KEY},
           answers=(Answer(200, "its hosts, VMs and SRs by state and use, its alarms, missing patches and CPU "
                                "provisioning", POOL_DASHBOARD, alternatives=("application/x-ndjson",)),
                    Answer(400, "an invalid query"), Answer(404, "no such pool")))
def pool_dashboard(key, query):
    """Xen Orchestra's pool dashboard: counts and top fives from the cache, CPU and memory
    use from the running hosts' latest RRD rows, missing patches from their updater plugin
    (a part that cannot be computed is ``{"error": true}``); with ``ndjson``, one line per
    part."""
    return _answer(services().pool_dashboard.parts(key), query)
