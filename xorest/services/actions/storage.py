"""Storage actions: SR scan, reclaim space and forget; VDI migration; VBD connect and
disconnect; PBD plug and unplug."""
import contextlib
import re

from ...errors import Conflict, UpstreamError, XorestError
from . import Action

NULL = "OpaqueRef:NULL"
#: The ``trim`` plugin's error codes for an SR whose type it does not trim.
UNTRIMMABLE = ("UnsupportedSRForTrim",)
#: What the ``trim`` plugin answers when it fails.
_TRIM_ERROR = re.compile(r"<key>errcode</key><value>(.*?)</value>.*<key>errmsg</key><value>(.*?)</value>", re.S)


def scan(ctx, sr, body):
    """Scan an SR for new disks and its usage (XAPI's ``SR.scan``)."""
    ctx.run("SR.scan", sr["_xapiRef"])


def reclaim_space(ctx, sr, body):
    """Give the SR's free blocks back to its storage (the ``trim`` plugin on the master)."""
    pbds = ctx.collections.cache.snapshot().collection("pbds")
    if not any((pbds.get(pbd) or {}).get("attached") for pbd in sr.get("$PBDs") or ()):
        # what SR.scan answers too: the plugin would fail to reach the storage
        raise Conflict(f"SR {sr['id']} is not attached to any host", code="SR_NOT_ATTACHED", params=[sr["_xapiRef"]])
    pool = ctx.collections.get("pools", sr["$pool"])
    master = ctx.get("hosts", pool["master"])
    result = ctx.run("host.call_plugin", master["_xapiRef"], "trim", "do_trim", {"sr_uuid": sr["uuid"]})
    failed = _TRIM_ERROR.search(result or "")
    if failed:
        # an SR the plugin cannot trim (not thick LVM) is the request's object, not the storage failing
        error = Conflict if failed.group(1) in UNTRIMMABLE else UpstreamError
        raise error(f"reclaiming space failed: {failed.group(2)}", code=failed.group(1), params=[failed.group(2)])


def unplug_all(ctx, sr):
    for pbd in ctx.field("SR", sr["_xapiRef"], "PBDs"):
        ctx.run("PBD.unplug", pbd)


def forget(ctx, sr, body):
    """Unplug an SR from every host and forget it (its content stays on the storage)."""
    unplug_all(ctx, sr)
    ctx.call("SR.forget", sr["_xapiRef"])


def move_vdi(ctx, vdi, sr):
    """A disk to another SR: live (``VDI.pool_migrate``) when its VM runs, else copied, its
    VBDs moved to the copy and the original destroyed, as Xen Orchestra's ``moveVdi``.
    Returns the ref of the disk in its new place."""
    if vdi["$SR"] == sr["id"]:
        return vdi["_xapiRef"]
    try:
        return ctx.run("VDI.pool_migrate", vdi["_xapiRef"], sr["_xapiRef"], {})
    except XorestError as exc:
        if exc.data.get("code") not in ("NO_HOSTS_AVAILABLE", "LICENCE_RESTRICTION", "VDI_NEEDS_VM_FOR_MIGRATE"):
            raise
    new = ctx.run("VDI.copy", vdi["_xapiRef"], sr["_xapiRef"], NULL, NULL)
    for vbd in ctx.field("VDI", vdi["_xapiRef"], "VBDs"):
        record = ctx.call("VBD.get_record", vbd)
        ctx.call("VBD.destroy", vbd)
        create_vbd(ctx, {**{k: record[k] for k in ("VM", "userdevice", "bootable", "mode", "type", "unpluggable",
                                                     "other_config", "qos_algorithm_type", "qos_algorithm_params")},
                         "VDI": new})
    ctx.run("VDI.destroy", vdi["_xapiRef"])
    return new


def migrate(ctx, vdi, body):
    """Move a disk to another SR of its pool; answers the id it has there."""
    sr = ctx.get("srs", body["srId"], parameter="srId")
    return {"id": ctx.field("VDI", move_vdi(ctx, vdi, sr), "uuid")}


