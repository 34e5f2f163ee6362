"""``/rest/v0/ping`` and ``/rest/v0/dashboard``: liveness, and the pools at a glance."""
import time

from flask import Blueprint

from . import params, services
from .output import json_response, ndjson_response
from .routes import Answer, operation
from .streaming import client_speaks_http10

bp = Blueprint("overview", __name__)


@operation(bp, "/ping", permission="public", tags=("overview",), summary="Is xorest answering?",
           answers=(Answer(200, '`{"result": "pong", "timestamp": <ms>}`'),))
def ping():
    """Answers without credentials, for health checks."""
    return json_response({"result": "pong", "timestamp": int(time.time() * 1000)})


@operation(bp, "/dashboard", permission="read", tags=("overview",), summary="The pools at a glance",
           query=params.DASHBOARD_QUERY,
           answers=(Answer(200, "counts of pools, hosts and VMs by state, resources, storage use, pools' status"),))
def dashboard(query):
    """Xen Orchestra's dashboard, computed from the cache: with ``ndjson``, one line per part
    (``{"nPools": 3}``, ``{"hostsStatus": {...}}``...)."""
    parts = services().dashboard.parts()
    if query["ndjson"]:
        return ndjson_response(({name: value} for name, value in parts), whole=client_speaks_http10())
    return json_response(dict(parts))
