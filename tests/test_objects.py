"""XO object mapping over a whole simulated pool: records are kept trimmed to the fields
mapping reads (``objects.RECORD_FIELDS``), so the lists must stay complete."""
import pytest

from xorest import objects
from xorest.services.pools import _REAL_CLASS
from xorest.xapi import XapiClient
from xorest.xapi.watcher import WATCHED_CLASSES


class RecordingRecord(dict):
    """A record that notes every field read from it."""

    def __init__(self, cls, fields, reads):
        super().__init__(fields)
        self.cls, self.reads = cls, reads

    def get(self, key, default=None):
        self.reads.add((self.cls, key))
        return super().get(key, default)

    def __getitem__(self, key):
        self.reads.add((self.cls, key))
        return super().__getitem__(key)


@pytest.fixture(scope="module")
def pool_records(tmp_path_factory):
    """``ref -> (class, record)`` of a pool with every kind of object, read over HTTP."""
    from .conftest import start_sim

    sim = start_sim(tmp_path_factory.mktemp("objects"), "--vms", "40", "--seed", "12")
    try:
        client = XapiClient(sim.url, "root", "password")
        client.login()
        vms = client.call("VM.get_all_records")
        running = next(r for r, v in vms.items() if v["power_state"] == "Running" and not v["is_control_domain"])
        client.call("VM.snapshot", running, "for the mapping test", [])
        vdi = next(r for r, v in client.call("VDI.get_all_records").items() if not v["is_a_snapshot"])
        client.call("VDI.snapshot", vdi, {})
        client.call("task.create", "a task", "for the mapping test")
        events = client.call("event.from", WATCHED_CLASSES, "", 0.0)["events"]
    finally:
        sim.stop()
    records = {e["ref"]: (_REAL_CLASS.get(e["class"], e["class"]), e["snapshot"]) for e in events}
    kinds = {cls for cls, _ in records.values()}
    assert {"VM", "VM_metrics", "VM_guest_metrics", "task", "message", "PIF_metrics"} <= kinds
    return records


def _map_all(records):
    pool_uuid = next(r["uuid"] for cls, r in records.values() if cls == "pool")
    context = objects.Context(records, pool_uuid)
    return {ref: objects.to_xo(cls, ref, record, context) for ref, (cls, record) in records.items()}


def test_mapping_reads_only_declared_fields(pool_records):
    reads = set()
    recording = {ref: (cls, RecordingRecord(cls, record, reads)) for ref, (cls, record) in pool_records.items()}
    _map_all(recording)
    undeclared = {(cls, key) for cls, key in reads if key not in objects.RECORD_FIELDS.get(cls, {key})}
    assert not undeclared, f"add these to the mapper module's FIELDS: {sorted(undeclared)}"


def test_trimmed_records_map_to_the_same_objects(pool_records):
    trimmed = {ref: (cls, objects.trim(cls, record)) for ref, (cls, record) in pool_records.items()}
    full = _map_all(pool_records)
    assert _map_all(trimmed) == full
    vm = next(r for cls, r in pool_records.values() if cls == "VM")
    assert len(objects.trim("VM", vm)) < len(vm) / 2  # the point: most of a record is not kept
    assert sum(o is not None for o in full.values()) > 100
