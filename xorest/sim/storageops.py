"""XAPI's storage calls: SRs (create, scan, destroy, forget), PBDs (plug, unplug), VDIs
(migrate, copy, resize, destroy) and VBDs (create, plug, unplug, destroy)."""
from . import lifecycle, operations
from .rpc import XapiFailure
from .state import NULL_REF

GiB = 1 << 30


def _attached_pbds(db, sr):
    return [p for p in db.record("SR", sr)["PBDs"] if db.tables["PBD"][p]["currently_attached"]]


def sr_scan(op, sr):
    """``SR.scan``: the SR's usage is measured again (no disk appears from nowhere here)."""
    with op.locked() as db:
        lifecycle.assert_valid(db, "SR", sr, "scan")
        if not _attached_pbds(db, sr):
            raise XapiFailure("SR_NOT_ATTACHED", sr)
        op.claim("SR", sr, "scan")
    op.work()
    with op.locked() as db:
        vdis = [db.tables["VDI"][v] for v in db.record("SR", sr)["VDIs"]]
        db.update("SR", sr, physical_utilisation=sum(v["physical_utilisation"] for v in vdis),
                  virtual_allocation=sum(v["virtual_size"] for v in vdis))
    return ""


def sr_create(op, host, device_config, physical_size, name_label, name_description, sr_type, content_type,
              shared, sm_config):
    """``SR.create``: a new SR with a plugged PBD on ``host`` (on every host when shared)."""
    with op.locked() as db:
        db.record("host", host)
        if not lifecycle.host_live(db, host):
            raise XapiFailure("HOST_OFFLINE", host)
        if sr_type not in {sm["type"] for sm in db.tables["SM"].values()}:
            raise XapiFailure("SR_UNKNOWN_DRIVER", sr_type)
        if not isinstance(device_config, dict) or not isinstance(sm_config, dict):
            raise XapiFailure("FIELD_TYPE_ERROR", "device_config" if not isinstance(device_config, dict)
                              else "sm_config")
    op.work()
    with op.locked() as db:
        size = int(physical_size) or 100 * GiB
        sr = db.create("SR", {"name_label": name_label, "name_description": name_description, "type": sr_type,
                              "content_type": content_type, "shared": bool(shared), "physical_size": size,
                              "physical_utilisation": 0, "virtual_allocation": 0, "sm_config": dict(sm_config),
                              "other_config": {}})
        for member in (list(db.tables["host"]) if shared else [host]):
            db.create("PBD", {"SR": sr, "host": member, "device_config": dict(device_config),
                              "currently_attached": True})
        lifecycle.refresh(db, "SR", sr)
    return sr


def _sr_removal(operation):
    """``SR.destroy`` (the SR's content with it) and ``SR.forget`` (records only)."""
    def call(op, sr):
        with op.locked() as db:
            lifecycle.assert_valid(db, "SR", sr, operation)
            op.claim("SR", sr, operation)
        op.work()
        with op.locked() as db:
            record = db.record("SR", sr)
            for vdi in list(record["VDIs"]):
                operations.destroy_vdi(db, op.api.disks, vdi)
            for pbd in list(record["PBDs"]):
                db.destroy("PBD", pbd)
            db.destroy("SR", sr)
        return ""
    call.__name__ = operation
    return call


def pbd_plug(op, pbd):
    with op.locked() as db:
        record = db.record("PBD", pbd)
        if record["currently_attached"]:
            return ""
        if not lifecycle.host_live(db, record["host"]):
            raise XapiFailure("HOST_OFFLINE", record["host"])
        lifecycle.assert_valid(db, "SR", record["SR"], "plug")
        op.claim("SR", record["SR"], "plug")
    op.work()
    with op.locked() as db:
        db.update("PBD", pbd, currently_attached=True)
    return ""


def pbd_unplug(op, pbd):
    """``PBD.unplug``: refused while disks of the SR are attached on that host."""
    with op.locked() as db:
        record = db.record("PBD", pbd)
        if not record["currently_attached"]:
            return ""
        in_use = [vdi for vdi in db.record("SR", record["SR"])["VDIs"] if any(
            db.tables["VBD"][v]["currently_attached"]
            and db.tables["VM"][db.tables["VBD"][v]["VM"]]["resident_on"] == record["host"]
            for v in db.tables["VDI"][vdi]["VBDs"])]
        if in_use:
            raise XapiFailure("VDI_IN_USE", *in_use)
        lifecycle.assert_valid(db, "SR", record["SR"], "unplug")
        op.claim("SR", record["SR"], "unplug")
    op.work()
    with op.locked() as db:
        db.update("PBD", pbd, currently_attached=False)
    return ""


