"""``vm.*``, ``host.*`` and ``sr.*``: Xen Orchestra's JSON-RPC methods that do what a REST
action, edit or deletion does, through the same code.

Each method names its parameters as Xen Orchestra's (``vm.start id=<uuid> host=<uuid>``)
and turns them into the REST body; its permission is the REST operation's, read from the
action catalogue (edits and deletions: checked against their routes by the tests).  An
action runs as a task of the log (``API call: vm.start``, as Xen Orchestra names it) and
the call answers when it ends, as Xen Orchestra's: ``true``, or the new object's id.
Options xorest does not have (bypassing blocked operations, memory snapshots...) are
Xen Orchestra's "not implemented" error when asked for, never silently ignored.
"""
import contextlib
import datetime

from ...errors import Conflict, NotFound, NotSupported
from ..actions import ActionService
from ..vmedit import ALIASES
from .core import METHODS, Method, RpcError, invalid_parameters

#: XO's parameter types, shortened.
_ID = {"type": "string"}
_FLAG = {"type": "boolean", "optional": True}
_TEXT = {"type": "string", "optional": True}


def _declare(name, fn, params, actions=(), description=None, permission=None, rest=None):
    """Register ``fn`` as method ``name`` with the permission of the REST ``actions``
    (``(collection, action)`` pairs it may run: one permission for all of them)."""
    declared = [ActionService.find(collection, action) for collection, action in actions]
    permissions = {action.permission for action in declared} | ({permission} if permission else set())
    if len(permissions) != 1:
        raise ValueError(f"{name}: its REST operations need different permissions {permissions}")
    if rest is None and declared:
        rest = f"POST /{declared[0].collection}/<key>/actions/{declared[0].name}"
    METHODS[name] = Method(name, fn, permissions.pop(), params,
                           description or (declared[0].summary if declared else ""), audit=True, rest=rest)


def _run(session, name, collection, action, key, body=None):
    """Run a REST action to its end as the task ``API call: <name>``; its result."""
    outcome = session.services.actions.start(collection, action, key, body or {}, session.user, sync=True,
                                             title=f"API call: {name}")
    return outcome.result


def _refuse(option, reason):
    raise NotSupported(f"{option} is not supported by xorest: {reason}", parameter=option)


def _simple(name, collection, action, description=None, key="id"):
    """A method that is one action without a body: ``{id}`` (or ``{<key>}``)."""
    def run(session, **params):
        _run(session, name, collection, action, params[key])
    _declare(name, run, {key: _ID}, [(collection, action)], description)


# VMs ---------------------------------------------------------------------------------

def _vm_start(session, id, host=None, force=False, bypassMacAddressesCheck=False):  # noqa: A002,N803
    if force:
        _refuse("force", "a start blocked by blocked_operations stays blocked (unblock it with vm.set)")
    if bypassMacAddressesCheck:
        _refuse("bypassMacAddressesCheck", "VMs sharing a MAC address are never started together")
    _run(session, "vm.start", "vms", "start", id, {"hostId": host} if host else {})


def _vm_stop(session, id, force=False, forceShutdownDelay=0, bypassBlockedOperation=False):  # noqa: A002,N803
    """Stop a VM: cleanly, or hard with ``force``; a clean shutdown still running after
    ``forceShutdownDelay`` ms is aborted and the VM powered off."""
    if bypassBlockedOperation:
        _refuse("bypassBlockedOperation", "a blocked shutdown stays blocked (unblock it with vm.set)")
    if force:
        return _run(session, "vm.stop", "vms", "hard_shutdown", id)
    if not forceShutdownDelay:
        try:
            return _run(session, "vm.stop", "vms", "clean_shutdown", id)
        except Conflict as exc:
            if exc.data.get("code") in ("VM_MISSING_PV_DRIVERS", "VM_LACKS_FEATURE_SHUTDOWN"):
                raise invalid_parameters([{"message": exc.message}], "clean shutdown requires PV drivers") from None
            raise
    actions, tasks = session.services.actions, session.services.tasks
    started = actions.start("vms", "clean_shutdown", id, {}, session.user, title="API call: vm.stop")
    task = tasks.wait(started.task_id, max(0.0, forceShutdownDelay / 1000))
    if task["status"] == "pending":
        with contextlib.suppress(Conflict):  # it may have ended meanwhile
            tasks.abort(started.task_id)
        if tasks.wait(started.task_id, session.services.config.task_wait)["status"] != "success":
            return _run(session, "vm.stop", "vms", "hard_shutdown", id)
        return None
    if task["status"] != "success":
        result = task.get("result") or {}
        raise RpcError(-32000, result.get("message", "the clean shutdown failed"), result, result.get("status", 502))
    return None


