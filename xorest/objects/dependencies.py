"""Which objects must be mapped again when a record changes, beyond the record's own.

Most objects read only their own record and the ids of the records it names.  Some read
other records' contents (a VM its metrics, a halted VM its disks' storage, a network its
PIFs, a VDI its VHD chain, an alarm the object it is about), and a link to a record not
loaded yet reads as absent until that record arrives, possibly in a later batch.
:class:`Dependents` keeps, for one pool, who read what, so that an incremental update
gives the same objects as mapping the whole pool again.

A key read by uuid (``sm_config:vhd-parent``, ``obj_uuid``, ``applies_to``) is
``("uuid", value)``.  Fields ``None`` means any change of the target matters, a tuple
names the fields that do (``()``: only its appearing or disappearing).
"""
from .context import NULL_REF

#: Record fields kept only so that dependencies can be followed.
FIELDS = {"VTPM": ("VM",), "VGPU": ("VM",), "Certificate": ("host",), "host_patch": ("host",)}

_RUNNING = ("Running", "Paused")
_SR_FIELDS = ("shared", "PBDs")


def _refs(value):
    if isinstance(value, str):
        return (value,) if value.startswith("OpaqueRef:") and value != NULL_REF else ()
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str) and v.startswith("OpaqueRef:") and v != NULL_REF)
    if isinstance(value, dict):
        return tuple(k for k in value if k.startswith("OpaqueRef:"))  # current_operations: task -> op
    return ()


def _missing_links(record, records):
    """The refs ``record`` names that are not in ``records`` (what :func:`_refs` finds in
    each field, written out: it runs for every field of every record of a pool's load)."""
    missing = []
    for value in record.values():
        kind = value.__class__
        if kind is str:
            if value.startswith("OpaqueRef:") and value != NULL_REF and value not in records:
                missing.append(value)
        elif kind is list:
            for item in value:
                if item.__class__ is str and item.startswith("OpaqueRef:") and item != NULL_REF \
                        and item not in records:
                    missing.append(item)
        elif kind is dict:
            for key in value:
                if key.startswith("OpaqueRef:") and key not in records:
                    missing.append(key)
    return missing


def _vm_reads(record, ctx):
    reads = [(record.get("metrics"), None), (record.get("guest_metrics"), None),
             (record.get("snapshot_of"), ())]
    reads += [(task, ()) for task in _refs(record.get("current_operations"))]
    if record.get("power_state") not in _RUNNING:  # its container comes from its disks' storage
        for vbd_ref in record.get("VBDs") or ():
            reads.append((vbd_ref, ("VDI",)))
            vbd = ctx.record(vbd_ref)
            vdi_ref = vbd.get("VDI") if vbd else None
            reads.append((vdi_ref, ("SR",)))
            vdi = ctx.record(vdi_ref)
            sr_ref = vdi.get("SR") if vdi else None
            reads.append((sr_ref, _SR_FIELDS))
            sr = ctx.record(sr_ref)
            pbds = (sr or {}).get("PBDs") or ()
            if pbds:
                reads.append((pbds[0], ("host",)))
    return reads


def _vdi_reads(record, ctx):
    reads = [(record.get("snapshot_of"), ())]
    parent, seen = (record.get("sm_config") or {}).get("vhd-parent"), {record.get("uuid")}
    while parent is not None and parent not in seen:  # the chain, to its first missing link
        seen.add(parent)
        reads.append((("uuid", parent), ("physical_utilisation", "sm_config")))
        found = ctx.find(parent)
        parent = (found[2].get("sm_config") or {}).get("vhd-parent") if found else None
    return reads


def _pool_reads(record, ctx):
    return [(record.get("master"), None), *((vdi, ("SR",)) for vdi in record.get("ha_statefiles") or ())]


def _host_reads(record, ctx):
    return [(record.get("metrics"), None), *((ref, None) for ref in record.get("certificates") or ()),
            *((ref, None) for ref in record.get("updates") or ())]


def _pif_reads(record, ctx):
    reads = [(record.get("metrics"), None)]
    for bond_ref in (record.get("bond_slave_of"), *(record.get("bond_master_of") or ())):
        reads.append((bond_ref, None))
        bond = ctx.record(bond_ref) or {}
        reads += [(pif, ()) for pif in (bond.get("master"), *(bond.get("slaves") or ()))]  # its links
    return reads


def _by_key_read(field_of):
    """A read of the record named by a field holding a uuid or a ref (``ctx.find``)."""
    def reads(record, ctx):
        value = field_of(record)
        return [(value, None), (("uuid", value), None)] if isinstance(value, str) and value else []
    return reads


