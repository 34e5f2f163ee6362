"""A VM's dashboard (``GET /rest/v0/vms/<id>/dashboard``), as Xen Orchestra computes it,
from the cache.

Its parts: ``quickInfo`` (the VM at a glance), ``alarms`` (the ids of the alarms about it)
and ``backupsInfo``.  Of the backup information, only ``replication`` can be other than
empty here: it comes from the pools themselves (the replicas a backup job left, whose
snapshots name this VM in ``xo:backup:vm``).  xorest runs no backup jobs and has no backup
repositories, so ``lastRuns`` and ``backupArchives`` are empty and ``vmProtection`` is
``not-in-active-job``, which is what Xen Orchestra answers for a VM no job backs up.
"""
from ..errors import NotFound
from ..objects.values import parse_datetime
from .dashboard import visible

#: Xen Orchestra's protection state of a VM that no active backup job covers.
NOT_IN_ACTIVE_JOB = "not-in-active-job"


def _quick_info(vm):
    """The VM's essentials in Xen Orchestra's order; what the VM lacks is left out."""
    info = {"id": vm["id"], "power_state": vm.get("power_state"), "uuid": vm.get("uuid"),
            "name_description": vm.get("name_description"), "CPUs": {"number": (vm.get("CPUs") or {}).get("number")},
            "mainIpAddress": vm.get("mainIpAddress"),
            "os_version": {"name": (vm.get("os_version") or {}).get("name")},
            "memory": {"size": (vm.get("memory") or {}).get("size")},
            "creation": {"date": (vm.get("creation") or {}).get("date"),
                         "user": (vm.get("creation") or {}).get("user")},
            "$pool": vm.get("$pool"), "virtualizationMode": vm.get("virtualizationMode"), "tags": vm.get("tags"),
            "host": vm.get("$container") if vm.get("$container") != vm.get("$pool") else None,
            "pvDriversDetected": bool(vm.get("pvDriversDetected")), "pvDriversVersion": vm.get("pvDriversVersion"),
            "pvDriversUpToDate": vm.get("pvDriversUpToDate"), "startTime": vm.get("startTime")}
    return _compact(info)


def _compact(value):
    """Without the ``None`` values, at every level (JSON.stringify drops ``undefined``)."""
    if isinstance(value, dict):
        return {key: _compact(item) for key, item in value.items() if item is not None}
    return value


class VmDashboardService:
    """Computes a VM's dashboard.

    :param collections: the :class:`~.collections.CollectionService` (the VM and what is
        about it, as the request may see them).
    """

    def __init__(self, collections):
        self.collections = collections

    def parts(self, key):
        """``[(dotted path, value)]`` in the order Xen Orchestra writes them.

        :raises NotFound: no such VM (or out of the token's scope).
        """
        vm = self.collections.get("vms", key)
        _, about = self.collections.related("vms", vm["id"], "alarms")
        alarms = [alarm["id"] for alarm in self.collections.select("alarms", within=about)[0]]
        return [
            ("quickInfo", _quick_info(vm)),
            ("alarms", alarms),
            ("backupsInfo.replication", self._last_replication(vm)),
            ("backupsInfo", {"lastRuns": [], "vmProtection": NOT_IN_ACTIVE_JOB}),
            ("backupsInfo.backupArchives", []),
        ]

    def _last_replication(self, vm):
        """The newest replica of the VM (``{"id", "timestamp" in ms, "sr"}``), or ``{}``.

        A replica is a VM whose snapshots name this VM in ``xo:backup:vm``; ``sr`` is where
        its disks are when they all are on one SR.
        """
        newest = None
        for snapshot in visible(self.collections, "vm-snapshots").values():
            other = snapshot.get("other") or {}
            if other.get("xo:backup:vm") != vm["id"] or snapshot.get("$snapshot_of") == vm["id"]:
                continue
            when = parse_datetime(other.get("xo:backup:datetime"))
            if when is not None and (newest is None or when > newest[0]):
                newest = when, snapshot.get("$snapshot_of")
        if newest is None:
            return {}
        try:
            replica = self.collections.get("vms", newest[1])
        except NotFound:  # a replica the request may not see
            return {}
        return _compact({"id": replica["id"], "timestamp": newest[0] * 1000, "sr": self._only_sr(replica)})

    def _only_sr(self, vm):
        vbd_ids = set(vm.get("$VBDs") or ())
        vdi_ids = {vbd.get("VDI") for vbd in self.collections.select("vbds", within=lambda v: v["id"] in vbd_ids)[0]}
        srs = {vdi.get("$SR") for vdi in self.collections.select("vdis", within=lambda v: v["id"] in vdi_ids)[0]}
        return srs.pop() if len(srs) == 1 else None
