"""XAPI records to the objects Xen Orchestra serves: registry, common envelope, dispatch.

IO-free.  A mapper gets the record and a :class:`Context` that resolves refs of the
same pool; it returns a plain JSON-ready dict, or ``None`` for records with no XO object
(metrics classes, which are read through their owners).  Objects are what Xen
Orchestra's ``xapi-object-to-xo`` makes of the same records, key for key and in its key
order; ``tests/test_golden.py`` holds the mapping to that.
"""
from . import dependencies, devices, host, network, storage, task, vm
from .context import NULL_REF, Context
from .dependencies import Dependents

#: REST collection -> XO ``type`` (``alarms`` are messages: see :func:`collection_of`).
#: XAPI's own tasks are ``xapi-tasks``: ``tasks`` is xorest's task log, as in Xen Orchestra.
COLLECTIONS = {
    "hosts": "host", "networks": "network", "pools": "pool", "srs": "SR", "vbds": "VBD",
    "vdis": "VDI", "vdi-snapshots": "VDI-snapshot", "vifs": "VIF", "vms": "VM",
    "vm-snapshots": "VM-snapshot", "vm-templates": "VM-template", "vm-controllers": "VM-controller",
    "pifs": "PIF", "pbds": "PBD", "messages": "message", "xapi-tasks": "task",
    "sms": "SM", "pcis": "PCI", "pgpus": "PGPU", "alarms": "alarm",
}
TYPE_TO_COLLECTION = {xo_type: name for name, xo_type in COLLECTIONS.items() if name != "alarms"}

_MAPPERS = {
    "pool": host.pool, "host": host.host, "VM": vm.vm, "SR": storage.sr, "SM": storage.sm,
    "VDI": storage.vdi, "VBD": storage.vbd, "PBD": storage.pbd, "VIF": network.vif, "PIF": network.pif,
    "network": network.network, "task": task.task, "message": task.message, "PCI": devices.pci,
    "PGPU": devices.pgpu,
}

def _record_fields():
    fields = {}
    for module in (host, vm, storage, network, task, devices, dependencies):
        for cls, names in module.FIELDS.items():
            fields.setdefault(cls, set()).update(names)
    return {cls: frozenset(names) for cls, names in fields.items()}


#: XAPI class -> the record fields mapping reads (the mappers' and :class:`Context`'s).
RECORD_FIELDS = _record_fields()
#: XAPI class -> {field: function giving a smaller value that maps the same}.
_REDUCED = vm.REDUCED


def trim(xapi_class, record, fields=None):
    """The part of a record that mapping reads, to keep in memory instead of all of it
    (a VM record has about 90 fields, its XO object is built from 44; a VM's
    ``recommendations`` XML is cut to its firmware restrictions).  Records of classes no
    mapper reads are kept whole.

    :param fields: the fields to keep, when more than :data:`RECORD_FIELDS` says.  A
        record that has no others (cut while decoded) is only copied."""
    fields = RECORD_FIELDS.get(xapi_class) if fields is None else fields
    if fields is None:
        return record
    if fields.issuperset(record):
        trimmed = dict(record)
    else:
        trimmed = {key: value for key, value in record.items() if key in fields}
    for key, reduce in _REDUCED.get(xapi_class, {}).items():
        if key in trimmed:
            trimmed[key] = reduce(trimmed[key])
    return trimmed


def to_xo(xapi_class, ref, record, context):
    """The XO object for one record, or ``None`` when the class has none.

    After the mapper's keys come ``id`` and ``type`` (unless set), ``uuid``, ``$pool``,
    ``$poolId`` and ``_xapiRef``, as Xen Orchestra adds them.  Alarm messages come out
    in the shape of Xen Orchestra's REST ``alarms``.
    """
    mapper = _MAPPERS.get(xapi_class)
    if mapper is None:
        return None
    obj = mapper(record, context, ref)
    if obj is None:
        return None
    obj.setdefault("id", record.get("uuid") or ref)
    obj.setdefault("type", xapi_class)
    if "uuid" in record:
        obj.setdefault("uuid", record["uuid"])
    obj["$pool"] = obj["$poolId"] = context.pool_uuid
    obj["_xapiRef"] = ref
    if xapi_class == "message" and task.is_alarm(obj):
        obj = task.alarm(obj, context)
    return obj


def collection_of(obj):
    """The REST collection serving ``obj`` (``None`` for types without one): alarm
    messages go to ``alarms``, not ``messages``, as in Xen Orchestra's REST API."""
    xo_type = obj.get("type")
    if xo_type == "message" and task.is_alarm(obj):
        return "alarms"
    return TYPE_TO_COLLECTION.get(xo_type)


__all__ = ["COLLECTIONS", "TYPE_TO_COLLECTION", "NULL_REF", "RECORD_FIELDS", "Context", "Dependents", "to_xo",
           "trim", "collection_of"]