def _vm_restart(session, id, force=False, bypassBlockedOperation=False):  # noqa: A002,N803
    if bypassBlockedOperation:
        _refuse("bypassBlockedOperation", "a blocked reboot stays blocked (unblock it with vm.set)")
    _run(session, "vm.restart", "vms", "hard_reboot" if force else "clean_reboot", id)


def _vm_resume(session, id):  # noqa: A002
    """Resume a suspended VM, or unpause a paused one."""
    paused = session.services.collections.get("vms", id).get("power_state") == "Paused"
    _run(session, "vm.resume", "vms", "unpause" if paused else "resume", id)


def _vm_snapshot(session, id, name=None, description=None, saveMemory=False):  # noqa: A002,N803
    """Snapshot a VM; answers the snapshot's id."""
    if saveMemory:
        _refuse("saveMemory", "xorest takes disk snapshots only (no checkpoints)")
    if name is None:  # Xen Orchestra's default name
        vm = session.services.collections.get("vms", id)
        name = f"{vm['name_label']}_{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='milliseconds')}"
        name = name.replace("+00:00", "Z")
    new = _run(session, "vm.snapshot", "vms", "snapshot", id, {"name_label": name})["id"]
    if description is not None:
        session.services.edits.update("vm-snapshots", new, {"name_description": description})
    return new


def _vm_clone(session, id, name, full_copy):  # noqa: A002
    """Clone a VM (``full_copy``: a full copy); answers the new VM's id."""
    return _run(session, "vm.clone", "vms", "clone", id, {"name_label": name, "fast": not full_copy})["id"]


def _vm_migrate(session, vm, targetHost, migrationNetwork=None, sr=None, mapVdisSrs=None,  # noqa: N803
                mapVifsNetworks=None, force=False, bypassAssert=False):  # noqa: N803
    if force or bypassAssert:
        _refuse("force" if force else "bypassAssert", "XAPI's checks of a migration always apply")
    body = {"hostId": targetHost, "migrationNetworkId": migrationNetwork, "srId": sr, "srIdByVdiId": mapVdisSrs,
            "networkIdByVifId": mapVifsNetworks}
    _run(session, "vm.migrate", "vms", "migrate", vm, {k: v for k, v in body.items() if v is not None})


def _vm_revert(session, snapshot, snapshotBefore=False):  # noqa: N803
    """Revert a VM to one of its snapshots (the VM is the snapshot's)."""
    snap = session.services.collections.get("vm-snapshots", snapshot)
    _run(session, "vm.revert", "vms", "revert_snapshot", snap["$snapshot_of"],
         {"snapshotId": snap["id"], "snapshotBefore": snapshotBefore})


#: Where a VM-like id may be: Xen Orchestra's vm.delete takes VMs, snapshots and templates.
_VM_LIKE = ("vms", "vm-snapshots", "vm-templates")


def _vm_delete(session, id, deleteDisks=True, force=False, forceDeleteDefaultTemplate=False,  # noqa: A002,N803
               forceBlockedOperation=False):  # noqa: N803
    """Delete a VM, snapshot or template with its disks (powered off first if needed)."""
    if not deleteDisks:
        _refuse("deleteDisks", "a VM is always deleted with the disks no other VM uses")
    if forceDeleteDefaultTemplate or forceBlockedOperation:
        _refuse("forceDeleteDefaultTemplate" if forceDeleteDefaultTemplate else "forceBlockedOperation",
                "default templates and blocked deletions are kept")
    deletions = session.services.deletions
    for collection in _VM_LIKE:
        try:
            return deletions.delete(collection, id)
        except NotFound:
            continue
    raise NotFound(f"no such VM {id}", id=id, type="VM")


