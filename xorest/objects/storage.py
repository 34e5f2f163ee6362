"""SR, SM, VDI, VBD and PBD records to their XO objects."""
import re

from .context import ABSENT, compact, num, timestamp

# Xen Orchestra's allocation per SR type; other types have none (LINSTOR says in its PBD).
_ALLOCATION = {
    **dict.fromkeys(("ext", "file", "nfs", "shm", "smb", "zfs"), "thin"),
    **dict.fromkeys(("hba", "iscsi", "lvhd", "lvhdofcoe", "lvhdohba", "lvhdoiscsi", "lvm", "lvmofcoe",
                     "lvmohba", "lvmoiscsi", "ocfs", "ocfsohba", "ocfsoiscsi", "rawhba", "rawiscsi", "udev"),
                    "thick"),
}
# Keys whose string values Xen Orchestra hides (``@vates/obfuscate``).
_SENSITIVE = re.compile(r"password", re.I)
_SENSITIVE_NAMES = ("token", "passphrase", "encryptionKey")

#: Record fields read here, per XAPI class (records are stored with these only).
FIELDS = {
    "SR": ("uuid", "name_label", "name_description", "tags", "other_config", "type", "content_type",
           "shared", "physical_size", "physical_utilisation", "virtual_allocation", "sm_config", "PBDs",
           "VDIs", "current_operations"),
    "SM": ("uuid", "name_label", "name_description", "type", "configuration", "vendor", "features",
           "driver_filename", "required_cluster_stack", "supported_image_formats"),
    "VDI": ("uuid", "name_label", "name_description", "tags", "other_config", "type", "SR", "VBDs",
            "virtual_size", "physical_utilisation", "read_only", "managed", "missing", "cbt_enabled",
            "sm_config", "is_a_snapshot", "snapshot_of", "snapshot_time", "snapshots", "current_operations"),
    "VBD": ("uuid", "VM", "VDI", "device", "userdevice", "bootable", "mode", "type", "currently_attached"),
    "PBD": ("uuid", "SR", "host", "device_config", "currently_attached", "other_config"),
}


def sr(record, ctx, ref=None):
    """The XO object of an SR: a local SR belongs to the host of its first PBD."""
    sr_type = record.get("type")
    pbds = record.get("PBDs") or ()
    first_pbd = ctx.record(pbds[0]) if pbds else None
    if sr_type == "linstor":
        allocation = ((first_pbd or {}).get("device_config") or {}).get("provisioning", "unknown")
    else:
        allocation = _ALLOCATION.get(sr_type, ABSENT)
    other = record.get("other_config") or {}
    return compact({
        "type": "SR",
        "content_type": record.get("content_type", ABSENT),
        "physical_usage": num(record.get("physical_utilisation")),
        "allocationStrategy": allocation,
        "current_operations": record.get("current_operations", ABSENT),
        "inMaintenanceMode": "xo:maintenanceState" in other,
        "name_description": record.get("name_description", ABSENT),
        "name_label": record.get("name_label", ABSENT),
        "size": num(record.get("physical_size")),
        "shared": bool(record.get("shared")),
        "SR_type": sr_type if sr_type is not None else ABSENT,
        "tags": record.get("tags", ABSENT),
        "usage": num(record.get("virtual_allocation")),
        "VDIs": ctx.links(record.get("VDIs")),
        "other_config": record.get("other_config", ABSENT),
        "sm_config": record.get("sm_config", ABSENT),
        "$container": ctx.pool_uuid if record.get("shared") or first_pbd is None
        else ctx.link(first_pbd.get("host")),
        "$PBDs": ctx.links(record.get("PBDs")),
    })


def sm(record, ctx, ref=None):
    """The XO object of an SM (a storage driver)."""
    formats = record.get("supported_image_formats")
    return compact({
        "type": "SM",
        "uuid": record.get("uuid", ABSENT),
        "name_description": record.get("name_description", ABSENT),
        "name_label": record.get("name_label", ABSENT),
        "SM_type": record.get("type", ABSENT),
        "configuration": record.get("configuration", ABSENT),
        "vendor": record.get("vendor", ABSENT),
        "features": record.get("features", ABSENT),
        "driver_filename": record.get("driver_filename", ABSENT),
        "required_cluster_stack": record.get("required_cluster_stack", ABSENT),
        "supported_image_formats": [] if formats is None else formats,  # XAPI 24.x and later
    })


