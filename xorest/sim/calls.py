"""XAPI calls answered by the simulator's host-side parts rather than the database alone:
the host clock, performance data sources (xcp-rrdd), messages.

:func:`register` adds them to the API's dispatch table, next to the generic calls.
"""
import time

from .rpc import DateTime, XapiFailure
from .stats import LIVE


def register(sim):
    """Make ``sim.api`` answer the calls of this module."""
    calls = Calls(sim)
    sim.api._special.update({
        ("host", "get_servertime"): calls.servertime,
        ("host", "get_server_localtime"): calls.server_localtime,
        ("host", "get_data_sources"): calls.host_data_sources,
        ("host", "record_data_source"): calls.host_record,
        ("host", "forget_data_source_archives"): calls.host_forget,
        ("host", "query_data_source"): calls.host_query,
        ("VM", "get_data_sources"): calls.vm_data_sources,
        ("VM", "record_data_source"): calls.vm_record,
        ("VM", "forget_data_source_archives"): calls.vm_forget,
        ("VM", "query_data_source"): calls.vm_query,
        ("message", "create"): calls.message_create,
        ("message", "destroy"): calls.message_destroy,
        ("message", "destroy_many"): calls.message_destroy_many,
        ("message", "get"): calls.message_get,
        ("message", "get_since"): calls.message_get_since,
    })
    return calls


def _data_source(ds, enabled):
    """A ``data_source`` record as XAPI returns it (its ``value`` is always 0)."""
    return {"name_label": ds.name, "name_description": ds.description, "enabled": enabled, "standard": ds.default,
            "units": ds.units, "min": ds.min, "max": ds.max, "value": 0.0}


class Calls:
    def __init__(self, sim):
        self.sim = sim
        self.db = sim.db
        self.stats = sim.stats

    # the host's clock ---------------------------------------------------------------

    def servertime(self, host):
        self.db.record("host", host)
        return DateTime(time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime()))

    def server_localtime(self, host):
        self.db.record("host", host)
        return DateTime(time.strftime("%Y%m%dT%H:%M:%S", time.localtime()))

    # performance data sources --------------------------------------------------------------

    def _vm(self, vm):
        """The VM's live RRD owner, or ``None`` when it does not run (no RRD on any host)."""
        record = self.db.record("VM", vm)
        if record["power_state"] not in LIVE:
            return record, None
        return record, self.stats.vm_owner(vm)

    def vm_data_sources(self, vm):
        _record, owner = self._vm(vm)
        if owner is None:
            return []
        enabled = {ds.name for ds in owner.dss}
        return [_data_source(ds, ds.name in enabled) for ds in sorted(owner.possible, key=lambda d: d.name)]

    def vm_record(self, vm, name):
        record, owner = self._vm(vm)
        if owner is None:
            raise self._missing(f"VM: {record['uuid']}")
        self.stats.record(record["uuid"], name, owner.possible)
        return ""

    def vm_forget(self, vm, name):
        record, owner = self._vm(vm)
        if owner is not None:
            self.stats.forget(record["uuid"], name)
        return ""

    def vm_query(self, vm, name):
        record = self.db.record("VM", vm)
        if record["power_state"] not in LIVE:
            raise XapiFailure("VM_BAD_POWER_STATE", vm, "running;paused", record["power_state"].lower())
        return self.stats.query(self.stats.vm_owner(vm), name)

    def host_data_sources(self, host):
        self.db.record("host", host)
        owner = self.stats.host_owner(host)
        enabled = {ds.name for ds in owner.dss}
        return [_data_source(ds, ds.name in enabled) for ds in sorted(owner.possible, key=lambda d: d.name)]

    def host_record(self, host, name):
        record = self.db.record("host", host)
        self.stats.record(record["uuid"], name, self.stats.host_owner(host).possible)
        return ""

    def host_forget(self, host, name):
        record = self.db.record("host", host)
        self.stats.forget(record["uuid"], name)
        return ""

    def host_query(self, host, name):
        self.db.record("host", host)
        return self.stats.query(self.stats.host_owner(host), name)

    # messages ----------------------------------------------------------------------------

    CLASS_TABLES = {"VM": "VM", "Host": "host", "SR": "SR", "Pool": "pool", "VDI": "VDI", "Certificate": "Certificate"}

    def message_create(self, name, priority, cls, obj_uuid, body):
        """``message.create``: the object must exist (``UUID_INVALID`` otherwise)."""
        values = self.sim.model.enum_values("enum cls") or []
        if cls not in values:
            raise XapiFailure("ENUM_VALUE_INVALID", "cls", str(cls))
        try:
            priority = int(priority)
        except (TypeError, ValueError):
            raise XapiFailure("FIELD_TYPE_ERROR", "priority") from None
        table = self.CLASS_TABLES.get(cls)
        if table is not None and obj_uuid not in self.db.uuid_index[table]:
            raise XapiFailure("UUID_INVALID", cls, obj_uuid)
        return self.db.create("message", {"name": str(name), "priority": priority, "cls": cls,
                                          "obj_uuid": str(obj_uuid), "body": str(body),
                                          "timestamp": DateTime(time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime()))})

    def message_destroy(self, ref):
        self.db.record("message", ref)
        self.db.destroy("message", ref)
        return ""

    def message_destroy_many(self, refs):
        for ref in refs:
            self.message_destroy(ref)
        return ""

    def message_get(self, cls, obj_uuid, since):
        return {ref: m for ref, m in self.db.tables["message"].items()
                if m["cls"] == cls and m["obj_uuid"] == obj_uuid and str(m["timestamp"]) > str(since)}

    def message_get_since(self, since):
        return {ref: m for ref, m in self.db.tables["message"].items() if str(m["timestamp"]) > str(since)}

    @staticmethod
    def _missing(name):
        from .stats import datasource_missing

        return datasource_missing(name)
