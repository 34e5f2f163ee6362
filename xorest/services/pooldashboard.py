"""A pool's dashboard (``GET /rest/v0/pools/<id>/dashboard``), as Xen Orchestra computes it.

From the cache: hosts and VMs by state, the alarms of the pool, the five fullest writable
SRs, the five hosts using the most memory, the vCPUs of running VMs against the pool's
cores.  From the hosts' latest RRD rows (one ``/rrd_updates`` per running host, which
carries its own data sources and those of every VM it runs): the five busiest hosts, and
the five VMs using the most CPU and, among those whose guest agent reports it, memory.
Missing patches come from the hosts' updater plugin (:mod:`.patches`).

A part that cannot be computed (a host that does not answer for its stats, a plugin that
fails) is ``{"error": true}``, which is how Xen Orchestra marks a failed dashboard part;
the others are still answered.  Hosts that are not XCP-ng's have no updater plugin:
``hosts.missingPatches`` is then ``{"hasAuthorization": false}``, Xen Orchestra's answer
when it does not compute them.
"""
import logging
import math

from ..errors import NotSupported, XorestError
from ..xapi import XapiError, XapiUnreachable
from . import statkeys
from .dashboard import FAILED, hosts_status, visible, vms_status, writable

log = logging.getLogger(__name__)

TOP = 5
#: How far back the latest rows are asked (seconds; the 5 s archive).
RECENT, STEP = 60, 5


def top(items, key):
    """The ``TOP`` items with the largest ``key``, as Xen Orchestra sorts them (NaN last)."""
    return sorted(items, key=lambda item: (math.isnan(item[key]), -item[key] if not math.isnan(item[key]) else 0))[
        :TOP]


def _percent(part, whole):
    return part * 100 / whole if whole else math.nan


def _last(values):
    """The newest value of a series (``None`` where the archive has none counts as 0)."""
    return (values[-1] if values else None) or 0


def _mean_cpu(stats):
    """The average of the latest values of every CPU, in percent (NaN without CPUs)."""
    cpus = list((stats.get("cpus") or {}).values())
    return sum(_last(values) for values in cpus) / len(cpus) if cpus else math.nan


def _json_number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _pick(counts, *keys):
    return {key: counts[key] for key in keys}


def _clean(items):
    return [{key: _json_number(value) for key, value in item.items()} for item in items]


class PoolDashboardService:
    """Computes a pool's dashboard.

    :param collections: the :class:`~.collections.CollectionService` (what the request may see).
    :param pools: the :class:`~.pools.PoolService` (the pool's connection, for the RRDs).
    :param patches: the :class:`~.patches.PatchService` (missing patches).
    :param stats: the :class:`~.stats.StatsService` (the hosts' clocks and RRDs).
    """

    def __init__(self, collections, pools, patches, stats):
        self.collections, self.pools, self.patches, self.stats = collections, pools, patches, stats

    def parts(self, key):
        """``[(dotted path, value)]`` in the order Xen Orchestra writes them.

        :raises NotFound: no such pool (or out of the token's scope).
        """
        pool = self.collections.get("pools", key)
        hosts = [h for h in visible(self.collections, "hosts").values() if h.get("$pool") == pool["id"]]
        vms = [vm for vm in visible(self.collections, "vms").values() if vm.get("$pool") == pool["id"]]
        running = [h for h in hosts if h.get("power_state") == "Running"]
        usage = self._usage(pool, running, vms)
        return [
            ("hosts.status", _pick(hosts_status(hosts), "running", "disabled", "halted", "total")),
            ("vms.status", _pick(vms_status(vms), "running", "halted", "paused", "total", "suspended")),
            ("alarms", [a["id"] for a in self.collections.select("alarms", within=lambda a: a.get("$pool") ==
                                                                   pool["id"])[0]]),
            ("hosts.missingPatches", self._missing_patches(pool)),
            ("srs.topFiveUsage", self._srs(pool)),
            ("hosts.topFiveUsage.ram", _clean(top([
                {"name_label": h.get("name_label"), "id": h["id"], "size": h["memory"]["size"],
                 "usage": h["memory"]["usage"], "percent": _percent(h["memory"]["usage"], h["memory"]["size"])}
                for h in running if h.get("memory")], "percent"))),
            ("hosts.topFiveUsage.cpu", FAILED if usage is None else _clean(top(usage[0], "percent"))),
            ("cpuProvisioning", self._provisioning(pool, vms)),
            ("vms.topFiveUsage", FAILED if usage is None else {"ram": _clean(top(usage[2], "percent")),
                                                               "cpu": _clean(top(usage[1], "percent"))}),
        ]

    def _srs(self, pool):
        srs = [sr for sr in visible(self.collections, "srs").values()
               if sr.get("$pool") == pool["id"] and writable(sr) and sr.get("SR_type") != "udev"]
        return _clean(top([{"name_label": sr.get("name_label"), "id": sr["id"],
                            "percent": _percent(sr.get("physical_usage") or 0, sr["size"]),
                            "physical_usage": sr.get("physical_usage") or 0, "size": sr["size"]} for sr in srs],
                          "percent"))

    @staticmethod
    def _provisioning(pool, vms):
        assigned = sum((vm.get("CPUs") or {}).get("number") or 0 for vm in vms if vm.get("power_state") == "Running")
        total = (pool.get("cpus") or {}).get("cores") or 0
        return {"total": total, "assigned": assigned, "percent": assigned * 100 / total if total else 0}

    def _missing_patches(self, pool):
        try:
            return {"hasAuthorization": True, "missingPatches": self.patches.missing_patches("pools", pool["id"])}
        except NotSupported:
            return {"hasAuthorization": False}
        except XorestError as exc:
            log.warning("pool %s: the dashboard's missing patches failed: %s", pool["id"], exc)
            return dict(FAILED)

    # the hosts' latest RRD rows ---------------------------------------------------------

    def _usage(self, pool, running, vms):
        """``(hosts' CPU, VMs' CPU, VMs' memory)`` entries from the running hosts' latest
        rows, or ``None`` when a host could not answer."""
        live = {vm["uuid"]: vm for vm in vms if vm.get("power_state") in ("Running", "Paused")}
        hosts_cpu, vms_cpu, vms_ram = [], [], []
        try:
            conn = self.pools.connection_for(pool)
            for host in running:
                # the last minute of its 5-second archive: its data sources and its VMs'
                updates = self.stats.updates(conn, host, self.stats.server_time(conn, host) - RECENT, STEP, host=True)
                hosts_cpu.append({"percent": _mean_cpu(statkeys.stats("host", updates.owned_by("host", host["uuid"]))),
                                  "id": host["id"], "name_label": host.get("name_label")})
                for uuid in {column.uuid for column in updates.legend if column.kind == "vm"} & set(live):
                    vm = live[uuid]
                    stats = statkeys.stats("vm", updates.owned_by("vm", uuid))
                    vms_cpu.append({"id": vm["id"], "name_label": vm.get("name_label"), "percent": _mean_cpu(stats)})
                    if vm.get("managementAgentDetected"):
                        memory, free = _last(stats.get("memory")), _last(stats.get("memoryFree"))
                        vms_ram.append({"id": vm["id"], "name_label": vm.get("name_label"), "memory": memory,
                                        "memoryFree": free, "percent": _percent(memory - free, memory)})
        except (XorestError, XapiError, XapiUnreachable) as exc:
            log.warning("pool %s: the dashboard's usage parts failed: %s", pool["id"], exc)
            return None
        return hosts_cpu, vms_cpu, vms_ram
