"""A new VM from a template, as Xen Orchestra's ``createVm`` makes it: the template cloned
(or copied), provisioned, its settings, install medium, disks and interfaces set."""
import contextlib
import json
from datetime import datetime, timezone

from ...errors import NotFound, NotSupported, Unprocessable, XorestError
from ..vmedit import edit_vm
from .storage import create_vbd, move_vdi

NULL = "OpaqueRef:NULL"
#: Xen Orchestra's body fields xorest does not act on (GPUs, vTPM, cloud-init drives).
UNSUPPORTED = ("gpuGroup", "vgpuType", "createVtpm", "cloud_config", "network_config", "destroy_cloud_config_vdi")


def template_of(ctx, pool, key):
    """The template ``key`` (its id or uuid) in ``pool``."""
    try:
        template = ctx.collections.get("vm-templates", key)
    except NotFound:
        found = [t for t in ctx.collections.cache.snapshot().collection("vm-templates").values()
                 if t.get("uuid") == key and t["$pool"] == pool["id"]]
        if not found:
            raise NotFound(f"no such template {key}", id=key, type="VM-template", parameter="template") from None
        template = found[0]
    if template["$pool"] != pool["id"]:
        raise Unprocessable(f"the template {key} is not in the pool {pool['id']}", parameter="template")
    return template


def create(ctx, pool, body):
    """Clone (or copy, ``clone: false``) and provision the template: ``(uuid, ref)``."""
    wanted = [name for name in UNSUPPORTED if body.get(name)]
    if wanted:
        raise NotSupported(f"xorest does not create VMs with {', '.join(wanted)}", parameters=wanted)
    template = template_of(ctx, pool, body["template"])
    name = body["name_label"]
    if body.get("clone", True):
        ref = ctx.run("VM.clone", template["_xapiRef"], name)
    else:
        ref = ctx.run("VM.copy", template["_xapiRef"], name, "")
    try:
        with contextlib.suppress(XorestError):  # the disks of the template's install recipe: made below
            ctx.call("VM.remove_from_other_config", ref, "disks")
        ctx.run("VM.provision", ref)
        uuid = ctx.field("VM", ref, "uuid")
        user = ctx.task.log["properties"].get("userId") if ctx.task else None
        ctx.map_entry("VM", ref, "other_config", "xo:" + uuid[:8], json.dumps({"creation": {
            "date": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "template": template["uuid"], "user": user}}, separators=(",", ":")))
    except BaseException:
        with contextlib.suppress(XorestError):
            ctx.run("VM.destroy", ref)
        raise
    return uuid, ref


def configure(ctx, pool, ref, uuid, body):
    """Settings, install medium, disks and interfaces of a new VM (already provisioned)."""
    vm = {"_xapiRef": ref, "$pool": pool["id"], "id": uuid}
    props = {key: body[key] for key in ("name_description", "memory", "cpus", "autoPoweron", "hvmBootFirmware",
                                        "secureBoot", "high_availability", "affinity") if key in body}
    if body.get("copyHostBiosStrings") and body.get("hvmBootFirmware") != "uefi":
        host = ctx.get("hosts", body.get("affinity") or pool["master"], parameter="affinity")
        ctx.run("VM.copy_bios_strings", ref, host["_xapiRef"])
    edit_vm(ctx, vm, props)
    bootable = _install(ctx, ref, body.get("install"))
    _disks(ctx, pool, ref, body.get("vdis") or [], bootable)
    _interfaces(ctx, ref, body.get("vifs"))


def _boot_first(ctx, ref, device):
    order = ctx.field("VM", ref, "HVM_boot_params").get("order")
    ctx.map_entry("VM", ref, "HVM_boot_params", "order", device + order.replace(device, "") if order
                  else device + "cdn".replace(device, ""))


