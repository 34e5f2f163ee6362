"""PCI and PGPU records to their XO objects; vGPU, vGPU type and GPU group records are
kept only for the uuids these objects (and VMs) link to."""
from .context import ABSENT, compact

#: Record fields read here, per XAPI class (records are stored with these only).
FIELDS = {
    "PCI": ("uuid", "class_name", "device_name", "pci_id", "host"),
    "PGPU": ("uuid", "dom0_access", "enabled_VGPU_types", "GPU_group", "is_system_display_device", "PCI",
             "supported_VGPU_types", "host", "resident_VGPUs"),
    "GPU_group": ("uuid",),
    "VGPU_type": ("uuid",),
}


def pci(record, ctx, ref=None):
    """The XO object of a host's PCI device."""
    return compact({
        "type": "PCI",
        "class_name": record.get("class_name", ABSENT),
        "device_name": record.get("device_name", ABSENT),
        "pci_id": record.get("pci_id", ABSENT),
        "$host": ctx.link(record.get("host")),
    })


def pgpu(record, ctx, ref=None):
    """The XO object of a physical GPU.  Xen Orchestra's ``supportedVgpuMaxCapcities``
    links a map, which gives nothing: it is never present."""
    host = ctx.link(record.get("host"))
    vgpus = ctx.links(record.get("resident_VGPUs"))
    return compact({
        "type": "PGPU",
        "dom0Access": record.get("dom0_access", ABSENT),
        "enabledVgpuTypes": ctx.links(record.get("enabled_VGPU_types")),
        "gpuGroup": ctx.link(record.get("GPU_group")),
        "isSystemDisplayDevice": bool(record.get("is_system_display_device")),
        "pci": ctx.link(record.get("PCI")),
        "supportedVgpuTypes": ctx.links(record.get("supported_VGPU_types")),
        "host": host,
        "$host": host,
        "vgpus": vgpus,
        "$vgpus": list(vgpus) if isinstance(vgpus, list) else vgpus,
    })
