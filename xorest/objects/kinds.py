"""Which XO type a record becomes, without mapping it: Xen Orchestra's alarms name the
type of the object they are about."""
from .context import is_default_template
from .storage import vdi_type
from .vm import vm_type

#: XAPI class -> XO type, for the classes whose type does not depend on the record
#: (Xen Orchestra's object store has them all, xorest serves some).
STATIC_TYPES = {
    "pool": "pool", "host": "host", "SR": "SR", "SM": "SM", "PBD": "PBD", "PIF": "PIF", "VBD": "VBD",
    "VIF": "VIF", "network": "network", "message": "message", "task": "task", "PCI": "PCI", "PGPU": "PGPU",
    "VGPU": "vgpu", "GPU_group": "gpuGroup", "VGPU_type": "vgpuType", "VTPM": "VTPM", "Bond": "bond",
    "PUSB": "PUSB", "VUSB": "VUSB", "USB_group": "USB_group", "host_patch": "patch",
}


def xo_type(xapi_class, record, ctx):
    """The XO type of a record, or ``None`` when it makes no XO object."""
    if xapi_class == "VM":
        return vm_type(record, ctx)
    if xapi_class == "VDI":
        return vdi_type(record, ctx)
    return STATIC_TYPES.get(xapi_class)


def xo_id(xapi_class, record, ctx):
    """The id of a record's XO object: its uuid, prefixed by the pool's for default templates."""
    if xapi_class == "VM" and vm_type(record, ctx) == "VM-template" and is_default_template(record):
        return f"{ctx.pool_uuid}-{record.get('uuid')}"
    return record.get("uuid")