def _running_user(db, vdi):
    """The running VM a disk is attached to, if any."""
    for vbd in db.record("VDI", vdi)["VBDs"]:
        record = db.tables["VBD"][vbd]
        if record["currently_attached"] and db.tables["VM"][record["VM"]]["power_state"] == "Running":
            return record["VM"]
    return None


def vdi_pool_migrate(op, vdi, sr, _options):
    """``VDI.pool_migrate``: live storage migration of a disk of a running VM."""
    with op.locked() as db:
        lifecycle.assert_valid(db, "VDI", vdi, "mirror")
        db.record("SR", sr)
        vm = _running_user(db, vdi)
        if vm is None:
            raise XapiFailure("VDI_NEEDS_VM_FOR_MIGRATE", vdi)
        host = db.tables["VM"][vm]["resident_on"]
        if not operations.host_sees(db, host, sr):
            raise XapiFailure("VM_REQUIRES_SR", vm, sr)
        op.claim("VDI", vdi, "mirror")
    op.work()
    with op.locked() as db:
        new = operations.copy_vdi(db, op.api.disks, vdi, sr)
        for vbd in list(db.record("VDI", vdi)["VBDs"]):
            db.update("VBD", vbd, VDI=new)
        operations.destroy_vdi(db, op.api.disks, vdi)
        lifecycle.refresh(db, "VDI", new)
        return new


def vdi_copy(op, vdi, sr, _base, _into):
    with op.locked() as db:
        lifecycle.assert_valid(db, "VDI", vdi, "copy")
        if sr not in ("", NULL_REF):
            db.record("SR", sr)
        op.claim("VDI", vdi, "copy")
    op.work()
    with op.locked() as db:
        return operations.copy_vdi(db, op.api.disks, vdi, sr)


def vdi_resize(op, vdi, size):
    """``VDI.resize``: disks only grow."""
    size = int(size)
    with op.locked() as db:
        record = lifecycle.assert_valid(db, "VDI", vdi, "resize")
        if size < record["virtual_size"]:
            raise XapiFailure("VDI_TOO_SMALL", vdi, str(size))
        op.claim("VDI", vdi, "resize")
    op.work()
    with op.locked() as db:
        op.api.disks.resize(vdi, size)
        db.update("VDI", vdi, virtual_size=size)
    return ""


def vdi_destroy(op, vdi):
    with op.locked() as db:
        lifecycle.assert_valid(db, "VDI", vdi, "destroy")
        op.claim("VDI", vdi, "destroy")
    op.work()
    with op.locked() as db:
        vbds = db.record("VDI", vdi)["VBDs"]
        operations.destroy_vdi(db, op.api.disks, vdi)
        for vbd in vbds:
            lifecycle.refresh(db, "VBD", vbd)
    return ""


_VBD_FIELDS = ("VM", "VDI", "userdevice", "bootable", "mode", "type", "unpluggable", "empty", "other_config",
               "qos_algorithm_type", "qos_algorithm_params")


def vbd_create(op, record):
    """``VBD.create``: a new, unplugged device of a VM."""
    if not isinstance(record, dict):
        raise XapiFailure("FIELD_TYPE_ERROR", "record")
    with op.locked() as db:
        vm = db.record("VM", record.get("VM", NULL_REF))
        vdi = record.get("VDI", NULL_REF)
        if vdi != NULL_REF:
            db.record("VDI", vdi)
        device = str(record.get("userdevice", ""))
        if device in {db.tables["VBD"][v]["userdevice"] for v in vm["VBDs"]}:
            raise XapiFailure("DEVICE_ALREADY_EXISTS", device)
        fields = {k: record[k] for k in _VBD_FIELDS if k in record}
        fields.update(userdevice=device, empty=vdi == NULL_REF, currently_attached=False)
        vbd = db.create("VBD", fields)
        lifecycle.refresh_vm(db, record["VM"])
        return vbd