#: XAPI class -> the records (other than its own) whose contents its object reads.
_READS = {
    "VM": _vm_reads, "VDI": _vdi_reads, "pool": _pool_reads, "host": _host_reads, "PIF": _pif_reads,
    "network": lambda record, ctx: [(pif, ("bond_master_of", "bond_slave_of")) for pif in record.get("PIFs") or ()],
    "SR": lambda record, ctx: [(pbd, ("host", "device_config")) for pbd in (record.get("PBDs") or ())[:1]],
    "message": _by_key_read(lambda record: record.get("obj_uuid")),
    "task": _by_key_read(lambda record: (record.get("other_config") or {}).get("applies_to")),
}


def _related(old, new):
    """Refs named by ``old`` or ``new`` but not by both, field by field."""
    for field in {*(old or {}), *(new or {})}:
        before, after = (old or {}).get(field), (new or {}).get(field)
        if before != after:
            yield from set(_refs(before)) ^ set(_refs(after))


def _changed(old, new, fields):
    if old is None or new is None:
        return True
    if fields is None:
        return old != new
    return any(old.get(field) != new.get(field) for field in fields)


class Dependents:
    """Who read what, for one pool (not thread-safe: the pool's watcher thread owns it).

    Also keeps ``by_uuid`` (uuid -> ref) of the pool's records, for :class:`~.Context`.
    """

    def __init__(self):
        self.by_uuid = {}
        self._readers = {}  # key -> {reader ref: fields}
        self._reads = {}  # reader ref -> keys it registered
        self._master_software = None

    def affected(self, ref, cls, old, new, records):
        """The refs to map again because record ``ref`` (of ``cls``) went from ``old`` to
        ``new`` (either ``None``: added or deleted); call before the change is applied to
        ``by_uuid``.

        Besides the objects that read it, the records it starts or stops naming: XAPI's
        relations go both ways (a VTPM names its VM, the VM lists its VTPMs), and the other
        side's change may come in a later batch.  Every VM when the pool master's software
        version changes."""
        affected = set(_related(old, new))
        for key in (ref, ("uuid", (old or new or {}).get("uuid"))):
            for reader, fields in self._readers.get(key, {}).items():
                if _changed(old, new, fields):
                    affected.add(reader)
        if cls == "host" and _changed(old, new, ("software_version",)):
            affected |= self._vms_if_master(ref, records)
        elif cls == "pool" and _changed(old, new, ("master",)):
            affected |= {r for r, (c, _) in records.items() if c == "VM"}
        return affected

    @staticmethod
    def _vms_if_master(ref, records):
        pool = next((record for c, record in records.values() if c == "pool"), None)
        if pool is None or pool.get("master") != ref:
            return set()
        return {r for r, (c, _) in records.items() if c == "VM"}  # isNestedVirtEnabled reads it

    def applied(self, ref, old, new):
        """Keep ``by_uuid`` in step with a record that changed."""
        if old is not None and self.by_uuid.get(old.get("uuid")) == ref:
            del self.by_uuid[old.get("uuid")]
        if new is not None and new.get("uuid"):
            self.by_uuid[new["uuid"]] = ref

    def mapped(self, ref, cls, record, ctx):
        """Record what the object of ``ref`` read, once mapped (``record`` ``None``: gone)."""
        for key in self._reads.pop(ref, ()):
            readers = self._readers.get(key)
            if readers is not None:
                readers.pop(ref, None)
                if not readers:
                    del self._readers[key]
        if record is None:
            return
        reads = list(_READS[cls](record, ctx)) if cls in _READS else []
        # links to records not loaded yet: the object must be mapped again when they arrive
        reads += [(target, ()) for target in _missing_links(record, ctx.records)]
        keys = []
        for key, fields in reads:
            if key is None or key == NULL_REF or key == ref:
                continue
            readers = self._readers.setdefault(key, {})
            previous = readers.get(ref, ())
            readers[ref] = None if fields is None or previous is None else tuple({*previous, *fields})
            keys.append(key)
        if keys:
            self._reads[ref] = keys

    def reset(self):
        self.by_uuid, self._readers, self._reads = {}, {}, {}

    def state(self):
        """What this index holds, to hand over to another process (picklable)."""
        return self.by_uuid, self._readers, self._reads, self._master_software

    @classmethod
    def from_state(cls, state):
        dependents = cls()
        dependents.by_uuid, dependents._readers, dependents._reads, dependents._master_software = state
        return dependents
