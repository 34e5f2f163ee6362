"""A VM's settings changed the way Xen Orchestra's ``editVm`` changes them.

Properties are Xen Orchestra's (camelCase, as ``PATCH /vms/<id>`` takes them; the
snake_case spellings its editor also accepts are read too).  Each becomes the XAPI
calls Xen Orchestra makes: a field setter, a map entry (``platform``, ``other_config``,
``VCPUs_params``...), or a call that keeps XAPI's constraints (memory limits, live
VCPUs).  Values were validated by the API's schema.
"""
import json

from ..errors import NotSupported

NULL = "OpaqueRef:NULL"
ALIASES = {"name_label": "nameLabel", "name_description": "nameDescription", "CPUs": "cpus",
           "cpusMax": "cpusStaticMax", "auto_poweron": "autoPoweron", "high_availability": "highAvailability",
           "affinity": "affinityHost"}


def _bool_entry(value):
    return "true" if value else None


def _platform(key, convert=str):
    def set_(ctx, vm, value):
        ctx.map_entry("VM", vm["_xapiRef"], "platform", key, None if value is None else convert(value))
    return set_


def _field(name, convert=lambda v: v):
    def set_(ctx, vm, value):
        ctx.call(f"VM.set_{name}", vm["_xapiRef"], convert(value))
    return set_


def _vcpus_param(key, convert=str):
    def set_(ctx, vm, value):
        ctx.map_entry("VM", vm["_xapiRef"], "VCPUs_params", key, None if value is None else convert(value))
    return set_


def _record(ctx, vm):
    return ctx.call("VM.get_record", vm["_xapiRef"])


def set_auto_poweron(ctx, vm, value):
    ctx.map_entry("VM", vm["_xapiRef"], "other_config", "auto_poweron", _bool_entry(value))
    if value:  # a VM starts with its pool only if the pool starts its VMs
        pool = ctx.collections.get("pools", vm["$pool"])
        ctx.map_entry("pool", pool["_xapiRef"], "other_config", "auto_poweron", "true")


def set_blocked_operations(ctx, vm, operations):
    for operation, value in operations.items():
        reason = value if isinstance(value, str) else ("true" if value else None)
        ctx.map_entry("VM", vm["_xapiRef"], "blocked_operations", operation, reason)


def set_cpus(ctx, vm, value, body):
    record = _record(ctx, vm)
    if value > record["VCPUs_max"] and "cpusStaticMax" not in body:
        ctx.call("VM.set_VCPUs_max", vm["_xapiRef"], str(value))  # the other value follows (XO's constraint)
    ctx.call("VM.set_VCPUs_at_startup", vm["_xapiRef"], str(value))
    if record["power_state"] == "Running":
        ctx.call("VM.set_VCPUs_number_live", vm["_xapiRef"], str(value))


def set_memory(ctx, vm, value, body):
    """``memory``: one size for every limit, or the dynamic maximum when the VM uses
    dynamic memory (its limits differ), as Xen Orchestra dispatches it."""
    record = _record(ctx, vm)
    dynamic = (record["memory_dynamic_min"] != record["memory_dynamic_max"]
               or record["memory_dynamic_min"] != record["memory_static_max"])
    if dynamic:
        set_memory_max(ctx, vm, value, body, record)
    else:
        ctx.call("VM.set_memory_limits", vm["_xapiRef"], str(record["memory_static_min"]), str(value), str(value),
                 str(value))


def set_memory_max(ctx, vm, value, body, record=None):
    record = record or _record(ctx, vm)
    dynamic_min = min(record["memory_dynamic_min"], value)
    if record["power_state"] == "Running":
        ctx.call("VM.set_memory_dynamic_range", vm["_xapiRef"], str(dynamic_min), str(value))
        return
    static_min = min(record["memory_static_min"], value)
    ctx.call("VM.set_memory_limits", vm["_xapiRef"], str(static_min), str(max(value, record["memory_static_max"])),
             str(dynamic_min), str(value))


def set_memory_min(ctx, vm, value, body):
    record = _record(ctx, vm)
    if record["power_state"] == "Running":
        ctx.call("VM.set_memory_dynamic_range", vm["_xapiRef"], str(value),
                 str(max(value, record["memory_dynamic_max"])))
        return
    ctx.call("VM.set_memory_limits", vm["_xapiRef"], str(min(record["memory_static_min"], value)),
             str(record["memory_static_max"]), str(value), str(max(value, record["memory_dynamic_max"])))