def _device_call(cls, operation, attached):
    """``VBD``/``VIF`` ``plug``, ``unplug``, ``unplug_force``."""
    def call(op, device):
        with op.locked() as db:
            lifecycle.assert_valid(db, cls, device, operation)
            op.claim(cls, device, operation)
        op.work()
        with op.locked() as db:
            db.update(cls, device, currently_attached=attached)
            lifecycle.refresh_vm(db, db.tables[cls][device]["VM"])
        return ""
    call.__name__ = f"{cls}_{operation}"
    return call


def device_destroy(cls):
    """``VBD.destroy``/``VIF.destroy``: only a device that is not attached."""
    def call(op, device):
        with op.locked() as db:
            record = db.record(cls, device)
            if record["currently_attached"]:
                vm = db.tables["VM"].get(record["VM"], {}).get("uuid", record["VM"])
                raise XapiFailure("OPERATION_NOT_ALLOWED", f"{cls} '{record['uuid']}' still attached to '{vm}'")
        op.work(f"{cls}.destroy")
        with op.locked() as db:
            vm, vdi = record["VM"], record.get("VDI")
            db.destroy(cls, device)
            lifecycle.refresh_vm(db, vm)
            if vdi in db.tables["VDI"]:
                lifecycle.refresh(db, "VDI", vdi)
        return ""
    return call


def vbd_insert(op, vbd, vdi):
    """``VBD.insert``: a disk (an ISO) into an empty CD drive."""
    with op.locked() as db:
        record = lifecycle.assert_valid(db, "VBD", vbd, "insert")
        db.record("VDI", vdi)
        if not record["empty"]:
            raise XapiFailure("VBD_NOT_EMPTY", vbd)
        db.update("VBD", vbd, VDI=vdi, empty=False)
        lifecycle.refresh_vm(db, record["VM"])
    return ""


def vbd_eject(op, vbd):
    with op.locked() as db:
        record = lifecycle.assert_valid(db, "VBD", vbd, "eject")
        if record["empty"]:
            raise XapiFailure("VBD_IS_EMPTY", vbd)
        db.update("VBD", vbd, VDI=NULL_REF, empty=True)
        lifecycle.refresh_vm(db, record["VM"])
    return ""


def call_plugin(op, host, plugin, function, args):
    """``host.call_plugin``: runs one of the plugins the simulated hosts have
    (``op.api.plugins``: name -> ``handler(op, host, function, args)``)."""
    with op.locked() as db:
        db.record("host", host)
    handler = op.api.plugins.get(plugin)
    if handler is None:
        raise XapiFailure("XENAPI_MISSING_PLUGIN", plugin)
    return handler(op, host, function, args if isinstance(args, dict) else {})


def trim_plugin(op, host, function, args):
    """The ``trim`` plugin (reclaim space of an SR)."""
    if function != "do_trim":
        raise XapiFailure("UNKNOWN_XENAPI_PLUGIN_FUNCTION", function)
    with op.locked() as db:
        sr = next((r for r, s in db.tables["SR"].items() if s["uuid"] == args.get("sr_uuid")), None)
        if sr is None:
            raise XapiFailure("XENAPI_PLUGIN_FAILURE", "do_trim", "KeyError", "sr_uuid")
        thick = db.tables["SR"][sr]["type"] == "lvm"
    op.work()
    if not thick:  # what the plugin answers for storage it cannot trim
        return ('<?xml version="1.0" ?><trim_response><key_value_pair><key>errcode</key>'
                '<value>UnsupportedSRForTrim</value></key_value_pair><key_value_pair><key>errmsg</key>'
                '<value>Trim on this SR type is not supported</value></key_value_pair></trim_response>')
    return "True"


HANDLERS = {
    ("SR", "scan"): sr_scan, ("SR", "create"): sr_create, ("SR", "destroy"): _sr_removal("destroy"),
    ("SR", "forget"): _sr_removal("forget"), ("PBD", "plug"): pbd_plug, ("PBD", "unplug"): pbd_unplug,
    ("VDI", "pool_migrate"): vdi_pool_migrate, ("VDI", "copy"): vdi_copy, ("VDI", "resize"): vdi_resize,
    ("VDI", "destroy"): vdi_destroy, ("VBD", "create"): vbd_create, ("VBD", "destroy"): device_destroy("VBD"),
    ("VBD", "insert"): vbd_insert, ("VBD", "eject"): vbd_eject,
    ("host", "call_plugin"): call_plugin,
} | {(cls, name): _device_call(cls, name, name == "plug")
     for cls in ("VBD", "VIF") for name in ("plug", "unplug", "unplug_force")}