def create_vbd(ctx, fields, throw_on_plug=False):
    """``VBD.create`` as Xen Orchestra's ``VBD_create``: a free device number when none is
    given (CD drives prefer 3), plugged at once into a running VM.  Returns its ref."""
    vm = fields["VM"]
    kind = fields.get("type") or "Disk"
    device = fields.get("userdevice")
    if device is None:
        allowed = ctx.call("VM.get_allowed_VBD_devices", vm)
        if not allowed:
            raise Conflict("this VM has no free device number left", code="VM_PCI_BUS_FULL")
        device = ("3" if "3" in allowed else allowed[0]) if kind == "CD" else (
            allowed[1] if allowed[0] == "3" and len(allowed) > 1 else allowed[0])
    state = ctx.field("VM", vm, "power_state")
    vdi = fields.get("VDI") or NULL
    ref = ctx.call("VBD.create", {
        "VM": vm, "VDI": vdi, "userdevice": str(device), "type": kind, "empty": vdi == NULL,
        "mode": fields.get("mode") or ("RW" if kind == "Disk" else "RO"), "bootable": bool(fields.get("bootable")),
        "unpluggable": bool(fields.get("unpluggable", False)), "other_config": fields.get("other_config") or {},
        "qos_algorithm_type": fields.get("qos_algorithm_type") or "",
        "qos_algorithm_params": fields.get("qos_algorithm_params") or {},
        "currently_attached": bool(fields.get("currently_attached")) if state == "Suspended" else False})
    if state == "Running":
        try:
            ctx.run("VBD.plug", ref)
        except XorestError as exc:
            if throw_on_plug:
                raise
            ctx.warning("the disk was attached but could not be plugged into the running VM", exc.to_dict())
    return ref


def unplug_vbd(ctx, ref):
    """``VBD.unplug_force``; a VBD not marked unpluggable is marked so first (as XO)."""
    try:
        ctx.call("VBD.unplug_force", ref)
    except Conflict as exc:
        if exc.data.get("code") != "VBD_NOT_UNPLUGGABLE":
            raise
        ctx.call("VBD.set_unpluggable", ref, True)
        ctx.call("VBD.unplug_force", ref)


def connect_vbd(ctx, vbd, body):
    """Plug a disk into its running VM (XAPI's ``VBD.plug``)."""
    ctx.run("VBD.plug", vbd["_xapiRef"])


def disconnect_vbd(ctx, vbd, body):
    """Unplug a disk from its running VM."""
    unplug_vbd(ctx, vbd["_xapiRef"])


def destroy_vbd(ctx, ref):
    """Unplug (when it can) and destroy a VBD (the disk stays)."""
    with contextlib.suppress(XorestError):
        unplug_vbd(ctx, ref)
    ctx.call("VBD.destroy", ref)


def plug_pbd(ctx, pbd, body):
    """Attach an SR to a host (XAPI's ``PBD.plug``)."""
    ctx.run("PBD.plug", pbd["_xapiRef"])


def unplug_pbd(ctx, pbd, body):
    """Detach an SR from a host (XAPI's ``PBD.unplug``)."""
    ctx.run("PBD.unplug", pbd["_xapiRef"])


ACTIONS = [
    Action("srs", "scan", "scan SR", scan, "pool.operate"),
    Action("srs", "reclaim_space", "SR reclaim space", reclaim_space, "pool.operate"),
    Action("srs", "forget", "forget sr", forget, "pool.admin"),
    Action("vdis", "migrate", "migrate VDI", migrate, "vm.admin", created="vdis", sync_status=200),
    Action("vbds", "connect", "connect VBD", connect_vbd, "vm.admin"),
    Action("vbds", "disconnect", "disconnect VBD", disconnect_vbd, "vm.admin"),
    Action("pbds", "plug", "plug pbd", plug_pbd, "pool.operate"),
    Action("pbds", "unplug", "unplug pbd", unplug_pbd, "pool.operate"),
]
