"""The simulated pool database: records, two-way references, generations and generic calls.

Records are copy-on-write: a stored record (and any list or dict inside it) is never
mutated, it is replaced.  A reader may therefore take a record under the lock and
encode it afterwards without copying.
"""
import bisect
import threading
import time
import uuid as uuidlib

from .rpc import EPOCH, DateTime, Int32, XapiFailure

NULL_REF = "OpaqueRef:NULL"

# (class, field) pairs that mirror each other: setting one side updates the other.
RELATIONS = [
    (("VBD", "VM"), ("VM", "VBDs")),
    (("VBD", "VDI"), ("VDI", "VBDs")),
    (("VDI", "SR"), ("SR", "VDIs")),
    (("PBD", "SR"), ("SR", "PBDs")),
    (("PBD", "host"), ("host", "PBDs")),
    (("VIF", "VM"), ("VM", "VIFs")),
    (("VIF", "network"), ("network", "VIFs")),
    (("PIF", "host"), ("host", "PIFs")),
    (("PIF", "network"), ("network", "PIFs")),
    (("VM", "resident_on"), ("host", "resident_VMs")),
    (("VM", "snapshot_of"), ("VM", "snapshots")),
    (("VDI", "snapshot_of"), ("VDI", "snapshots")),
    (("host_cpu", "host"), ("host", "host_CPUs")),
    (("console", "VM"), ("VM", "consoles")),
    (("task", "subtask_of"), ("task", "subtasks")),
    (("PIF", "bond_slave_of"), ("Bond", "slaves")),
    (("Bond", "master"), ("PIF", "bond_master_of")),
    (("VLAN", "tagged_PIF"), ("PIF", "VLAN_slave_of")),
]
_FORWARD = {single: many for single, many in RELATIONS}
_BACKWARD = {many: single for single, many in RELATIONS}


def now():
    """The current time as a XAPI datetime."""
    return DateTime(time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime()))


def _default_for(field, model):
    """A type-correct default value for a datamodel field."""
    ftype, default = field.type, field.default
    if ftype.endswith(" set"):
        return []
    if ftype.endswith(" map"):
        return {}
    if ftype == "int":
        return int(default) if default not in (None, "") else 0
    if ftype == "float":
        return float(default) if default not in (None, "") else 0.0
    if ftype == "bool":
        return default == "true"
    if ftype == "datetime":
        return DateTime(default.strip('"') if default else EPOCH)
    if ftype.endswith(" ref"):
        # The datamodel writes some null defaults as "Null"; on the wire every null
        # reference is OpaqueRef:NULL (clients test for exactly that string).
        return default if default and default.startswith("OpaqueRef:") else NULL_REF
    values = model.enum_values(ftype)
    if values is not None:
        return default if default in values else values[0]
    if ftype.endswith(" option"):
        return NULL_REF if "ref" in ftype else ""
    if default is not None and default.startswith('"'):
        return default[1:-1]
    return default or ""