#: ``vm.set``'s parameters, as Xen Orchestra declares them (the ones xorest's editor takes).
_VM_SET = {"id": _ID, "name_label": _TEXT, "name_description": _TEXT,
           "notes": {"type": ["string", "null"], "optional": True},
           "auto_poweron": _FLAG, "high_availability": {"enum": ["best-effort", "restart", ""], "optional": True},
           "CPUs": {"type": "integer", "optional": True}, "cpusMax": {"type": ["integer", "string"], "optional": True},
           **{key: {"type": ["integer", "string"], "optional": True}
              for key in ("memory", "memoryMin", "memoryMax", "memoryStaticMax")},
           "PV_args": _TEXT, "cpuMask": {"type": "array", "optional": True},
           "cpuWeight": {"type": ["integer", "null"], "optional": True},
           "cpuCap": {"type": ["integer", "null"], "optional": True},
           "affinityHost": {"type": ["string", "null"], "optional": True}, "vga": _TEXT,
           "videoram": {"type": "number", "optional": True},
           "coresPerSocket": {"type": ["string", "number", "null"], "optional": True},
           "hasVendorDevice": _FLAG, "expNestedHvm": _FLAG, "nestedVirt": _FLAG,
           "startDelay": {"type": "integer", "optional": True}, "secureBoot": _FLAG,
           "nicType": {"type": ["string", "null"], "optional": True},
           "hvmBootFirmware": {"type": ["string", "null"], "optional": True}, "virtualizationMode": _TEXT,
           "viridian": _FLAG, "blockedOperations": {"type": "object", "optional": True},
           "creation": {"type": "object", "optional": True},
           "suspendSr": {"type": ["string", "null"], "optional": True},
           "uefiMode": {"enum": ["setup", "user"], "optional": True},
           "xenStoreData": {"type": "object", "optional": True}}


def _vm_set(session, id, **params):  # noqa: A002
    """Change a VM's settings, as ``PATCH /vms/<id>`` does (the same body checks)."""
    body = {ALIASES.get(key, key): value for key, value in params.items()}
    loader = METHODS["vm.set"].body_loader
    session.services.edits.update("vms", id, loader(body) if loader else body)


_ACT = "POST /vms/<key>/actions/"
_declare("vm.start", _vm_start, {"id": _ID, "host": _TEXT, "force": _FLAG, "bypassMacAddressesCheck": _FLAG},
         [("vms", "start")], "start a VM (on host, or where the pool chooses)")
_declare("vm.stop", _vm_stop, {"id": _ID, "force": _FLAG, "forceShutdownDelay": {"type": "number", "default": 0},
                               "bypassBlockedOperation": _FLAG},
         [("vms", "clean_shutdown"), ("vms", "hard_shutdown")], "shut a VM down (force: power it off)")
_declare("vm.restart", _vm_restart, {"id": _ID, "force": _FLAG, "bypassBlockedOperation": _FLAG},
         [("vms", "clean_reboot"), ("vms", "hard_reboot")], "reboot a VM (force: reset it)")
_simple("vm.suspend", "vms", "suspend")
_simple("vm.pause", "vms", "pause")
_declare("vm.resume", _vm_resume, {"id": _ID}, [("vms", "resume"), ("vms", "unpause")],
         "resume a suspended VM or unpause a paused one")
_declare("vm.snapshot", _vm_snapshot, {"id": _ID, "name": _TEXT, "description": _TEXT, "saveMemory": _FLAG},
         [("vms", "snapshot")], "snapshot a VM; returns the snapshot's id")
_declare("vm.clone", _vm_clone, {"id": _ID, "name": {"type": "string"}, "full_copy": {"type": "boolean"}},
         [("vms", "clone")], "clone a VM; returns the new VM's id")
_declare("vm.migrate", _vm_migrate, {"vm": _ID, "targetHost": _ID, "migrationNetwork": _TEXT, "sr": _TEXT,
                                     "mapVdisSrs": {"type": "object", "optional": True},
                                     "mapVifsNetworks": {"type": "object", "optional": True},
                                     "force": _FLAG, "bypassAssert": _FLAG},
         [("vms", "migrate")], "migrate a running VM to another host of its pool")
_declare("vm.revert", _vm_revert, {"snapshot": _ID, "snapshotBefore": _FLAG}, [("vms", "revert_snapshot")],
         "revert a VM to one of its snapshots")
