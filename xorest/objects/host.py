"""pool and host records (with ``host_metrics``) to ``pool`` and ``host`` objects."""
from .context import ABSENT, compact, num, timestamp
from .values import semver_at_least

#: Record fields read here, per XAPI class (records are stored with these only).
FIELDS = {
    "pool": ("uuid", "name_label", "name_description", "tags", "other_config", "master", "default_SR",
             "crash_dump_SR", "suspend_image_SR", "ha_enabled", "ha_statefiles",
             "ha_reboot_vm_on_internal_shutdown", "cpu_info", "restrictions", "migration_compression",
             "current_operations"),
    "host": ("uuid", "name_label", "name_description", "tags", "other_config", "address", "hostname",
             "enabled", "bios_strings", "capabilities", "chipset_info", "control_domain", "cpu_info",
             "iscsi_iqn", "license_params", "license_server", "logging", "patches", "power_on_mode",
             "resident_VMs", "software_version", "updates", "updates_requiring_reboot", "certificates",
             "PBDs", "PIFs", "PCIs", "PGPUs", "current_operations", "metrics"),
    "host_metrics": ("uuid", "live", "memory_free", "memory_total"),
    "Certificate": ("uuid", "fingerprint", "not_after"),
    "host_patch": ("uuid",),  # deprecated; only their uuids, for patches
    "pool_update": ("uuid", "name_label", "name_description", "key", "version", "after_apply_guidance",
                    "hosts", "vdi", "installation_size"),
}

GiB = 1024 ** 3


def pool(record, ctx, ref=None):
    """The XO object of the pool record."""
    master = ctx.record(record.get("master")) or {}
    other = record.get("other_config") or {}
    cpu = record.get("cpu_info")
    restrictions = record.get("restrictions") or {}
    ha_srs = []
    for vdi_ref in record.get("ha_statefiles") or ():
        vdi = ctx.record(vdi_ref)
        if vdi is not None:  # statefile VDIs that are not cached yet are left out
            sr = ctx.link(vdi.get("SR"))
            ha_srs.append(None if sr is ABSENT else sr)
    reboot = record.get("ha_reboot_vm_on_internal_shutdown")
    return compact({
        "auto_poweron": other.get("auto_poweron") == "true",
        "crashDumpSr": ctx.link(record.get("crash_dump_SR")),
        "current_operations": record.get("current_operations", ABSENT),
        "default_SR": ctx.link(record.get("default_SR")),
        "HA_enabled": bool(record.get("ha_enabled")),
        "haRebootVmOnInternalShutdown": True if reboot is None else reboot,  # older XAPIs: always
        "haSrs": ha_srs,
        "master": ctx.link(record.get("master")),
        "tags": record.get("tags", ABSENT),
        "name_description": record.get("name_description", ABSENT),
        "name_label": record.get("name_label") or master.get("name_label", ABSENT),
        "migrationCompression": record.get("migration_compression", ABSENT),
        "otherConfig": record.get("other_config", ABSENT),
        "cpus": _cpus(cpu),
        "suspendSr": ctx.link(record.get("suspend_image_SR")),
        "zstdSupported": restrictions.get("restrict_zstd_export") == "false",
        "vtpmSupported": restrictions.get("restrict_vtpm") == "false",
        "platform_version": (master.get("software_version") or {}).get("platform_version", ABSENT),
    })


def _cpus(cpu):
    if cpu is None:
        return {}  # both undefined
    return {"cores": num(cpu.get("cpu_count")), "sockets": num(cpu.get("socket_count"))}


