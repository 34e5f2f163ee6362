"""VM actions: power, snapshot, clone, revert, migrate, as Xen Orchestra makes them."""
from ...errors import Conflict, Forbidden, NotSupported, Unprocessable
from ..sweeper import destroy_vm_with_disks
from . import Action

#: A disk whose name holds this is left out of snapshots (Xen Orchestra's convention).
IGNORED_VDIS_TAG = "[NOSNAP]"


def _macs(ctx, vm):
    vifs = ctx.collections.cache.snapshot().collection("vifs")
    return [vifs[v]["MAC"] for v in vm.get("VIFs", []) if v in vifs]


def start(ctx, vm, body):
    """Start a VM, on a given host (``hostId``) or where the pool chooses."""
    macs = _macs(ctx, vm)
    running = {mac for other in ctx.collections.cache.snapshot().collection("vms").values()
               if other["id"] != vm["id"] and other.get("power_state") == "Running" for mac in _macs(ctx, other)}
    if len(set(macs)) != len(macs) or running & set(macs):
        raise Conflict("another running VM (or another interface of this one) has the same MAC address",
                       code="DUPLICATED_MAC_ADDRESS", objectId=vm["id"])
    try:
        if body.get("hostId"):
            host = ctx.get("hosts", body["hostId"], parameter="hostId")
            ctx.run("VM.start_on", vm["_xapiRef"], host["_xapiRef"], False, False)
        else:
            ctx.run("VM.start", vm["_xapiRef"], False, False)
    except Conflict as exc:
        if exc.data.get("code") == "OPERATION_BLOCKED":  # as Xen Orchestra: a forbidden operation
            raise Forbidden(f"start is blocked: {exc.data['params'][-1]}", **exc.data) from None
        raise


def snapshot_vm(ctx, vm, name_label=None):
    """``VM.snapshot`` as Xen Orchestra takes it: disks named ``[NOSNAP]`` left out,
    the snapshot not a template; returns its ref."""
    ref = vm["_xapiRef"]
    ignored = []
    for vbd in ctx.field("VM", ref, "VBDs"):
        record = ctx.call("VBD.get_record", vbd)
        if record["type"] == "Disk" and record["VDI"] != "OpaqueRef:NULL" \
                and IGNORED_VDIS_TAG in ctx.field("VDI", record["VDI"], "name_label"):
            ignored.append(record["VDI"])
    snapshot = ctx.run("VM.snapshot", ref, name_label or vm["name_label"], ignored)
    try:
        ctx.call("VM.set_is_a_template", snapshot, False)
    except Conflict:
        pass  # some licences refuse it (XSO-766); Xen Orchestra ignores it too
    return snapshot


def snapshot(ctx, vm, body):
    """Snapshot a VM; answers the snapshot's id."""
    ref = snapshot_vm(ctx, vm, body.get("name_label"))
    return {"id": ctx.field("VM", ref, "uuid")}


def _copy(ctx, vm, name, sr_ref=""):
    """``VM.copy`` (a full copy); a running VM is copied from a snapshot, destroyed after."""
    source = vm["_xapiRef"]
    temporary = None
    if vm.get("power_state") in ("Running", "Paused"):
        # as Xen Orchestra's VM_snapshot: not a template, so its copy is a plain VM
        temporary = source = snapshot_vm(ctx, vm, name)
    try:
        return ctx.run("VM.copy", source, name, sr_ref)
    finally:
        if temporary is not None:
            destroy_vm_with_disks(ctx.conn(), temporary)


def clone(ctx, vm, body):
    """Clone a VM (fast, sharing disks through snapshots), copy it (``fast: false``), or
    copy it to an SR of the pool (``srId``); answers the new VM's id."""
    name = body.get("name_label") or vm["name_label"]
    if body.get("srId"):
        sr = ctx.get("srs", body["srId"], same_pool=False, parameter="srId")
        if sr["$pool"] != vm["$pool"]:
            raise NotSupported("copying a VM to another pool (srId of another pool) is not supported by xorest: "
                               "export it (.xva) and import it there", parameter="srId")
        new = _copy(ctx, vm, name, sr["_xapiRef"])
    elif body.get("fast", True):
        new = ctx.run("VM.clone", vm["_xapiRef"], name)
    else:
        new = _copy(ctx, vm, name)
    return {"id": ctx.field("VM", new, "uuid")}