def _install(ctx, ref, install):
    """Boot from a CD (an ISO's VDI inserted) or the network; ``True`` if a CD boots."""
    if not install:
        return False
    hvm = ctx.field("VM", ref, "domain_type") == "hvm" or ctx.field("VM", ref, "HVM_boot_policy")
    if install["method"] == "network":
        if hvm:
            _boot_first(ctx, ref, "n")
        return False
    iso = ctx.get("vdis", install["repository"], parameter="install.repository")
    if hvm:
        _boot_first(ctx, ref, "d")
    cd = next((v for v in ctx.field("VM", ref, "VBDs") if ctx.field("VBD", v, "type") == "CD"), None)
    if cd is not None and ctx.field("VBD", cd, "empty"):
        ctx.call("VBD.insert", cd, iso["_xapiRef"])
        ctx.call("VBD.set_bootable", cd, True)
    elif cd is None:
        create_vbd(ctx, {"VM": ref, "VDI": iso["_xapiRef"], "type": "CD", "bootable": True})
    return True


def _disks(ctx, pool, ref, vdis, bootable):
    """New disks (no ``userdevice``), the template's changed, or destroyed (``destroy``)."""
    existing = {ctx.field("VBD", v, "userdevice"): v for v in ctx.field("VM", ref, "VBDs")}
    created = 0
    for spec in vdis:
        device = spec.get("userdevice", spec.get("userdervice"))  # Xen Orchestra's schema spells it so
        vbd = existing.get(device) if device is not None else None
        if spec.get("destroy"):
            if vbd is not None and ctx.field("VBD", vbd, "VDI") != NULL:
                ctx.run("VDI.destroy", ctx.field("VBD", vbd, "VDI"))
            continue
        if vbd is None:
            sr = ctx.get("srs", spec["sr"], parameter="vdis.sr") if spec.get("sr") else \
                ctx.collections.get("srs", pool["default_SR"])
            vdi = ctx.call("VDI.create", {"name_label": spec.get("name_label") or "", "SR": sr["_xapiRef"],
                                          "name_description": spec.get("name_description") or "",
                                          "virtual_size": str(int(spec["size"])), "type": "user", "sharable": False,
                                          "read_only": False, "other_config": {}, "sm_config": {}, "tags": []})
            create_vbd(ctx, {"VM": ref, "VDI": vdi, "userdevice": device,
                             "bootable": not bootable and created == 0})
            created += 1
            continue
        _change_disk(ctx, ctx.field("VBD", vbd, "VDI"), spec, device)


def _change_disk(ctx, vdi, spec, device):
    for field in ("name_label", "name_description"):
        if spec.get(field) is not None:
            ctx.call(f"VDI.set_{field}", vdi, spec[field])
    if spec.get("sr"):
        sr = ctx.get("srs", spec["sr"], parameter="vdis.sr")
        current = ctx.collections.cache.snapshot().find("vdis", vdi) or {"$SR": None, "_xapiRef": vdi}
        vdi = move_vdi(ctx, current, sr)
    if spec.get("size") is not None:
        size = int(spec["size"])
        if size < ctx.field("VDI", vdi, "virtual_size"):
            raise Unprocessable(f"the disk at position {device} cannot shrink to {size} bytes", parameter="vdis.size")
        ctx.run("VDI.resize", vdi, str(size))


def _interfaces(ctx, ref, vifs):
    """Interfaces: replaced or destroyed by ``device``, or added on free devices."""
    if vifs is None:
        return
    free = ctx.call("VM.get_allowed_VIF_devices", ref)
    by_device = {ctx.field("VIF", v, "device"): v for v in ctx.field("VM", ref, "VIFs")}
    create = []
    for spec in vifs:
        if spec.get("device") is None:
            create.append(dict(spec, device=free.pop(0)))
            continue
        if spec["device"] in by_device:
            ctx.run("VIF.destroy", by_device.pop(spec["device"]))
        if not spec.get("destroy"):
            create.append(spec)
    for spec in create:
        network = ctx.get("networks", spec["network"], parameter="vifs.network")
        locked = bool(spec.get("ipv4_allowed") or spec.get("ipv6_allowed"))
        ctx.call("VIF.create", {"VM": ref, "network": network["_xapiRef"], "device": spec["device"],
                                "MAC": spec.get("mac") or "",
                                "MTU": str(spec.get("mtu") or network.get("MTU") or 1500),
                                "ipv4_allowed": spec.get("ipv4_allowed") or [],
                                "ipv6_allowed": spec.get("ipv6_allowed") or [],
                                "locking_mode": "locked" if locked else "network_default", "other_config": {},
                                "qos_algorithm_type": "", "qos_algorithm_params": {}})
