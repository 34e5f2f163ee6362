"""VM records to ``VM``, ``VM-snapshot``, ``VM-template`` and ``VM-controller`` objects.

Keys come in Xen Orchestra's order; keys it leaves ``undefined`` are left out.
"""
import json

from . import guest as guest_info
from .context import ABSENT, NULL_REF, compact, is_default_template, num, timestamp, truthy
from .values import semver_at_least
from .xmltree import as_list, firmware_restrictions, firmware_supported, parse_xml, template_disks

#: Record fields read here, per XAPI class (records are stored with these only).
FIELDS = {
    "VM": ("uuid", "name_label", "name_description", "power_state", "tags", "other_config",
           "is_control_domain", "is_a_snapshot", "is_a_template", "is_default_template",
           "blocked_operations", "current_operations", "HVM_boot_params", "HVM_boot_policy",
           "PV_args", "bios_strings", "VCPUs_max", "VCPUs_at_startup", "VCPUs_params", "platform",
           "memory_dynamic_min", "memory_dynamic_max", "memory_static_min", "memory_static_max",
           "domain_type", "has_vendor_device", "ha_restart_priority", "affinity", "start_delay",
           "xenstore_data", "parent", "snapshots", "snapshot_of", "snapshot_time", "suspend_SR",
           "suspend_VDI", "VIFs", "VBDs", "VTPMs", "VGPUs", "recommendations", "resident_on",
           "metrics", "guest_metrics"),
    "VM_metrics": ("uuid", "VCPUs_number", "memory_actual", "install_time", "start_time"),
    "VM_guest_metrics": ("uuid", "networks", "os_version", "other", "memory", "PV_drivers_version",
                         "PV_drivers_detected", "PV_drivers_up_to_date"),
    # only their uuids, for VTPMs / VGPUs
    "VTPM": ("uuid",),
    "VGPU": ("uuid",),
}
#: Fields kept in a smaller form that maps the same (see ``objects.trim``).
REDUCED = {"VM": {"recommendations": firmware_restrictions}}


def vm_type(record, ctx):
    """XO's type rule: control domain, then snapshot (flagged, or pointing at a cached
    object), then template, else VM."""
    if record.get("is_control_domain"):
        return "VM-controller"
    if record.get("is_a_snapshot") or ctx.link(record.get("snapshot_of")) is not ABSENT:
        return "VM-snapshot"
    if record.get("is_a_template"):
        return "VM-template"
    return "VM"


def domain_type(record):
    """``virtualizationMode``: ``domain_type`` unless missing or ``unspecified``, else
    guessed from the HVM boot policy."""
    value = record.get("domain_type")
    if value is not None and value != "unspecified":
        return value
    return "pv" if record.get("HVM_boot_policy") == "" else "hvm"


def _container(record, ctx):
    """A running (or resident) VM's host; else the host of its first disk on a local SR;
    else the pool.  Xen Orchestra computes it when the VM itself changes only."""
    resident = record.get("resident_on")
    if resident != NULL_REF:
        return ctx.link(resident)
    for vbd_ref in record.get("VBDs") or ():
        vbd = ctx.record(vbd_ref)
        vdi = ctx.record(vbd.get("VDI")) if vbd else None
        sr = ctx.record(vdi.get("SR")) if vdi else None
        if sr is not None and not sr.get("shared"):
            pbds = sr.get("PBDs") or ()
            pbd = ctx.record(pbds[0]) if pbds else None
            host = ctx.link(pbd.get("host")) if pbd else ABSENT
            if host is not ABSENT:
                return host
    return ctx.pool_uuid


def _current_operations(record, ctx):
    """``{task id: operation}``; operations whose task is not cached are left out."""
    result = {}
    for ref, operation in (record.get("current_operations") or {}).items():
        target = ctx.link(ref)
        if target is not ABSENT:
            result[target] = operation
    return result


