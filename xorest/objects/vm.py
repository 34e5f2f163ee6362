"""VM records to ``VM``, ``VM-snapshot``, ``VM-template`` and ``VM-controller`` objects."""
import json

from .context import NULL_REF, is_default_template, parse_datetime, to_int

GiB = 1024 ** 3

#: Record fields read here, per XAPI class (records are stored with these only).
FIELDS = {
    "VM": ("uuid", "name_label", "name_description", "power_state", "tags", "other_config",
           "is_control_domain", "is_a_snapshot", "is_a_template", "is_default_template",
           "blocked_operations", "current_operations", "HVM_boot_params", "HVM_boot_policy",
           "PV_args", "bios_strings", "VCPUs_max", "VCPUs_at_startup", "VCPUs_params", "platform",
           "memory_dynamic_min", "memory_dynamic_max", "memory_static_min", "memory_static_max",
           "domain_type", "has_vendor_device", "ha_restart_priority", "affinity", "start_delay",
           "xenstore_data", "parent", "snapshots", "snapshot_of", "snapshot_time", "suspend_SR",
           "suspend_VDI", "VIFs", "VBDs", "resident_on", "metrics", "guest_metrics"),
    "VM_metrics": ("uuid", "VCPUs_number", "memory_actual", "install_time", "start_time"),
    "VM_guest_metrics": ("uuid", "networks", "os_version", "other", "PV_drivers_version",
                         "PV_drivers_detected", "PV_drivers_up_to_date"),
}


def vm_type(record):
    """XO's type rule: control domain, then snapshot, then template, else VM."""
    if record.get("is_control_domain"):
        return "VM-controller"
    if record.get("is_a_snapshot"):
        return "VM-snapshot"
    if record.get("is_a_template"):
        return "VM-template"
    return "VM"


def _addresses(guest):
    networks = (guest or {}).get("networks") or {}
    addresses = {k: v for k, v in networks.items() if v}
    main = None
    for key in sorted(addresses):
        if key.endswith("/ip") or "/ipv4/" in key:
            main = addresses[key]
            break
    if main is None and addresses:
        main = addresses[sorted(addresses)[0]]
    return addresses, main


def _container(record, ctx):
    host = record.get("resident_on")
    if host and host != NULL_REF and ctx.uuid(host):
        return ctx.uuid(host)
    for vbd_ref in record.get("VBDs") or ():
        vbd = ctx.record(vbd_ref)
        vdi = ctx.record(vbd.get("VDI")) if vbd else None
        sr = ctx.record(vdi.get("SR")) if vdi else None
        if sr and not sr.get("shared"):
            pbds = [ctx.record(p) for p in sr.get("PBDs") or ()]
            hosts = [ctx.uuid(p.get("host")) for p in pbds if p]
            if hosts and hosts[0]:
                return hosts[0]
    return ctx.pool_uuid


def vm(record, ctx, ref=None):
    metrics = ctx.record(record.get("metrics")) or {}
    guest = ctx.record(record.get("guest_metrics")) or {}
    platform = record.get("platform") or {}
    other = record.get("other_config") or {}
    addresses, main_ip = _addresses(guest)
    xo_type = vm_type(record)
    running = record.get("power_state") in ("Running", "Paused")
    pv_version = guest.get("PV_drivers_version") or {}
    obj = {
        "type": xo_type,
        "name_label": record.get("name_label", ""),
        "name_description": record.get("name_description", ""),
        "power_state": record.get("power_state"),
        "tags": list(record.get("tags") or []),
        "addresses": addresses,
        "mainIpAddress": main_ip,
        "os_version": guest.get("os_version") or None,
        "auto_poweron": other.get("auto_poweron") == "true",
        "other": other,
        "notes": other.get("xo:notes"),
        "blockedOperations": record.get("blocked_operations") or {},
        "current_operations": record.get("current_operations") or {},
        "boot": record.get("HVM_boot_params") or {},
        "bios_strings": record.get("bios_strings") or {},
        "CPUs": {
            "max": to_int(record.get("VCPUs_max")),
            "number": to_int(metrics.get("VCPUs_number")) if running and metrics.get("VCPUs_number")
            else to_int(record.get("VCPUs_at_startup")),
        },
        "cpuWeight": to_int((record.get("VCPUs_params") or {}).get("weight"), None),
        "cpuCap": to_int((record.get("VCPUs_params") or {}).get("cap"), None),
        "coresPerSocket": to_int(platform.get("cores-per-socket"), None),
        "memory": {
            "dynamic": [to_int(record.get("memory_dynamic_min")), to_int(record.get("memory_dynamic_max"))],
            "static": [to_int(record.get("memory_static_min")), to_int(record.get("memory_static_max"))],
            "size": to_int(metrics.get("memory_actual")) if running else to_int(record.get("memory_dynamic_max")),
        },
        "virtualizationMode": record.get("domain_type") or
        ("hvm" if record.get("HVM_boot_policy") else "pv"),
        "viridian": platform.get("viridian") == "true",
        "secureBoot": platform.get("secureboot") == "true",
        "hasVendorDevice": bool(record.get("has_vendor_device")),
        "high_availability": record.get("ha_restart_priority", ""),
        "affinityHost": ctx.uuid(record.get("affinity")),
        "startDelay": to_int(record.get("start_delay")),
        "installTime": parse_datetime(metrics.get("install_time")),
        "startTime": parse_datetime(metrics.get("start_time")) if running else None,
        "pvDriversDetected": bool(guest.get("PV_drivers_detected")),
        "pvDriversUpToDate": bool(guest.get("PV_drivers_up_to_date")),
        "pvDriversVersion": ".".join(pv_version[k] for k in ("major", "minor", "micro") if k in pv_version)
        or None,
        "managementAgentDetected": (guest.get("other") or {}).get("feature-static-ip-setting") == "1",
        "xenStoreData": record.get("xenstore_data") or {},
        "parent": ctx.uuid(record.get("parent")),
        "snapshots": ctx.uuids(record.get("snapshots")),
        "VIFs": ctx.uuids(record.get("VIFs")),
        "$VBDs": ctx.uuids(record.get("VBDs")),
        "$container": _container(record, ctx),
        "suspendSr": ctx.uuid(record.get("suspend_SR")),
    }
    if record.get("domain_type") == "pv" or not record.get("HVM_boot_policy"):
        obj["PV_args"] = record.get("PV_args", "")
    creation = other.get("xo:" + record.get("uuid", "")[:8])
    if creation:
        try:
            obj["creation"] = json.loads(creation)
        except ValueError:
            pass
    if xo_type == "VM-snapshot":
        obj["snapshot_time"] = parse_datetime(record.get("snapshot_time"))
        obj["$snapshot_of"] = ctx.uuid(record.get("snapshot_of"))
        obj["suspendVdi"] = ctx.uuid(record.get("suspend_VDI"))
    if xo_type == "VM-template":
        default = is_default_template(record)
        obj["isDefaultTemplate"] = default
        obj["template_info"] = {"arch": other.get("install-arch"),
                                "install_methods": (other.get("install-methods") or "").split(",")
                                if other.get("install-methods") else []}
        if default:
            obj["id"] = f"{ctx.pool_uuid}-{record.get('uuid')}"
    return obj
