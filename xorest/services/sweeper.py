"""What a dead xorest process left in a pool, found by its marks and removed.

Everything xorest creates in a pool for a while is marked in its ``other_config`` with
the process that made it (``host:pid:time``): snapshots taken for exports, disks being
filled by an import, and the tasks of its transfers.  A process killed midway (a worker
restarted, the machine's OOM killer) cannot clean up; every process sweeps each pool
once it is loaded and then periodically, removing what belongs to processes of this
machine that no longer exist.  Marks of other machines, and of live or unknown owners,
are left alone: they may still be in use.
"""
import logging
import threading
import time

from ..xapi import XapiError, XapiUnreachable
from .liveness import owner_is_gone

log = logging.getLogger(__name__)

EXPORT_MARK = "xorest:export"  # on a VM snapshot taken to export a running VM
IMPORT_MARK = "xorest:import"  # on a disk an import is filling (removed once complete)
TASK_MARK = "xorest:task"  # on the task of a transfer
SWEEP_INTERVAL = 60.0
#: Seconds a sweep after a worker's death waits for the pool's events to catch up.
CATCH_UP_SECONDS = 5.0

#: Record fields the sweep reads, kept in memory beyond what the mapping needs.
SWEPT_FIELDS = {"VM": ("other_config", "VBDs"), "VDI": ("other_config",), "task": ("other_config", "status")}


def destroy_vm_with_disks(conn, ref, attempts=240):
    """Destroy a VM (a snapshot) and its disks, retrying while the pool still holds it
    (an export task letting go)."""
    for attempt in range(attempts):
        try:
            record = conn.rpc.call("VM.get_record", ref)
            vdis = []
            for vbd in record["VBDs"]:
                vdi = conn.rpc.call("VBD.get_VDI", vbd)
                if vdi != "OpaqueRef:NULL":
                    vdis.append(vdi)
            conn.rpc.call("VM.destroy", ref)
            for vdi in vdis:
                conn.rpc.call("VDI.destroy", vdi)
            log.info("VM %s and its disks destroyed", ref)
            return True
        except XapiError as exc:
            if exc.code == "HANDLE_INVALID":
                return True
            if exc.code != "OTHER_OPERATION_IN_PROGRESS" or attempt == attempts - 1:
                log.warning("cannot destroy VM %s: %s", ref, exc)
                return False
            time.sleep(0.25)
        except XapiUnreachable as exc:
            log.warning("cannot destroy VM %s: %s", ref, exc)
            return False
    return False


def _removed(what, ref, *calls):
    """Make the XAPI ``calls`` (``(method, *args)``); ``True`` once ``ref`` is gone."""
    try:
        for method, *args in calls:
            method(*args)
        return True
    except XapiError as exc:
        if exc.code == "HANDLE_INVALID":
            return True  # someone else removed it first
        log.warning("cannot remove %s %s: %s", what, ref, exc)
    except XapiUnreachable as exc:
        log.warning("cannot remove %s %s: %s", what, ref, exc)
    return False


def _destroy_disk(conn, ref):
    return _removed("the half-imported disk", ref, (conn.rpc.call, "VDI.destroy", ref))


def _end_task(conn, ref, status):
    cancel = [(conn.rpc.call, "task.cancel", ref)] if status == "pending" else []
    return _removed("the task", ref, *cancel, (conn.rpc.call, "task.destroy", ref))


def sweep(conn):
    """Remove from one pool what dead processes of this machine left; returns
    ``{kind: count}`` of what was removed."""
    removed = {"snapshots": 0, "disks": 0, "tasks": 0}
    for ref, (cls, record) in list(conn.records.items()):  # a copy: the watcher thread writes
        marks = record.get("other_config") or {}
        if cls == "VM" and owner_is_gone(marks.get(EXPORT_MARK)):
            removed["snapshots"] += destroy_vm_with_disks(conn, ref)
        elif cls == "VDI" and owner_is_gone(marks.get(IMPORT_MARK)):
            removed["disks"] += _destroy_disk(conn, ref)
        elif cls == "task" and owner_is_gone(marks.get(TASK_MARK)):
            removed["tasks"] += _end_task(conn, ref, record.get("status"))
    return removed


class Sweeper:
    """Sweeps every pool of this process once loaded, then every ``interval`` seconds."""

    def __init__(self, pools, interval=SWEEP_INTERVAL):
        self.pools = pools
        self.interval = interval
        self._thread = None
        self._wake = threading.Event()

    def sweep_soon(self):
        """Sweep every pool now (a process of this instance just died), not at the next
        interval: what it was doing in the pools is stopped before it completes."""
        self._wake.set()

    def start(self):
        """Start the background sweep (once per process)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="sweeper", daemon=True)
        self._thread.start()

    def _run(self):
        last = {}  # connection key -> monotonic time of its last sweep
        while True:
            woken = self._wake.is_set()
            if woken:
                self._wake.clear()
                last = {}
            for conn in self.pools.connections():
                due = last.get(conn.key, float("-inf")) + self.interval
                if conn.watcher.synced.is_set() and time.monotonic() >= due:
                    if woken:
                        # the dead process marked what it made just before it died: the
                        # events saying so may not be here yet
                        conn.barrier(CATCH_UP_SECONDS)
                    self._sweep(conn)
                    last[conn.key] = time.monotonic()
            self._wake.wait(1.0)

    @staticmethod
    def _sweep(conn):
        try:
            removed = sweep(conn)
        except Exception:
            log.exception("sweeping pool %s failed", conn.key)
            return
        if any(removed.values()):
            log.info("removed what a dead xorest process left in pool %s: %s", conn.pool_uuid,
                     ", ".join(f"{n} {kind}" for kind, n in removed.items() if n))