_declare("vm.delete", _vm_delete, {"id": _ID, "deleteDisks": _FLAG, "force": _FLAG,
                                   "forceDeleteDefaultTemplate": _FLAG, "forceBlockedOperation": _FLAG},
         description="delete a VM, snapshot or template with its disks", permission="vm.admin",
         rest="DELETE /<any('vbds', 'vdi-snapshots', 'vdis', 'vifs', 'vm-snapshots', 'vm-templates', 'vms'):"
              "collection>/<key>")
_declare("vm.set", _vm_set, _VM_SET, description="changes the properties of a VM", permission="vm.admin",
         rest="PATCH /vms/<key>")


# hosts -------------------------------------------------------------------------------

def _host_restart(session, id, force=False, suspendResidentVms=False, bypassBlockedSuspend=None,  # noqa: A002,N803
                  bypassBackupCheck=False, bypassCurrentVmCheck=False, bypassVersionCheck=False):  # noqa: N803
    """Reboot a host: evacuated first (``force``: even if some guests cannot move), or
    with its guests suspended and resumed after (``suspendResidentVms``)."""
    # bypassBackupCheck, bypassCurrentVmCheck, bypassVersionCheck: xorest has none of these checks
    if suspendResidentVms:
        blocked = force if bypassBlockedSuspend is None else bypassBlockedSuspend
        return _run(session, "host.restart", "hosts", "smart_reboot", id, {"bypassBlockedSuspend": blocked})
    return _run(session, "host.restart", "hosts", "clean_reboot", id, {"force": force})


def _host_stop(session, id, bypassEvacuate=False, bypassBackupCheck=False):  # noqa: A002,N803
    _run(session, "host.stop", "hosts", "clean_shutdown", id, {"bypassEvacuate": bypassEvacuate})


def _host_disable(session, id, transient=False):  # noqa: A002
    """Disable a host (``transient``: until its next reboot)."""
    _run(session, "host.disable", "hosts", "disable", id, {"autoEnable": transient})


def _host_restart_agent(session, id, bypassBackupCheck=False):  # noqa: A002,N803
    _run(session, "host.restartAgent", "hosts", "restart_toolstack", id)


_BYPASS = {"bypassBackupCheck": _FLAG}
_declare("host.restart", _host_restart,
         {"id": _ID, "force": _FLAG, "suspendResidentVms": {"type": "boolean", "default": False},
          "bypassBlockedSuspend": _FLAG, "bypassCurrentVmCheck": _FLAG, "bypassVersionCheck": _FLAG, **_BYPASS},
         [("hosts", "clean_reboot"), ("hosts", "smart_reboot")], "restart the host")
_declare("host.stop", _host_stop, {"id": _ID, "bypassEvacuate": _FLAG, **_BYPASS}, [("hosts", "clean_shutdown")],
         "stop the host")
_declare("host.disable", _host_disable, {"id": _ID, "transient": _FLAG}, [("hosts", "disable")],
         "disable to create VM on the host")
_declare("host.restartAgent", _host_restart_agent, {"id": _ID, **_BYPASS}, [("hosts", "restart_toolstack")],
         "restart the Xen agent on the host")
METHODS["host.restart_agent"] = METHODS["host.restartAgent"]  # Xen Orchestra's deprecated alias
_simple("host.start", "hosts", "start", "start the host")
_simple("host.enable", "hosts", "enable", "enable to create VM on the host")
_simple("host.detach", "hosts", "detach", "eject the host of a pool")
_simple("host.forget", "hosts", "forget", "remove the host record from XAPI database")
_simple("host.scanPifs", "hosts", "scan_pifs", "Refresh the list of physical interfaces for this host")
_simple("host.emergencyShutdownHost", "hosts", "emergency_shutdown", "suspend all VMs and shutdown host",
        key="host")


# SRs ---------------------------------------------------------------------------------

def _sr_reclaim_space(session, id, bypassBackupCheck=False):  # noqa: A002,N803
    _run(session, "sr.reclaimSpace", "srs", "reclaim_space", id)


_simple("sr.scan", "srs", "scan", "scan an SR for new disks and its usage")
_simple("sr.forget", "srs", "forget", "forget an SR (its disks stay on the storage)")
_declare("sr.reclaimSpace", _sr_reclaim_space, {"id": _ID, **_BYPASS}, [("srs", "reclaim_space")],
         "reclaim freed space on SR")