def _xo_data(other, uuid, key):
    """One entry of Xen Orchestra's own data (``other_config["xo:<uuid8>"]``, JSON)."""
    text = other.get("xo:" + (uuid or "")[:8])
    if text is None:
        return ABSENT
    try:
        data = json.loads(text)
    except ValueError:
        return ABSENT  # Xen Orchestra fails on it; nothing to show
    return data.get(key, ABSENT) if isinstance(data, dict) else ABSENT


def _resource_set(other):
    text = other.get("xo:resource_set")
    if not truthy(text):
        return ABSENT if text is None else text
    try:
        return json.loads(text)
    except ValueError:
        return ABSENT


def _docker(other):
    """The xscontainer plugin's view of a VM running Docker (``docker_*`` XML entries)."""
    monitor = other.get("xscontainer-monitor")
    if not monitor:
        return ABSENT
    if monitor == "False":
        return {"enabled": False}
    process = other.get("docker_ps")
    parsed = _xml_part(process, "docker_ps")
    return compact({
        "enabled": True,
        "info": _xml_part(other.get("docker_info"), "docker_info"),
        # ensureArray: a falsy process that is set is wrapped as it is
        "containers": as_list(parsed.get("item") if isinstance(parsed, dict) else None) if process
        else ([] if process is None else [process]),
        "process": parsed,  # deprecated
        "version": _xml_part(other.get("docker_version"), "docker_version"),
    })


def _xml_part(text, root):
    """``text && parseXml(text)[root]``: the root element's value, or ``text`` when falsy."""
    if not text:
        return ABSENT if text is None else text
    data = parse_xml(text)
    return data.get(root, ABSENT) if isinstance(data, dict) else ABSENT


def _memory(record, running, metrics, guest):
    dynamic_max = num(record.get("memory_dynamic_max"))
    memory = {
        "dynamic": [num(record.get("memory_dynamic_min")), dynamic_max],
        "static": [num(record.get("memory_static_min")), num(record.get("memory_static_max"))],
    }
    used = (guest.get("memory") or {}).get("used") if guest else None
    if not running:
        memory["size"] = dynamic_max
    elif truthy(used):  # the guest agent's view, when it reports one
        memory["usage"] = num(used)
        memory["size"] = num(guest["memory"].get("total"))
    elif metrics is not None:
        memory["size"] = num(metrics.get("memory_actual"))
    else:
        memory["size"] = dynamic_max
    return memory