class Database:
    """All records of one simulated pool, with XAPI's event generations."""

    def __init__(self, model, served_classes, rng):
        self.model = model
        self.rng = rng
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.tables = {cls: {} for cls in served_classes}
        self.class_of = {}  # ref -> class
        self.uuid_index = {cls: {} for cls in served_classes}
        self.created_gen = {}  # ref -> generation of creation
        self.tombstones = {}  # ref -> (class, created generation)
        self.generation = 0
        self.log_gens = []  # generation of each change, ascending
        self.log_refs = []  # ref changed at that generation
        self._lower = {cls.lower(): cls for cls in served_classes}
        self._templates, self._mutable = {}, {}
        for cls in served_classes:
            fields = model.classes[cls].fields.values()
            self._templates[cls] = {f.name: _default_for(f, model) for f in fields}
            self._mutable[cls] = [k for k, v in self._templates[cls].items() if isinstance(v, (list, dict))]

    # identifiers -------------------------------------------------------

    def new_uuid(self):
        return str(uuidlib.UUID(int=self.rng.getrandbits(128), version=4))

    def new_ref(self):
        return "OpaqueRef:" + self.new_uuid()

    def real_class(self, name):
        """XAPI's spelling of a class name given in any case, or ``None``."""
        return self._lower.get(name.lower())

    # change tracking ---------------------------------------------------

    def _touch(self, ref):
        self.generation += 1
        self.log_gens.append(self.generation)
        self.log_refs.append(ref)

    def changes_since(self, generation):
        """``(ref, generation)`` of refs changed after ``generation``, each once, by last change."""
        start = bisect.bisect_right(self.log_gens, generation)
        seen = {}
        for gen, ref in zip(self.log_gens[start:], self.log_refs[start:]):
            seen.pop(ref, None)
            seen[ref] = gen
        return list(seen.items())

    def commit(self):
        """Wake event.from waiters; call after a group of changes."""
        self.changed.notify_all()

    # records -----------------------------------------------------------

    def record(self, cls, ref):
        """The stored record, or ``HANDLE_INVALID``."""
        try:
            return self.tables[cls][ref]
        except KeyError:
            raise XapiFailure("HANDLE_INVALID", cls, ref) from None

    def create(self, cls, fields, *, ref=None, track=True):
        """Create a record with every datamodel field, linking both sides of relations."""
        ref = ref or self.new_ref()
        template = self._templates[cls]
        record = dict(template)
        for key in self._mutable[cls]:
            record[key] = type(template[key])()
        record["uuid"] = self.new_uuid()
        if not fields.keys() <= template.keys():
            raise KeyError(f"{cls} has no field {sorted(fields.keys() - template.keys())}")
        record.update(fields)
        self.tables[cls][ref] = record
        self.class_of[ref] = cls
        self.uuid_index[cls][record["uuid"]] = ref
        self.created_gen[ref] = self.generation + 1 if track else 0
        if track:
            self._touch(ref)
        for name, value in fields.items():
            if (cls, name) in _FORWARD:
                self._link(cls, ref, name, NULL_REF, value, track)
        return ref

    def update(self, cls, ref, track=True, **changes):
        """Replace fields of a record (copy-on-write) and keep relations in step."""
        old = self.record(cls, ref)
        new = dict(old)
        new.update(changes)
        self.tables[cls][ref] = new
        if track:
            self._touch(ref)
        for name, value in changes.items():
            if (cls, name) in _FORWARD:
                self._link(cls, ref, name, old.get(name), value, track)
        return new

    def destroy(self, cls, ref):
        """Delete a record and remove it from the other side of every relation."""
        record = self.record(cls, ref)
        for name, value in record.items():
            if (cls, name) in _FORWARD:
                self._link(cls, ref, name, value, NULL_REF, True)
        del self.tables[cls][ref]
        del self.class_of[ref]
        self.uuid_index[cls].pop(record["uuid"], None)
        self.tombstones[ref] = (cls, self.created_gen.pop(ref, 0))
        self._touch(ref)

    def _link(self, cls, ref, name, old, new, track):
        many = _FORWARD.get((cls, name))
        if many is not None and old != new:
            other_cls, other_field = many
            if old and old != NULL_REF and old in self.tables[other_cls]:
                kept = [r for r in self.tables[other_cls][old][other_field] if r != ref]
                self.update(other_cls, old, track, **{other_field: kept})
            if new and new != NULL_REF and new in self.tables[other_cls]:
                current = self.tables[other_cls][new][other_field]
                if not track:  # building the pool: nobody reads yet, append in place
                    current.append(ref)
                elif ref not in current:
                    self.update(other_cls, new, track, **{other_field: current + [ref]})

    # queries -----------------------------------------------------------

    def by_uuid(self, cls, value):
        ref = self.uuid_index[cls].get(value)
        if ref is None:
            raise XapiFailure("UUID_INVALID", cls, value)
        return ref

    def resolve(self, cls, ref_or_uuid):
        """Accept a ref or a uuid, as the HTTP handlers do."""
        if ref_or_uuid in self.tables[cls]:
            return ref_or_uuid
        ref = self.uuid_index[cls].get(ref_or_uuid)
        if ref is None:
            raise XapiFailure("HANDLE_INVALID", cls, ref_or_uuid)
        return ref

    def ref_counts(self):
        """``valid_ref_counts`` of event.from: every table, lower-case, int32."""
        return {cls.lower(): Int32(len(table)) for cls, table in self.tables.items()}