def vdi_type(record, ctx):
    """``VDI-snapshot`` (flagged, or pointing at a cached object), ``VDI-unmanaged`` or ``VDI``."""
    if record.get("is_a_snapshot") or ctx.link(record.get("snapshot_of")) is not ABSENT:
        return "VDI-snapshot"
    return "VDI" if record.get("managed") else "VDI-unmanaged"


def _chain_usage(record, ctx):
    """Physical usage of the VDI and of every cached parent in its VHD chain."""
    total = num(record.get("physical_utilisation"))
    parent = (record.get("sm_config") or {}).get("vhd-parent")
    seen = {record.get("uuid")}
    while parent is not None and parent not in seen:  # a corrupt chain could loop
        seen.add(parent)
        found = ctx.find(parent)
        if found is None:
            break
        usage = num(found[2].get("physical_utilisation"))
        total = None if total is None or usage is None else total + usage
        parent = (found[2].get("sm_config") or {}).get("vhd-parent")
    return total


def vdi(record, ctx, ref=None):
    """The XO object of a VDI (``VDI``, ``VDI-snapshot`` or ``VDI-unmanaged``)."""
    sm_config = record.get("sm_config") or {}
    xo_type = vdi_type(record, ctx)
    obj = {
        "type": xo_type,
        "cbt_enabled": record.get("cbt_enabled", ABSENT),
        "missing": record.get("missing", ABSENT),
        "name_description": record.get("name_description", ABSENT),
        "name_label": record.get("name_label", ABSENT),
        "parent": sm_config.get("vhd-parent", ABSENT),
        "image_format": sm_config.get("image-format", ABSENT),
        "size": num(record.get("virtual_size")),
        "snapshots": ctx.links(record.get("snapshots")),
        "tags": record.get("tags", ABSENT),
        "usage": num(record.get("physical_utilisation")),
        "VDI_type": record.get("type", ABSENT),
        "current_operations": record.get("current_operations", ABSENT),
        "other_config": record.get("other_config", ABSENT),
        "$SR": ctx.link(record.get("SR")),
        "$VBDs": ctx.links(record.get("VBDs")),
    }
    if xo_type == "VDI-snapshot":
        obj["snapshot_time"] = timestamp(record.get("snapshot_time"))
        obj["$snapshot_of"] = ctx.link(record.get("snapshot_of"))
    elif xo_type == "VDI":
        obj["chainPhysicalUsage"] = _chain_usage(record, ctx)
    # not in Xen Orchestra: disk imports refuse read-only VDIs, and clients can filter on it
    obj["read_only"] = bool(record.get("read_only"))
    return compact(obj)


def vbd(record, ctx, ref=None):
    """The XO object of a VBD; an empty CD drive has no ``VDI``."""
    return compact({
        "type": "VBD",
        "attached": bool(record.get("currently_attached")),
        "bootable": bool(record.get("bootable")),
        "device": record.get("device") or None,
        "is_cd_drive": record.get("type") == "CD",
        "position": record.get("userdevice", ABSENT),
        "read_only": record.get("mode") == "RO",
        "VDI": ctx.link(record.get("VDI")),
        "VM": ctx.link(record.get("VM")),
    })


def _obfuscate(value, name=None):
    sensitive = isinstance(name, str) and (name in _SENSITIVE_NAMES or _SENSITIVE.search(name))
    if isinstance(value, str) and sensitive:
        return "* obfuscated *"
    if isinstance(value, dict):
        return {key: _obfuscate(item, key) for key, item in value.items()}
    if isinstance(value, list):
        return [_obfuscate(item) for item in value]
    return value


def pbd(record, ctx, ref=None):
    """The XO object of a PBD; secrets in ``device_config`` are hidden as Xen Orchestra hides them."""
    config = record.get("device_config")
    return compact({
        "type": "PBD",
        "attached": bool(record.get("currently_attached")),
        "host": ctx.link(record.get("host")),
        "SR": ctx.link(record.get("SR")),
        "device_config": ABSENT if config is None else _obfuscate(config),
        "otherConfig": record.get("other_config", ABSENT),
    })