def set_affinity(ctx, vm, value):
    host = ctx.get("hosts", value, parameter="affinityHost")["_xapiRef"] if value else NULL
    ctx.call("VM.set_affinity", vm["_xapiRef"], host)


def set_suspend_sr(ctx, vm, value):
    sr = ctx.get("srs", value, parameter="suspendSr")["_xapiRef"] if value else NULL
    ctx.call("VM.set_suspend_SR", vm["_xapiRef"], sr)


def set_firmware(ctx, vm, value):
    ctx.map_entry("VM", vm["_xapiRef"], "HVM_boot_params", "firmware", value)
    ctx.map_entry("VM", vm["_xapiRef"], "platform", "device-model",
                  "qemu-upstream-" + ("uefi" if value == "uefi" else "compat"))


def set_xenstore_data(ctx, vm, values):
    for key, value in values.items():
        ctx.map_entry("VM", vm["_xapiRef"], "xenstore_data", "vm-data/" + key.removeprefix("vm-data/"), value)


def set_creation(ctx, vm, value):
    """``creation`` is merged into Xen Orchestra's data of the VM (``other_config``)."""
    record = _record(ctx, vm)
    key = "xo:" + record["uuid"][:8]
    data = json.loads(record["other_config"].get(key) or "{}")
    data["creation"] = {**data.get("creation", {}), **value}
    ctx.map_entry("VM", vm["_xapiRef"], "other_config", key, json.dumps(data, separators=(",", ":")))


def not_supported(name):
    def set_(ctx, vm, value):
        if value not in (None, False):
            raise NotSupported(f"{name}: xorest has no resource sets", parameter=name)
    return set_


#: Property -> setter ``(ctx, vm, value)``, in the order they are applied.
SETTERS = {
    "nameLabel": _field("name_label"), "nameDescription": _field("name_description"),
    "affinityHost": set_affinity, "autoPoweron": set_auto_poweron,
    "blockedOperations": set_blocked_operations,
    "virtualizationMode": _field("domain_type"),
    "coresPerSocket": _platform("cores-per-socket"),
    "cpusStaticMax": _field("VCPUs_max", str), "cpuCap": _vcpus_param("cap"), "cpuWeight": _vcpus_param("weight"),
    "cpuMask": _vcpus_param("mask", lambda v: ",".join(str(int(c)) for c in v)),
    "highAvailability": _field("ha_restart_priority"),
    "memoryStaticMax": _field("memory_static_max", str),
    "notes": lambda ctx, vm, v: ctx.map_entry("VM", vm["_xapiRef"], "other_config", "xo:notes", v),
    "PV_args": _field("PV_args"), "tags": _field("tags", list), "hasVendorDevice": _field("has_vendor_device"),
    "expNestedHvm": _platform("exp-nested-hvm", _bool_entry), "nestedVirt": _platform("nested-virt", _bool_entry),
    "nicType": _platform("nic_type"), "vga": _platform("vga"), "videoram": _platform("videoram"),
    "viridian": _platform("viridian", _bool_entry), "startDelay": _field("start_delay", lambda v: str(int(v))),
    "secureBoot": _platform("secureboot", lambda v: "true" if v else "false"), "hvmBootFirmware": set_firmware,
    "suspendSr": set_suspend_sr, "uefiMode": _field("uefi_mode"), "xenStoreData": set_xenstore_data,
    "creation": set_creation, "resourceSet": not_supported("resourceSet"), "share": not_supported("share"),
}
#: Properties whose setter also reads the rest of the body (constraints between them).
CONSTRAINED = {"cpus": set_cpus, "memory": set_memory, "memoryMax": set_memory_max, "memoryMin": set_memory_min}


def edit_vm(ctx, vm, props):
    """Apply Xen Orchestra's VM properties ``props`` (absent ones stay as they are)."""
    props = {ALIASES.get(k, k): v for k, v in props.items()}
    for name, setter in SETTERS.items():
        if name in props:
            setter(ctx, vm, props[name])
    for name, setter in CONSTRAINED.items():
        if name in props and props[name] is not None:
            setter(ctx, vm, int(props[name]), props)