def vm(record, ctx, ref=None):
    """The XO object of a VM record (any of the four VM types)."""
    metrics = ctx.record(record.get("metrics"))
    guest = ctx.record(record.get("guest_metrics"))
    platform = record.get("platform") or {}
    other = record.get("other_config") or {}
    boot = record.get("HVM_boot_params", ABSENT)
    mode = domain_type(record)
    running = record.get("power_state") in ("Running", "Paused")
    tools = guest_info.xen_tools(running, metrics, guest)
    xo_type = vm_type(record, ctx)
    networks = guest.get("networks") if guest else None
    master = ctx.master() or {}
    pci = other.get("pci")
    obj = {
        "type": "VM",
        "addresses": guest_info.addresses(networks or {}),
        "affinityHost": ctx.link(record.get("affinity")),
        "attachedPcis": [(s.split("/") + [None])[1] for s in pci.split(",")] if pci is not None else ABSENT,
        "auto_poweron": other.get("auto_poweron") == "true",
        "bios_strings": record.get("bios_strings", ABSENT),
        "blockedOperations": record.get("blocked_operations", ABSENT),
        "boot": boot,
        "CPUs": {
            "max": num(record.get("VCPUs_max")),
            "number": num(metrics.get("VCPUs_number")) if running and metrics is not None and tools
            else num(record.get("VCPUs_at_startup")),
        },
        "creation": _xo_data(other, record.get("uuid"), "creation"),
        "current_operations": _current_operations(record, ctx),
        "docker": _docker(other),
        "expNestedHvm": platform.get("exp-nested-hvm") == "true",
        # nested-virt replaced exp-nested-hvm with Xen 4.17 (platform 3.4)
        "isNestedVirtEnabled": platform.get("nested-virt") == "true"
        if semver_at_least((master.get("software_version") or {}).get("platform_version"), (3, 4, 0))
        else platform.get("exp-nested-hvm") == "true",
        "vulnerabilities": ABSENT if xo_type != "VM" else {"xsa468": guest_info.xsa468(record, guest)},
        "viridian": platform.get("viridian") == "true",
        "mainIpAddress": guest_info.main_address(networks),
        "high_availability": record.get("ha_restart_priority", ABSENT),
        "isFirmwareSupported": firmware_supported(record.get("recommendations"),
                                                  (boot or {}).get("firmware")),
        "memory": _memory(record, running, metrics, guest),
        "installTime": timestamp(metrics.get("install_time")) if metrics is not None else ABSENT,
        "name_description": record.get("name_description", ABSENT),
        "name_label": record.get("name_label", ABSENT),
        "needsVtpm": platform.get("vtpm") == "true",
        "notes": other.get("xo:notes", ABSENT),
        "other": record.get("other_config", ABSENT),
        "os_version": guest.get("os_version") if guest and truthy(guest.get("os_version")) else None,
        "parent": ctx.link(record.get("parent")),
        "power_state": record.get("power_state", ABSENT),
        "hasVendorDevice": record.get("has_vendor_device", ABSENT),
        "resourceSet": _resource_set(other),
        "snapshots": ctx.links(record.get("snapshots")),
        "startDelay": num(record.get("start_delay")),
        "startTime": timestamp(metrics.get("start_time")) if metrics is not None else ABSENT,
        "secureBoot": platform.get("secureboot") == "true",
        "suspendSr": ctx.link(record.get("suspend_SR")),
        "tags": record.get("tags", ABSENT),
        "VIFs": ctx.links(record.get("VIFs")),
        "VTPMs": ctx.links(record.get("VTPMs")),
        "virtualizationMode": mode,
        "xenTools": tools,  # deprecated: pvDriversVersion
        **guest_info.tools_properties(running, metrics, guest),
        "$container": _container(record, ctx),
        "$VBDs": ctx.links(record.get("VBDs")),
        "VGPUs": ctx.links(record.get("VGPUs")),
        "$VGPUs": ctx.links(record.get("VGPUs")),
        "nicType": platform.get("nic_type", ABSENT),
        "xenStoreData": record.get("xenstore_data", ABSENT),
    }
    if mode == "hvm":
        obj["vga"] = platform.get("vga", "cirrus")
        obj["videoram"] = num(platform.get("videoram", 4))
    if "cores-per-socket" in platform:
        obj["coresPerSocket"] = num(platform["cores-per-socket"])
    obj["type"] = xo_type
    if xo_type == "VM-snapshot":
        obj["snapshot_time"] = timestamp(record.get("snapshot_time"))
        obj["$snapshot_of"] = ctx.link(record.get("snapshot_of"))
        obj["suspendVdi"] = ctx.link(record.get("suspend_VDI"))
    elif xo_type == "VM-template":
        _template(obj, record, other, ctx)
    params = record.get("VCPUs_params") or {}
    if params.get("cap") is not None:
        obj["cpuCap"] = num(params["cap"])
    if params.get("weight") is not None:
        obj["cpuWeight"] = num(params["weight"])
    mask = params.get("mask")
    obj["cpuMask"] = [num(m) for m in mask.split(",")] if mask is not None else ABSENT
    if mode != "hvm":
        obj["PV_args"] = record.get("PV_args", ABSENT)
    return compact(obj)


def _template(obj, record, other, ctx):
    default = is_default_template(record)
    if default:  # default templates have the same uuid in every pool
        obj["id"] = f"{ctx.pool_uuid}-{record.get('uuid')}"
    obj["CPUs"]["number"] = num(record.get("VCPUs_at_startup"))
    obj["isDefaultTemplate"] = default
    methods = other.get("install-methods")
    obj["template_info"] = compact({
        "arch": other.get("install-arch", ABSENT),
        "disks": template_disks(other.get("disks")),
        "install_methods": methods.split(",") if methods else [],
        "install_repository": other.get("install-repository", ABSENT),
    })
