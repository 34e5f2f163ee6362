"""``/rest/v0/ping`` and ``/rest/v0/dashboard``: liveness, and the pools at a glance."""
import time

from flask import Blueprint

from . import params, services
from .output import json_response, ndjson_response
from .routes import Answer, operation
from .streaming import client_speaks_http10

bp = Blueprint("overview", __name__)


#: ``GET /ping``'s answer.
PONG = {"type": "object", "required": ["result", "timestamp"], "additionalProperties": False, "properties": {
    "result": {"const": "pong"},
    "timestamp": {"type": "integer", "description": "the server's time, Unix ms"}}}


def _counts(*names):
    return {"type": "object", "required": list(names), "additionalProperties": False,
            "properties": {name: {"type": "integer", "minimum": 0} for name in names}}


_EMPTY = {"type": "object", "required": ["isEmpty"], "additionalProperties": False,
          "properties": {"isEmpty": {"const": True}}}
#: The global dashboard, Xen Orchestra's ``XoaDashboard`` as xorest fills it (no backups,
#: missing patches not counted: see ``services/dashboard.py``).
DASHBOARD = {"type": "object", "additionalProperties": False, "required": [
    "nPools", "nHosts", "backupRepositories", "resourcesOverview", "poolsStatus", "missingPatches",
    "storageRepositories", "backups", "hostsStatus", "vmsStatus"], "properties": {
    "nPools": {"type": "integer", "minimum": 0}, "nHosts": {"type": "integer", "minimum": 0},
    "backupRepositories": _EMPTY, "backups": _EMPTY,
    "resourcesOverview": {"anyOf": [_counts("nCpus", "memorySize", "srSize"), _EMPTY],
                          "description": "the pools' CPUs, the hosts' memory, the writable SRs' size (bytes)"},
    "poolsStatus": _counts("connected", "disconnected", "unreachable", "unknown", "total"),
    "missingPatches": {"type": "object", "required": ["hasAuthorization"], "additionalProperties": False,
                       "properties": {"hasAuthorization": {"const": False}}},
    "storageRepositories": {"anyOf": [{"type": "object", "required": ["size"], "additionalProperties": False,
                                       "properties": {"size": _counts("available", "other", "replicated",
                                                                      "total", "used")}}, _EMPTY],
                            "description": "bytes of writable SRs; replicated: used by replicas"},
    "hostsStatus": _counts("disabled", "running", "halted", "unknown", "total"),
    "vmsStatus": _counts("active", "inactive", "running", "halted", "paused", "suspended", "unknown",
                         "total")}}


@operation(bp, "/ping", permission="public", tags=("overview",), summary="Is xorest answering?",
           answers=(Answer(200, '`{"result": "pong", "timestamp": <ms>}`', PONG),))
def ping():
    """Answers without credentials, for health checks."""
    return json_response({"result": "pong", "timestamp": int(time.time() * 1000)})


@operation(bp, "/dashboard", permission="read", tags=("overview",), summary="The pools at a glance",
           query=params.DASHBOARD_QUERY,
           answers=(Answer(200, "counts of pools, hosts and VMs by state, resources, storage use, pools' "
                                 "status; with ndjson, one line per part ({name: value})", DASHBOARD,
                           alternatives=("application/x-ndjson",)),))
def dashboard(query):
    """Xen Orchestra's dashboard, computed from the cache: with ``ndjson``, one line per part
    (``{"nPools": 3}``, ``{"hostsStatus": {...}}``...)."""
    parts = services().dashboard.parts()
    if query["ndjson"]:
        return ndjson_response(({name: value} for name, value in parts), whole=client_speaks_http10())
    return json_response(dict(parts))