def _memory(metrics, running):
    if metrics is None:
        return {"usage": 0, "size": 0, "total": 0}  # total: deprecated, only here
    free = num(metrics.get("memory_free"))
    total = num(metrics.get("memory_total"))
    if total is not None:
        total = -(-total // GiB) * GiB  # whole GiB, rounded up
        if isinstance(total, float):
            total = int(total) if total.is_integer() else total
    usage = (total - free if None not in (total, free) else None) if running else 0
    return {"usage": usage, "size": total}


def _supplemental_packs(record, ctx, software):
    """Installed supplemental packs: from the pool updates of hosts on the update system
    (platform 2.1.1 and later, as XenCenter decides), else from ``software_version``
    entries named ``<author>:<name>``."""
    if semver_at_least(software.get("platform_version"), (2, 1, 1)):
        packs = []
        for ref in record.get("updates") or ():
            update = ctx.record(ref)
            if update is None or (update.get("name_label") or "").startswith("XS"):
                continue  # XS* updates are patches, listed as patches
            key = (update.get("key") or "").split("-")
            packs.append(compact({
                "name": update.get("name_label", ABSENT),
                "description": update.get("name_description", ABSENT),
                "author": key[3] if len(key) > 3 else ABSENT,
                "version": update.get("version", ABSENT),
                "guidance": update.get("after_apply_guidance", ABSENT),
                "hosts": ctx.links(update.get("hosts")),
                "vdi": ctx.link(update.get("vdi")),
                "size": update.get("installation_size", ABSENT),
            }))
        return packs
    packs = []
    for key, value in software.items():
        parts = key.split(":")
        if len(parts) == 2 and isinstance(value, str):
            description, *rest = value.split(", ")
            words = rest[0].split(" ") if rest else []
            packs.append(compact({"name": parts[1], "description": description, "author": parts[0],
                                  "version": words[1] if len(words) > 1 else ABSENT}))
    return packs


def _reboot_required(record, software, other):
    """XCP-ng: patches installed (``rpm_patch_installation_time``) after the last boot;
    elsewhere: updates waiting for a reboot."""
    if software.get("product_brand") == "XCP-ng":
        installed = num(other.get("rpm_patch_installation_time"))
        booted = timestamp(other.get("boot_time")) or 0  # null compares as 0
        return installed is not None and booted < installed
    return bool(record.get("updates_requiring_reboot"))


def host(record, ctx, ref=None):
    """The XO object of a host record, with its ``host_metrics``."""
    metrics = ctx.record(record.get("metrics"))
    software = record.get("software_version") or {}
    other = record.get("other_config") or {}
    license_params = record.get("license_params") or {}
    chipset = record.get("chipset_info") or {}
    running = bool(metrics and metrics.get("live"))
    iqn = record.get("iscsi_iqn")
    certificates = record.get("certificates")
    return compact({
        "CPUs": record.get("cpu_info", ABSENT),  # deprecated
        "address": record.get("address", ABSENT),
        "bios_strings": record.get("bios_strings", ABSENT),
        "build": software.get("build_number", ABSENT),
        "chipset_info": {"iommu": chipset["iommu"] == "true"} if "iommu" in chipset else {},
        "enabled": bool(record.get("enabled")),
        "controlDomain": ctx.link(record.get("control_domain")),
        "cpus": _cpus(record.get("cpu_info")),
        "current_operations": record.get("current_operations", ABSENT),
        "hostname": record.get("hostname", ABSENT),
        "iscsiIqn": iqn if iqn is not None else other.get("iscsi_iqn", ""),
        "zstdSupported": license_params.get("restrict_zstd_export") == "false",
        "license_params": record.get("license_params", ABSENT),
        "license_server": record.get("license_server", ABSENT),
        "license_expiry": timestamp(license_params.get("expiry")),
        "logging": record.get("logging", ABSENT),
        "name_description": record.get("name_description", ABSENT),
        "name_label": record.get("name_label", ABSENT),
        "memory": _memory(metrics, running),
        "multipathing": other.get("multipathing") == "true",
        "otherConfig": record.get("other_config", ABSENT),
        "patches": ctx.links(record.get("patches")),
        "powerOnMode": record.get("power_on_mode", ABSENT),
        "power_state": ("Running" if running else "Halted") if metrics is not None else "Unknown",
        "residentVms": ctx.links(record.get("resident_VMs")),
        "startTime": timestamp(other.get("boot_time")),
        "supplementalPacks": _supplemental_packs(record, ctx, software),
        "agentStartTime": timestamp(other.get("agent_start_time")),
        "rebootRequired": _reboot_required(record, software, other),
        "tags": record.get("tags", ABSENT),
        "version": software.get("product_version", ABSENT),
        "productBrand": software.get("product_brand", ABSENT),
        "hvmCapable": any(c.startswith("hvm") for c in record.get("capabilities") or ()),
        # XCP-ng / Citrix Hypervisor 8.2 and later; certificates not cached yet are skipped
        "certificates": ABSENT if certificates is None else [
            compact({"fingerprint": c.get("fingerprint", ABSENT), "notAfter": timestamp(c.get("not_after"))})
            for c in (ctx.record(ref) for ref in certificates) if c is not None],
        "PIFs": ctx.links(record.get("PIFs")),
        "$PIFs": ctx.links(record.get("PIFs")),
        "PCIs": ctx.links(record.get("PCIs")),
        "$PCIs": ctx.links(record.get("PCIs")),
        "PGPUs": ctx.links(record.get("PGPUs")),
        "$PGPUs": ctx.links(record.get("PGPUs")),
        "$PBDs": ctx.links(record.get("PBDs")),
    })
