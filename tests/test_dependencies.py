"""Incremental updates give the objects a full load would: records arriving in any order and
in any batches, changes to what other objects read, deletions.  Driven through
``PoolConnection.on_batch`` with the golden pool's records."""
import copy
import json
import random
import time

import pytest

from xorest import config as config_module
from xorest.cache import ObjectCache
from xorest.services.pools import PoolConnection

from . import golden


def _connection():
    server = {"id": "golden", "url": "http://127.0.0.1:9", "username": "root", "password": "x", "updated_at": 0}
    return PoolConnection(server, ObjectCache(), config_module.load({}, environ={}))


def _event(cls, ref, record, operation="add"):
    return {"class": cls.lower(), "ref": ref, "operation": operation, "snapshot": record}


def _state(conn):
    snapshot = conn.cache.snapshot()
    return {name: dict(objects) for name, objects in snapshot.collections.items() if objects}


def _full(pool):
    conn = _connection()
    conn.on_batch([_event(cls, ref, record) for ref, (cls, record) in pool.items()], True)
    return _state(conn)


def _pool():
    return {ref: (cls, record) for cls, by_ref in golden.records().items() for ref, record in by_ref.items()}


def _diff(got, want):
    lines = []
    for name in sorted(set(got) | set(want)):
        a, b = got.get(name, {}), want.get(name, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                fields = sorted(k for k in set(a.get(key) or {}) | set(b.get(key) or {})
                                if (a.get(key) or {}).get(k) != (b.get(key) or {}).get(k))
                lines.append(f"{name}/{key}: {fields[:6]}")
    return lines[:20]


@pytest.mark.parametrize("seed", range(6))
def test_records_arriving_in_any_batches_map_as_a_full_load(seed):
    pool = _pool()
    refs = list(pool)
    random.Random(seed).shuffle(refs)
    cuts = sorted(random.Random(seed + 100).sample(range(1, len(refs)), 3))
    parts = [refs[a:b] for a, b in zip([0, *cuts], [*cuts, len(refs)])]
    conn = _connection()
    conn.on_batch([_event(pool[r][0], r, pool[r][1]) for r in parts[0]], True)
    for part in parts[1:]:
        conn.on_batch([_event(pool[r][0], r, pool[r][1]) for r in part], False)
    assert not _diff(_state(conn), _full(pool))


def _find(pool, cls, predicate=lambda record: True):
    return next(ref for ref, (c, record) in pool.items() if c == cls and predicate(record))


def _changes(pool):
    """Changes to records that other objects read: ``[(class, ref, new record or None)]``."""
    rng = random.Random(7)
    changes = []

    def modify(cls, predicate, **fields):
        ref = _find(pool, cls, predicate)
        record = copy.deepcopy(pool[ref][1])
        record.update(fields)
        changes.append((cls, ref, record))
        return ref, record

    # a VHD parent grows: its children's chainPhysicalUsage
    uuids = {r.get("uuid") for _, (_, r) in pool.items()}
    parent = next(r["sm_config"]["vhd-parent"] for _, (c, r) in pool.items()
                  if c == "VDI" and (r.get("sm_config") or {}).get("vhd-parent") in uuids)
    modify("VDI", lambda r: r["uuid"] == parent, physical_utilisation=str(rng.randrange(1 << 30, 1 << 34)))
    # a bond slave leaves its bond: its network's isBonded
    modify("PIF", lambda r: r.get("bond_slave_of", "OpaqueRef:NULL") != "OpaqueRef:NULL",
           bond_slave_of="OpaqueRef:NULL")
    # the master's software version: every VM's isNestedVirtEnabled
    master = next(r["master"] for _, (c, r) in pool.items() if c == "pool")
    software = dict(pool[master][1]["software_version"], platform_version="3.5.0")
    modify("host", lambda r: r is pool[master][1], software_version=software)
    # a halted VM's disk moves to another SR: the VM's $container
    srs = [ref for ref, (c, _) in pool.items() if c == "SR"]
    modify("VDI", lambda r: r.get("VBDs") and r["type"] == "user", SR=rng.choice(srs))
    # a PBD of a local SR moves: the SR's $container
    modify("PBD", lambda r: True, host=rng.choice([ref for ref, (c, _) in pool.items() if c == "host"]))
    # a guest agent reports, a balloon driver moves memory
    modify("VM_guest_metrics", lambda r: True, networks={"0/ipv4/0": "192.0.2.10"})
    modify("VM_metrics", lambda r: True, memory_actual="1073741824")
    # an alarm's object goes away, another record's certificate changes
    alarm_target = next(r["obj_uuid"] for _, (c, r) in pool.items() if c == "message" and r["name"] == "ALARM"
                        and any(x.get("uuid") == r["obj_uuid"] for _, (_, x) in pool.items()))
    target = next(ref for ref, (c, r) in pool.items() if r.get("uuid") == alarm_target and c in ("SR", "host", "VM"))
    if pool[target][0] == "SR":
        changes.append(("SR", target, None))
    modify("Certificate", lambda r: True, fingerprint="AA:BB")
    # a task a VM names is finished and destroyed; a VTPM goes with its VM's change
    task = next(iter(k for _, (c, r) in pool.items() if c == "VM" for k in (r.get("current_operations") or {})),
                None)
    if task in pool:
        changes.append(("task", task, None))
    vtpm = _find(pool, "VTPM")
    owner = _find(pool, "VM", lambda r: vtpm in (r.get("VTPMs") or ()))
    changes.append(("VTPM", vtpm, None))
    record = copy.deepcopy(pool[owner][1])
    record["VTPMs"] = []
    changes.append(("VM", owner, record))
    return changes


def test_changes_to_what_others_read_map_as_a_full_load():
    pool = _pool()
    conn = _connection()
    conn.on_batch([_event(cls, ref, record) for ref, (cls, record) in pool.items()], True)
    for cls, ref, record in _changes(pool):
        if record is None:
            conn.on_batch([_event(cls, ref, pool[ref][1], "del")], False)
            del pool[ref]
        else:
            conn.on_batch([_event(cls, ref, record, "mod")], False)
            pool[ref] = (cls, record)
        assert not _diff(_state(conn), _full(pool)), (cls, ref)


def _flat(collections):
    """``id -> (collection, object)`` of decoded parts, each collection checked in id order."""
    assert all(list(objects) == sorted(objects) for objects in collections.values())
    return {key: (name, obj) for name, objects in collections.items() for key, obj in objects.items()}


def test_a_first_load_mapped_in_two_processes_is_a_full_load(monkeypatch):
    """The pools daemon's loader takes a pool in several answers (classes in groups, the
    first answer's token followed) and maps half its records in a forked copy of itself:
    the objects and the mapper's state (who reads what, ids) are those of one full batch,
    and a change applied afterwards maps as it would after a full batch."""
    from xorest.services import firstload, poolload
    from xorest.services.mapping import PoolMapper

    from xorest.xapi.watcher import WATCHED_CLASSES

    pool = {ref: item for ref, item in _pool().items() if item[0] in WATCHED_CLASSES}  # what a pool sends
    events = [_event(cls, ref, record) for ref, (cls, record) in pool.items()]
    # a record that comes and goes within the load
    events[3:3] = [_event("VM", "OpaqueRef:gone", {"uuid": "gone"}), _event("VM", "OpaqueRef:gone", {}, "del")]
    whole = PoolMapper()
    whole_objects, _ = whole.apply(copy.deepcopy(events), True)

    def answers(as_json):
        """The events as a loader gets them: one answer per class group, in its order."""
        for number, group in enumerate(poolload.load_groups()):
            classes = {cls.lower() for cls in group}
            result = {"events": [copy.deepcopy(event) for event in events if event["class"].lower() in classes],
                      "token": f"t{number}"}
            yield json.dumps({"jsonrpc": "2.0", "result": result, "id": 0}).encode() if as_json else result

    monkeypatch.setattr(firstload, "PARALLEL_FROM_RECORDS", 0)
    # JSON answers (decoded by the loader), and a pool without JSON-RPC: its answers come decoded (XML-RPC)
    for as_json in (True, False):
        loaded = firstload.FirstLoad()
        for answer in answers(as_json):
            loaded.add(answer)
        (vm_parts, vm_mapped, vm_last), (parts, mapped, last) = loaded.map()
        assert (loaded.token, loaded.count) == ("t0", len(events))
        assert (vm_last, last) == (False, True)
        vm_objects = _flat(firstload.decode_objects(vm_parts))  # the VMs' stage: VMs and nothing else
        assert vm_objects == {key: item for key, item in whole_objects.items() if item[0] == "vms"} != {}
        assert len(parts) > 2 and all(firstload.decode_objects([part]) for part in parts)
        loaded.mapper.finish_load(vm_mapped + mapped)
        assert _flat(firstload.decode_objects(vm_parts + parts)) == whole_objects
        assert loaded.mapper.state() == whole.state()
    split = loaded.mapper

    monkeypatch.setattr(firstload, "PARALLEL_FROM_RECORDS", 10**9)  # a small pool: one process
    loaded = firstload.FirstLoad()
    for answer in answers(True):
        loaded.add(answer)
    stages = list(loaded.map())
    assert [(len(parts), last) for parts, _, last in stages] == [(1, False), (1, True)]
    parts, mapped = [part for stage in stages for part in stage[0]], [pair for stage in stages for pair in stage[1]]
    assert _flat(firstload.decode_objects(parts)) == whole_objects
    loaded.mapper.finish_load(mapped)
    assert loaded.mapper.state() == whole.state()

    vm_ref = next(ref for ref, (cls, record) in pool.items() if cls == "VM" and not record.get("is_a_template"))
    changed = dict(pool[vm_ref][1], name_label="renamed")
    assert split.apply([_event("VM", vm_ref, changed, "mod")], False) == \
        whole.apply([_event("VM", vm_ref, changed, "mod")], False)


def test_both_loader_processes_take_chunks_and_a_failed_copy_s_are_mapped_again(monkeypatch, tmp_path):
    """The loader and its forked copy (one a stage) take chunks of the records from one queue; chunks the
    copy took and did not deliver (it failed midway) are mapped by the loader: the objects
    are still every one of the pool's, in id order."""
    import os

    from xorest.services import firstload
    from xorest.services.mapping import PoolMapper
    from xorest.xapi.watcher import WATCHED_CLASSES

    pool = {ref: item for ref, item in _pool().items() if item[0] in WATCHED_CLASSES}
    events = [_event(cls, ref, record) for ref, (cls, record) in pool.items()]
    whole_objects, _ = PoolMapper().apply(copy.deepcopy(events), True)
    me, log = os.getpid(), tmp_path / "chunks"
    real = PoolMapper.map_records

    def map_records(self, refs, fail_after=None):
        with open(log, "a") as out:
            out.write(f"{os.getpid()}\n")
        time.sleep(0.05)  # a chunk takes a while: both processes get to take some
        if os.getpid() != me and fail_after is not None and log.read_text().split().count(str(os.getpid())) > fail_after:
            raise RuntimeError("the copy fails")
        return real(self, refs)

    monkeypatch.setattr(firstload, "PARALLEL_FROM_RECORDS", 0)
    for fail_after in (None, 1):
        log.write_text("")
        monkeypatch.setattr(PoolMapper, "map_records", lambda self, refs: map_records(self, refs, fail_after))
        loaded = firstload.FirstLoad()
        loaded.add({"events": copy.deepcopy(events), "token": "t"})
        stages = list(loaded.map())
        parts, mapped = [part for stage in stages for part in stage[0]], [pair for stage in stages for pair in stage[1]]
        takers = log.read_text().split()
        assert [len(stage[0]) for stage in stages] == [len(chunks) for chunks in loaded.chunks()]
        assert len(parts) > 2
        copies = set(takers) - {str(me)}  # one forked copy a stage, each took chunks too
        assert str(me) in takers and len(copies) == len(stages) == 2
        assert _flat(firstload.decode_objects(parts)) == whole_objects
        assert sorted(key for _, key in mapped if key is not None) == sorted(whole_objects)
        # each chunk mapped once, and the one the copy failed on once more, here
        failed = 0 if fail_after is None else sum(takers.count(pid) > fail_after for pid in copies)
        assert len(takers) == len(parts) + failed and (fail_after is None or failed)


def test_a_pool_with_odd_uuids_maps_in_few_chunks_in_id_order(monkeypatch):
    """Whatever a pool calls uuids (upper case, other scripts, none), its records go to at
    most 17 chunks, and the objects come out in id order all the same."""
    from xorest.services import firstload
    from xorest.services.mapping import PoolMapper

    events = [_event("VM", f"OpaqueRef:{n}", {"uuid": text, "name_label": f"vm {n}", "power_state": "Halted"})
              for n, text in enumerate([chr(0x400 + n) + "-odd" for n in range(300)] + ["ABC", "", "f00", "0aa"])]
    events.append(_event("pool", "OpaqueRef:pool", {"uuid": "pool-uuid", "master": "OpaqueRef:NULL"}))
    monkeypatch.setattr(firstload, "PARALLEL_FROM_RECORDS", 0)
    loaded = firstload.FirstLoad()
    loaded.add({"events": copy.deepcopy(events), "token": "t"})
    assert [len(chunks) <= 17 for chunks in loaded.chunks()] == [True, True]
    parts = [part for stage_parts, _, _ in loaded.map() for part in stage_parts]
    whole, _ = PoolMapper().apply(copy.deepcopy(events), True)
    assert _flat(firstload.decode_objects(parts)) == whole


def test_a_first_load_asks_for_every_watched_class_once_big_classes_first():
    from xorest.services import poolload
    from xorest.xapi.watcher import WATCHED_CLASSES

    groups = poolload.load_groups()
    asked = [cls for group in groups for cls in group]
    assert sorted(asked) == sorted(WATCHED_CLASSES) and len(asked) == len(set(asked))
    assert groups[0] == ["VM"] and all(groups)
