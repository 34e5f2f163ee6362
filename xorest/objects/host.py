"""pool and host records (with ``host_metrics``) to ``pool`` and ``host`` objects."""
from .context import parse_datetime, to_int

#: Record fields read here, per XAPI class (records are stored with these only).
FIELDS = {
    "pool": ("uuid", "name_label", "name_description", "tags", "other_config", "master", "default_SR",
             "crash_dump_SR", "suspend_image_SR", "ha_enabled", "cpu_info", "restrictions",
             "migration_compression", "current_operations"),
    "host": ("uuid", "name_label", "name_description", "tags", "other_config", "address", "hostname",
             "enabled", "bios_strings", "capabilities", "control_domain", "cpu_info", "license_params",
             "logging", "patches", "power_on_mode", "resident_VMs", "software_version", "PBDs", "PIFs",
             "current_operations", "metrics"),
    "host_metrics": ("uuid", "live", "memory_free", "memory_total"),
}

GiB = 1024 ** 3


def pool(record, ctx):
    master = ctx.record(record.get("master")) or {}
    other = record.get("other_config") or {}
    cpu = record.get("cpu_info") or {}
    restrictions = record.get("restrictions") or {}
    return {
        "type": "pool",
        "name_label": record.get("name_label") or master.get("name_label", ""),
        "name_description": record.get("name_description", ""),
        "tags": list(record.get("tags") or []),
        "master": ctx.uuid(record.get("master")),
        "default_SR": ctx.uuid(record.get("default_SR")),
        "suspendSr": ctx.uuid(record.get("suspend_image_SR")),
        "crashDumpSr": ctx.uuid(record.get("crash_dump_SR")),
        "HA_enabled": bool(record.get("ha_enabled")),
        "auto_poweron": other.get("auto_poweron") == "true",
        "otherConfig": other,
        "current_operations": record.get("current_operations") or {},
        "cpus": {"cores": to_int(cpu.get("cpu_count")), "sockets": to_int(cpu.get("socket_count"))},
        "platform_version": (master.get("software_version") or {}).get("platform_version"),
        "zstdSupported": restrictions.get("restrict_zstd_export") == "false",
        "vtpmSupported": restrictions.get("restrict_vtpm") == "false",
        "migrationCompression": record.get("migration_compression"),
    }


def host(record, ctx):
    metrics = ctx.record(record.get("metrics"))
    software = record.get("software_version") or {}
    cpu = record.get("cpu_info") or {}
    other = record.get("other_config") or {}
    license_params = record.get("license_params") or {}
    total = to_int(metrics.get("memory_total")) if metrics else 0
    free = to_int(metrics.get("memory_free")) if metrics else 0
    if metrics is None:
        power_state = "Unknown"
    else:
        power_state = "Running" if metrics.get("live") else "Halted"
    return {
        "type": "host",
        "name_label": record.get("name_label", ""),
        "name_description": record.get("name_description", ""),
        "hostname": record.get("hostname", ""),
        "address": record.get("address", ""),
        "enabled": bool(record.get("enabled")),
        "power_state": power_state,
        "tags": list(record.get("tags") or []),
        "controlDomain": ctx.uuid(record.get("control_domain")),
        "build": software.get("build_number"),
        "version": software.get("product_version"),
        "productBrand": software.get("product_brand"),
        "cpus": {"cores": to_int(cpu.get("cpu_count")), "sockets": to_int(cpu.get("socket_count"))},
        "CPUs": cpu,
        "memory": {"size": -(-total // GiB) * GiB if total else 0, "usage": total - free if total else 0},
        "bios_strings": record.get("bios_strings") or {},
        "license_params": license_params,
        "license_expiry": parse_datetime(license_params.get("expiry")),
        "zstdSupported": license_params.get("restrict_zstd_export") == "false",
        "logging": record.get("logging") or {},
        "otherConfig": other,
        "startTime": to_int(other.get("boot_time"), None),
        "agentStartTime": to_int(other.get("agent_start_time"), None),
        "hvmCapable": any(c.startswith("hvm") for c in record.get("capabilities") or ()),
        "powerOnMode": record.get("power_on_mode", ""),
        "current_operations": record.get("current_operations") or {},
        "residentVms": ctx.uuids(record.get("resident_VMs")),
        "PIFs": ctx.uuids(record.get("PIFs")), "$PIFs": ctx.uuids(record.get("PIFs")),
        "$PBDs": ctx.uuids(record.get("PBDs")),
        "patches": ctx.uuids(record.get("patches")),
    }
