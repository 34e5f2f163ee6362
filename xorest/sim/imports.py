"""``/import``: an XVA becomes a new halted VM with its disks, as XAPI's import does."""
import xmlrpc.client
from xml.parsers.expat import ExpatError

from .disks import MiB
from .rpc import XapiFailure, parse_xml_value
from .state import NULL_REF, now

#: VM fields an import carries over; the rest is the new VM's own (uuid, metrics, state...).
VM_FIELDS = ("name_label", "name_description", "user_version", "is_a_template", "memory_static_max",
             "memory_dynamic_max", "memory_dynamic_min", "memory_static_min", "VCPUs_params", "VCPUs_max",
             "VCPUs_at_startup", "actions_after_shutdown", "actions_after_reboot", "actions_after_crash",
             "PV_bootloader", "PV_kernel", "PV_ramdisk", "PV_args", "PV_bootloader_args", "HVM_boot_policy",
             "HVM_boot_params", "platform", "other_config", "tags", "domain_type", "bios_strings",
             "has_vendor_device", "xenstore_data", "ha_restart_priority", "start_delay", "blocked_operations")
VDI_FIELDS = ("name_label", "name_description", "virtual_size", "type", "sharable", "read_only",
              "other_config", "sm_config", "tags")
VBD_FIELDS = ("device", "userdevice", "bootable", "mode", "type", "unpluggable", "empty", "other_config")


def import_vm(db, disks, ova_xml, chunks, sr, typed):
    """Create the VM described by ``ova_xml`` with its disks on ``sr``; returns its ref.

    ``chunks`` maps an exported VDI id (``Ref:N``) to ``{chunk number: 1 MiB of bytes}``;
    ``typed(cls, fields)`` gives wire values their datamodel types.  Nothing is created
    unless the whole description is usable.
    """
    try:
        objects = parse_xml_value(ova_xml)["objects"]
        by_class = {}
        for item in objects:
            by_class.setdefault(item["class"], []).append(item)
        (vm_item,) = by_class["VM"]
        vm_fields = typed("VM", {k: vm_item["snapshot"][k] for k in VM_FIELDS if k in vm_item["snapshot"]})
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, xmlrpc.client.Error, ExpatError) as exc:
        raise XapiFailure("IMPORT_ERROR", f"unusable ova.xml: {exc}") from None
    vm_fields.update(power_state="Halted", metrics=db.create("VM_metrics", {"install_time": now()}))
    vm = db.create("VM", vm_fields)
    new_vdis = {}
    for item in by_class.get("VDI", ()):
        fields = typed("VDI", {k: item["snapshot"][k] for k in VDI_FIELDS if k in item["snapshot"]})
        fields.update(SR=sr, physical_utilisation=0, managed=True)
        vdi = db.create("VDI", fields)
        disks.create_empty(vdi, int(fields.get("virtual_size", 0)))
        content = disks.get(vdi)
        for number, data in sorted(chunks.get(item["id"], {}).items()):
            content.with_write(number * MiB, data)
        new_vdis[item["id"]] = vdi
    for item in by_class.get("VBD", ()):
        fields = typed("VBD", {k: item["snapshot"][k] for k in VBD_FIELDS if k in item["snapshot"]})
        fields.update(VM=vm, VDI=new_vdis.get(item["snapshot"].get("VDI"), NULL_REF), currently_attached=False)
        if fields["VDI"] == NULL_REF:
            fields["empty"] = True
        db.create("VBD", fields)
    networks = {r["name_label"]: ref for ref, r in db.tables["network"].items()}
    exported_networks = {item["id"]: item["snapshot"].get("name_label") for item in by_class.get("network", ())}
    for item in by_class.get("VIF", ()):
        network = networks.get(exported_networks.get(item["snapshot"].get("network")))
        if network is not None:  # XAPI maps networks by name; unknown ones are left out
            db.create("VIF", {"VM": vm, "network": network, "device": item["snapshot"].get("device", "0"),
                              "MAC": item["snapshot"].get("MAC", ""), "MTU": int(item["snapshot"].get("MTU", 1500)),
                              "currently_attached": False})
    return vm
