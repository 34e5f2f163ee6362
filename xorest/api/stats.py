"""``GET /<vms|hosts|pools>/<id>/stats`` and ``PUT|DELETE /vms/<id>/stats/data_source/<name>``,
as Xen Orchestra serves them (:mod:`xorest.services.stats`)."""
from flask import Blueprint, Response
from marshmallow import EXCLUDE, Schema, fields

from ..services.stats import DEFAULT_GRANULARITY, GRANULARITIES
from ..services.statkeys import stats_schema
from . import services
from .output import json_response
from .routes import Answer, Variable, operation

bp = Blueprint("stats", __name__)


class StatsQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    # checked by the service: an unknown one is Xen Orchestra's 422, not a 400
    granularity = fields.String(load_default=None, metadata={
        "description": "the archive to read: seconds (5 s steps over the last 10 minutes), minutes (1 min, 2 "
                       "hours), hours (1 h, a week) or days (1 day, a year); empty: the default; an unknown "
                       "one is a 422",
        "enum": [*GRANULARITIES, ""], "default": DEFAULT_GRANULARITY})


def _owner_stats(kind):
    return {"type": "object", "required": ["endTimestamp", "interval", "stats"], "properties": {
        "endTimestamp": {"type": "integer", "description": "the time (POSIX seconds) of the newest value"},
        "interval": {"type": "integer", "description": "seconds between two values"},
        "stats": {**stats_schema(kind), "description": "the values of each data source, oldest first (XAPI's "
                                                       "units turned into Xen Orchestra's)"}}}


def _answer_schema(collection):
    if collection == "vms":
        return _owner_stats("vm")
    host = _owner_stats("host")
    if collection == "hosts":
        return host
    return {"type": "object", "description": "each host's stats, by host id", "additionalProperties": {"anyOf": [
        host, {"type": "object", "required": ["error"], "description": "a host that could not answer",
               "properties": {"error": {"type": "object", "description": "its message, and XAPI's code and "
                                                                          "params", "additionalProperties": True}}}]}}


_KEY = Variable("the object's id (its uuid) or its XAPI opaque reference")


@operation(bp, "/<any(vms, hosts, pools):collection>/<key>/stats", permission="read", tags=("{collection}",),
           summary="Stats from the hosts' RRDs", query=StatsQuery(), variables={"key": _KEY},
           answers=(Answer(200, "the values of the last intervals", _answer_schema),
                    Answer(404, "no such object"),
                    Answer(409, "the host does not run (XAPI's code in data)"),
                    Answer(422, "an unknown granularity, or a VM that does not run"),
                    Answer(502, "the host answered an error or an unreadable document"),
                    Answer(503, "the pool or the host is not reachable")))
def get_stats(collection, key, query):
    """Xen Orchestra's stats of a VM, a host or a pool's hosts, read from XAPI's
    ``/rrd_updates`` on the host that keeps them (a VM's: the host it runs on):
    ``endTimestamp``, ``interval`` and ``stats`` (``cpus``, ``memory``, ``memoryFree``,
    ``vifs``/``pifs`` rx and tx, ``xvds`` r and w, ``iops``, ``latency``, ``iowait``, ``load``...),
    each a list of values, oldest first, ``null`` where there is none.  A pool answers its
    hosts' stats by host id (``{"error": ...}`` for a host that could not answer).  A VM
    must run: its RRD lives on its host."""
    return json_response(services().stats.stats(collection, key, query["granularity"]))


_DATA_SOURCE = Variable("a data source of the VM, as XAPI names it: cpu0, cpu_usage, memory, memory_target, "
                        "memory_internal_free, vif_<n>_rx, vbd_<device>_read, runstate_fullrun...",
                        example="runstate_fullrun")
_TOGGLE_ERRORS = (Answer(404, "no such VM, or (to enable) the VM has no such data source"),
                  Answer(409, "the VM does not run"), Answer(502, "the pool failed"),
                  Answer(503, "the pool is not reachable"))


# vm.admin, not read: this changes what the pool keeps about the VM (forgetting a data source
# destroys its archives, a year of history), like other changes of a VM's settings.
@operation(bp, "/vms/<key>/stats/data_source/<name>", methods=("PUT",), permission="vm.admin", tags=("vms",),
           summary="Record a data source of a VM", variables={"key": _KEY, "name": _DATA_SOURCE},
           answers=(Answer(204, "recorded from now on (it is in the VM's stats)"), *_TOGGLE_ERRORS))
def record_data_source(key, name):
    """Start recording a data source of a running VM (XAPI's ``VM.record_data_source``):
    those not recorded by default (``runstate_*``, ``vif_<n>_rx_errors``...) then appear
    in its stats, with values from now on."""
    services().stats.data_source(key, name, True)
    return Response(status=204)


@operation(bp, "/vms/<key>/stats/data_source/<name>", methods=("DELETE",), permission="vm.admin", tags=("vms",),
           summary="Forget a data source of a VM", variables={"key": _KEY, "name": _DATA_SOURCE},
           answers=(Answer(204, "forgotten, with its archives (it is no longer in the VM's stats)"),
                    *_TOGGLE_ERRORS))
def forget_data_source(key, name):
    """Stop recording a data source of a running VM and drop its archives (XAPI's
    ``VM.forget_data_source_archives``); recording it again starts from nothing."""
    services().stats.data_source(key, name, False)
    return Response(status=204)