def revert_snapshot(ctx, vm, body):
    """Revert a VM to one of its snapshots (``snapshotBefore``: snapshot it first)."""
    snap = ctx.collections.get("vm-snapshots", body["snapshotId"])
    if snap["id"] not in vm.get("snapshots", []):
        raise Unprocessable(f"snapshot {body['snapshotId']} does not belong to VM {vm['id']}",
                            parameter="snapshotId")
    if body.get("snapshotBefore"):
        with ctx.task.subtask("snapshot VM", objectId=vm["id"], objectType="VM"), ctx.task.span(0, 40):
            snapshot_vm(ctx, vm)
        with ctx.task.subtask("revert snapshot", objectId=vm["id"], objectType="VM"), ctx.task.span(40, 90):
            _revert(ctx, snap)
    else:
        _revert(ctx, snap)


def _revert(ctx, snap):
    """``VM.revert``, then the VM back in the power state it had when snapshotted."""
    ctx.run("VM.revert", snap["_xapiRef"])
    before = ctx.field("VM", snap["_xapiRef"], "snapshot_info").get("power-state-at-snapshot")
    vm_ref = ctx.field("VM", snap["_xapiRef"], "snapshot_of")
    state = ctx.field("VM", vm_ref, "power_state")
    if before == "Running" and state in ("Halted", "Suspended"):
        try:  # as Xen Orchestra: the revert succeeded even if the VM does not start
            if state == "Halted":
                ctx.run("VM.start", vm_ref, False, False)
            else:
                ctx.run("VM.resume", vm_ref, False, True)
        except Conflict as exc:
            ctx.warning("the VM was reverted but could not be started again", exc.to_dict())


def migrate(ctx, vm, body):
    """Migrate a running VM to another host of its pool (XAPI's ``VM.pool_migrate``)."""
    if any(body.get(k) for k in ("srId", "srIdByVdiId", "networkIdByVifId")):
        raise NotSupported("storage migration (srId, srIdByVdiId, networkIdByVifId) is not supported by xorest: "
                           "migrate the disks with /vdis/<id>/actions/migrate first")
    host = ctx.get("hosts", body["hostId"], same_pool=False, parameter="hostId")
    if host["$pool"] != vm["$pool"]:
        raise NotSupported("migrating a VM to another pool is not supported by xorest", parameter="hostId")
    options = {"force": "false"}
    if body.get("migrationNetworkId"):
        options["network"] = ctx.get("networks", body["migrationNetworkId"], parameter="migrationNetworkId")[
            "_xapiRef"]
    ctx.run("VM.pool_migrate", vm["_xapiRef"], host["_xapiRef"], options)


def _simple(operation, title, *args):
    """An action that is one ``Async.VM.<operation>`` call."""
    def run(ctx, vm, body):
        ctx.run(f"VM.{operation}", vm["_xapiRef"], *args)
    run.__doc__ = f"{title[0].upper()}{title[1:]} (XAPI's VM.{operation})."
    return run


ACTIONS = [
    Action("vms", "start", "start VM", start, "vm.operate"),
    Action("vms", "clean_shutdown", "clean shutdown VM", _simple("clean_shutdown", "shut a VM down cleanly"),
           "vm.operate"),
    Action("vms", "hard_shutdown", "hard shutdown VM", _simple("hard_shutdown", "power a VM off"), "vm.operate"),
    Action("vms", "clean_reboot", "clean reboot VM", _simple("clean_reboot", "reboot a VM cleanly"), "vm.operate"),
    Action("vms", "hard_reboot", "hard reboot VM", _simple("hard_reboot", "reset a VM"), "vm.operate"),
    Action("vms", "pause", "pause VM", _simple("pause", "pause a VM"), "vm.operate"),
    Action("vms", "unpause", "unpause VM", _simple("unpause", "unpause a VM"), "vm.operate"),
    Action("vms", "suspend", "suspend VM", _simple("suspend", "suspend a VM to disk"), "vm.operate"),
    Action("vms", "resume", "resume VM", _simple("resume", "resume a suspended VM", False, True), "vm.operate"),
    Action("vms", "snapshot", "snapshot VM", snapshot, "vm.operate", created="vm-snapshots", sync_status=201),
    Action("vms", "clone", "clone VM", clone, "vm.admin", created="vms", sync_status=201),
    Action("vms", "revert_snapshot", "revert VM snapshot", revert_snapshot, "vm.operate",
           unprocessable="the snapshot is not one of this VM's"),
    Action("vms", "migrate", "Migrate VM", migrate, "vm.admin"),
]
