"""SR, VDI, VBD and PBD records to their XO objects."""
from .context import NULL_REF, parse_datetime, to_int

_THIN = {"ext", "nfs", "file", "smb", "xfs", "zfs", "cephfs", "glusterfs", "iso"}

#: Record fields read here, per XAPI class (records are stored with these only).
FIELDS = {
    "SR": ("uuid", "name_label", "name_description", "tags", "other_config", "type", "content_type",
           "shared", "physical_size", "physical_utilisation", "virtual_allocation", "sm_config", "PBDs",
           "VDIs", "current_operations"),
    "VDI": ("uuid", "name_label", "name_description", "tags", "other_config", "type", "SR", "VBDs",
            "virtual_size", "physical_utilisation", "read_only", "managed", "missing", "cbt_enabled",
            "sm_config", "is_a_snapshot", "snapshot_of", "snapshot_time", "snapshots", "current_operations"),
    "VBD": ("uuid", "VM", "VDI", "device", "userdevice", "bootable", "mode", "type", "currently_attached"),
    "PBD": ("uuid", "SR", "host", "device_config", "currently_attached", "other_config"),
}


def sr(record, ctx):
    pbds = [ctx.record(p) for p in record.get("PBDs") or ()]
    sr_type = record.get("type", "")
    if record.get("shared"):
        container = ctx.pool_uuid
    else:
        hosts = [ctx.uuid(p.get("host")) for p in pbds if p]
        container = hosts[0] if hosts and hosts[0] else ctx.pool_uuid
    other = record.get("other_config") or {}
    return {
        "type": "SR",
        "name_label": record.get("name_label", ""),
        "name_description": record.get("name_description", ""),
        "SR_type": sr_type,
        "content_type": record.get("content_type", ""),
        "shared": bool(record.get("shared")),
        "size": to_int(record.get("physical_size")),
        "physical_usage": to_int(record.get("physical_utilisation")),
        "usage": to_int(record.get("virtual_allocation")),
        "allocationStrategy": "thin" if sr_type in _THIN else ("thick" if sr_type.startswith("lvm") else "unknown"),
        "tags": list(record.get("tags") or []),
        "other_config": other,
        "sm_config": record.get("sm_config") or {},
        "inMaintenanceMode": "xo:maintenanceState" in other,
        "current_operations": record.get("current_operations") or {},
        "VDIs": ctx.uuids(record.get("VDIs")),
        "$PBDs": ctx.uuids(record.get("PBDs")),
        "$container": container,
    }


def vdi(record, ctx):
    if record.get("managed") is False:
        xo_type = "VDI-unmanaged"
    elif record.get("is_a_snapshot"):
        xo_type = "VDI-snapshot"
    else:
        xo_type = "VDI"
    sm_config = record.get("sm_config") or {}
    obj = {
        "type": xo_type,
        "name_label": record.get("name_label", ""),
        "name_description": record.get("name_description", ""),
        "size": to_int(record.get("virtual_size")),
        "usage": to_int(record.get("physical_utilisation")),
        "VDI_type": record.get("type"),
        "cbt_enabled": bool(record.get("cbt_enabled")),
        "missing": bool(record.get("missing")),
        "read_only": bool(record.get("read_only")),
        "parent": sm_config.get("vhd-parent"),
        "image_format": sm_config.get("image-format"),
        "tags": list(record.get("tags") or []),
        "other_config": record.get("other_config") or {},
        "current_operations": record.get("current_operations") or {},
        "snapshots": ctx.uuids(record.get("snapshots")),
        "$SR": ctx.uuid(record.get("SR")),
        "$VBDs": ctx.uuids(record.get("VBDs")),
    }
    if xo_type == "VDI-snapshot":
        obj["snapshot_time"] = parse_datetime(record.get("snapshot_time"))
        obj["$snapshot_of"] = ctx.uuid(record.get("snapshot_of"))
    return obj


def vbd(record, ctx):
    vdi_ref = record.get("VDI")
    return {
        "type": "VBD",
        "attached": bool(record.get("currently_attached")),
        "bootable": bool(record.get("bootable")),
        "device": record.get("device") or None,
        "is_cd_drive": record.get("type") == "CD",
        "position": record.get("userdevice"),
        "read_only": record.get("mode") == "RO",
        "VDI": ctx.uuid(vdi_ref) if vdi_ref != NULL_REF else None,
        "VM": ctx.uuid(record.get("VM")),
    }


def pbd(record, ctx):
    config = dict(record.get("device_config") or {})
    for key in config:
        if "password" in key.lower() or "secret" in key.lower():
            config[key] = "* obfuscated *"
    return {
        "type": "PBD",
        "attached": bool(record.get("currently_attached")),
        "host": ctx.uuid(record.get("host")),
        "SR": ctx.uuid(record.get("SR")),
        "device_config": config,
        "otherConfig": record.get("other_config") or {},
    }
