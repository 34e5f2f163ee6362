"""Xen Orchestra's dashboard (``GET /rest/v0/dashboard``), computed from the cache.

The parts and their rules are Xen Orchestra's: hosts and VMs by state, the resources of
pools, hosts and writable SRs, the storage used by replicas (VMs a backup job made), and
the pools' connection states.  xorest has no backup engine and no backup repositories,
so those parts are ``{"isEmpty": true}``; missing patches would need every host's updater
plugin at every request and are left out (``{"hasAuthorization": false}``, as Xen Orchestra
says without the feature; see :meth:`DashboardService.parts`).
"""

EMPTY = {"isEmpty": True}
#: What Xen Orchestra puts in place of a part it could not compute.
FAILED = {"error": True}


def writable(sr):
    """An SR that holds disks (Xen Orchestra's ``isSrWritable``): a size, not ISOs."""
    return (sr.get("size") or 0) > 0 and sr.get("content_type") != "iso"


def hosts_status(hosts):
    """Hosts by state, as Xen Orchestra counts them (a running host that is disabled is
    ``disabled``)."""
    counts = {"disabled": 0, "running": 0, "halted": 0, "unknown": 0}
    for host in hosts:
        state = host.get("power_state")
        if state == "Running":
            counts["running" if host.get("enabled") else "disabled"] += 1
        elif state == "Halted":
            counts["halted"] += 1
        else:
            counts["unknown"] += 1
    return {**counts, "total": len(hosts)}


def vms_status(vms):
    """VMs by power state, as Xen Orchestra counts them."""
    counts = {"Running": 0, "Halted": 0, "Paused": 0, "Suspended": 0}
    total = unknown = 0
    for vm in vms:
        total += 1
        state = vm.get("power_state")
        if state in counts:
            counts[state] += 1
        else:
            unknown += 1
    return {"active": counts["Running"] + counts["Paused"], "inactive": counts["Halted"] + counts["Suspended"],
            "running": counts["Running"], "halted": counts["Halted"], "paused": counts["Paused"],
            "suspended": counts["Suspended"], "unknown": unknown, "total": total}


def nested(path, value):
    """``{"a": {"b": value}}`` for the dotted ``path`` ``"a.b"``: one line of a dashboard
    streamed as NDJSON, as Xen Orchestra writes each part where it belongs."""
    for key in reversed(path.split(".")):
        value = {key: value}
    return value


def assemble(parts):
    """The whole dashboard of ``[(dotted path, value)]`` parts: each value where its path
    puts it (``backupsInfo.replication`` inside ``backupsInfo``)."""
    document = {}
    for path, value in parts:
        *parents, last = path.split(".")
        target = document
        for key in parents:
            target = target.setdefault(key, {})
        if isinstance(value, dict) and isinstance(target.get(last), dict):
            target[last].update(value)
        else:
            target[last] = value
    return document


def visible(collections, name):
    """``id -> object`` of a collection as the request may see it (its token's scope)."""
    return {obj["id"]: obj for obj in collections.select(name)[0]}


def _is_replica(vm):
    """A VM a backup job made: start blocked and ``xo:backup:job`` set, as XO tells them."""
    return "start" in (vm.get("blockedOperations") or {}) and "xo:backup:job" in (vm.get("other") or {})


class DashboardService:
    """Computes the dashboard's parts.

    :param collections: the :class:`~.collections.CollectionService`: what it counts is
        what the request may see.
    """

    def __init__(self, collections):
        self.collections = collections

    def _all(self, name):
        return visible(self.collections, name)

    def parts(self):
        """``[(name, value)]`` in the order of Xen Orchestra's JSON answer (``XoaDashboard``).

        Missing patches stay ``{"hasAuthorization": false}`` (Xen Orchestra's answer without
        the feature): counting them means calling every host's updater plugin, which asks
        yum's repositories, at every request (:mod:`.patches` does that for
        ``/missing_patches``, one host or pool at a time), so a dashboard would hold its
        request thread for every host's check in turn, retried while a plugin is busy.
        """
        pools = list(self._all("pools").values())
        hosts = list(self._all("hosts").values())
        srs = [sr for sr in self._all("srs").values() if writable(sr)]
        return [
            ("nPools", len(pools)),
            ("nHosts", len(hosts)),
            ("backupRepositories", dict(EMPTY)),
            ("resourcesOverview", self._resources(pools, hosts, srs)),
            ("poolsStatus", self._pools_status({pool["id"] for pool in pools})),
            ("missingPatches", {"hasAuthorization": False}),
            ("storageRepositories", self._storage(srs)),
            ("backups", dict(EMPTY)),
            ("hostsStatus", hosts_status(hosts)),
            ("vmsStatus", vms_status(self._all("vms").values())),
        ]

    @staticmethod
    def _resources(pools, hosts, srs):
        if not (pools or hosts or srs):
            return dict(EMPTY)
        return {"nCpus": sum((pool.get("cpus") or {}).get("cores") or 0 for pool in pools),
                "memorySize": sum((host.get("memory") or {}).get("size") or 0 for host in hosts),
                "srSize": sum(sr.get("size") or 0 for sr in srs)}

    def _storage(self, srs):
        if not srs:
            return dict(EMPTY)
        vdis = {**self._all("vdis"), **self._all("vdi-snapshots")}
        vbds, vms = self._all("vbds"), self._all("vms")

        def replica_usage(vdi):
            for vbd_id in vdi.get("$VBDs") or ():  # XO looks at the first VBD's VM only
                vm = vms.get((vbds.get(vbd_id) or {}).get("VM"))
                return vdi.get("usage") or 0 if vm is not None and _is_replica(vm) else 0
            return 0

        replicated = total = used = 0
        for sr in srs:
            seen = set()
            for vdi_id in sr.get("VDIs") or ():
                while vdi_id is not None and vdi_id not in seen and vdi_id in vdis:  # the VHD chain
                    seen.add(vdi_id)
                    replicated += replica_usage(vdis[vdi_id])
                    vdi_id = vdis[vdi_id].get("parent")
            total += sr.get("size") or 0
            used += sr.get("physical_usage") or 0
        return {"size": {"available": total - used, "other": used - replicated, "replicated": replicated,
                         "total": total, "used": used}}

    def _pools_status(self, pools):
        counts = {"connected": 0, "disconnected": 0, "unreachable": 0, "unknown": 0}
        servers = list(self.collections.select("servers")[0])
        for server in servers:
            if server.get("status") == "connected" and server.get("poolId") in pools:
                counts["connected"] += 1
            elif server.get("status") == "disconnected":
                counts["unreachable" if server.get("error") else "disconnected"] += 1
            else:
                counts["unknown"] += 1
        return {**counts, "total": len(servers)}
