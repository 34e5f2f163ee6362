"""What the HTTP handlers stream: ova.xml and the disks of a VM, VDI contents and deltas."""
import uuid as uuidlib

from .formats.vhd import BLOCK_SIZE, vhd_stream
from .formats.xva import xva_stream
from .rpc import EPOCH, DateTime, xml_value
from .state import NULL_REF



def _exported_refs(db, vm):
    record = db.record("VM", vm)
    refs = [("VM", vm)]
    for vbd in record["VBDs"]:
        vbd_rec = db.record("VBD", vbd)
        refs.append(("VBD", vbd))
        if vbd_rec["type"] == "Disk" and vbd_rec["VDI"] in db.tables["VDI"]:
            vdi_rec = db.record("VDI", vbd_rec["VDI"])
            refs.append(("VDI", vbd_rec["VDI"]))
            refs.append(("SR", vdi_rec["SR"]))
    for vif in record["VIFs"]:
        refs.append(("VIF", vif))
        refs.append(("network", db.record("VIF", vif)["network"]))
    for cls, field in (("VM_metrics", "metrics"), ("VM_guest_metrics", "guest_metrics")):
        if record[field] in db.tables[cls]:
            refs.append((cls, record[field]))
    unique = []
    for item in refs:
        if item not in unique:
            unique.append(item)
    return unique


def _remap(value, ids):
    if isinstance(value, str) and value.startswith("OpaqueRef:"):
        return ids.get(value, NULL_REF)
    if isinstance(value, list):
        return [_remap(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _remap(v, ids) for k, v in value.items()}
    return value


def build_ova(db, vm, host_record):
    """``(ova.xml text, [(xva id, vdi ref)])`` for an export of ``vm``."""
    refs = _exported_refs(db, vm)
    ids = {ref: f"Ref:{n}" for n, (_, ref) in enumerate(refs)}
    objects, disks = [], []
    for cls, ref in refs:
        snapshot = _remap(db.record(cls, ref), ids)
        if cls == "VM":
            snapshot.update(is_a_snapshot=False, snapshot_of=NULL_REF, snapshots=[],
                            snapshot_time=DateTime(EPOCH), parent=NULL_REF, power_state="Halted",
                            current_operations={}, allowed_operations=[], consoles=[],
                            crash_dumps=[], blobs={}, resident_on=NULL_REF)
        if cls == "VDI":
            disks.append((ids[ref], ref))
        objects.append({"class": cls, "id": ids[ref], "snapshot": snapshot})
    version = {
        "hostname": host_record["hostname"], "date": "2026-01-01",
        "product_version": "8.3.0", "product_brand": "XCP-ng", "build_number": "release/8.3",
        "xapi_major": 1, "xapi_minor": 20, "export_vsn": 2,
    }
    return xml_value({"version": version, "objects": objects}), disks


def vm_export(db, disks, vm, host_record):
    """Generator of the XVA bytes of a halted or suspended VM."""
    ova, vdis = build_ova(db, vm, host_record)
    contents = [(xva_id, disks.get(vdi)) for xva_id, vdi in vdis]
    return xva_stream(ova, contents)


def vdi_uid(record):
    """The VHD unique id of a VDI: its uuid's bytes, so deltas can name their parent."""
    return uuidlib.UUID(record["uuid"]).bytes


def changed_blocks(disk, base):
    """2 MiB blocks whose contents differ between ``disk`` and ``base``."""
    candidates = set(disk.allocated_units(BLOCK_SIZE)) | set(base.allocated_units(BLOCK_SIZE))
    return sorted(b for b in candidates
                  if disk.read(b * BLOCK_SIZE, BLOCK_SIZE) != base.read(b * BLOCK_SIZE, BLOCK_SIZE))


def vdi_export(db, disks, vdi, fmt, base=None):
    """Generator of a VDI as ``raw`` bytes or a (differencing, with ``base``) VHD."""
    disk = disks.get(vdi)
    record = db.record("VDI", vdi)
    if fmt == "raw":
        return disk.iter_raw()
    if base is None:
        return vhd_stream(disk, vdi_uid(record))
    base_record = db.record("VDI", base)
    parent = (vdi_uid(base_record), base_record["name_label"], 0)
    return vhd_stream(disk, vdi_uid(record), changed_blocks(disk, disks.get(base)), parent)


__all__ = ["build_ova", "vm_export", "vdi_export", "changed_blocks"]
