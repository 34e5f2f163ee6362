"""XO object mapping over a whole simulated pool: records are kept trimmed to the fields
mapping reads (``objects.RECORD_FIELDS``), so the lists must stay complete.  Then the
JavaScript rules the mapping follows, case by case (test_golden compares whole objects)."""
import json

import pytest

from xorest import objects
from xorest.objects import guest, values, xmltree
from xorest.services.mapping import _REAL_CLASS
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


# Xen Orchestra's JavaScript rules, checked against the npm packages it uses (semver,
# compare-versions, fast-xml-parser) and node's Number; the golden test covers the rest.

@pytest.mark.parametrize("value, expected", [
    ("", 0), ("  ", 0), ("1e3", 1000), ("0x10", 16), ("-0x10", None), ("abc", None), ("1.", 1), ("+.5", 0.5),
    ("Infinity", None), ("1_0", None), ("0b11", 3), (" 12 ", 12), (None, None), (True, 1), (4.0, 4),
    ("9.3", 9.3),
])
def test_num_is_javascript_unary_plus(value, expected):
    result = values.num(value)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("value, expected", [
    (0, None), (1678040309, 1678040309), ("19700101T00:00:00Z", None), ("20230305T18:18:29Z", 1678040309),
    ("20230305T18:18:29+01:00", 1678036709), ("0", None), ("1675817747.", 1675817747),
    ("1647628715.91", 1647628715.91), ("XXX 03/10/2010", None), (None, None),
])
def test_timestamp_is_xen_orchestra_s(value, expected):
    assert values.timestamp(value) == expected


@pytest.mark.parametrize("version, expected", [
    ("3.4.0", True), ("3.4", False), ("3.5.0-rc1", False), ("v3.4.0", True), (" 3.4.0 ", True),
    ("3.3.9", False),
    ("10.0.0", True), ("3.4.0+build", True), ("03.4.0", False), ("3.4.0.1", False), (None, False),
])
def test_semver_at_least(version, expected):
    assert values.semver_at_least(version, (3, 4, 0)) is expected


def test_xsa468_compares_driver_versions_as_compare_versions_does():
    def check(drivers, detected=True, device="0002"):
        record = {"platform": {"device_id": device}}
        versions = {"major": "9", "minor": "1", **drivers}
        metrics = {"PV_drivers_detected": detected, "PV_drivers_version": versions}
        return guest.xsa468(record, metrics)

    assert check({"xeniface": "XenServer 9.1.12.93"}) == {
        "reason": "pv-driver-version-vulnerable", "driver": "xeniface", "version": "9.1.12.93"}
    assert check({"xeniface": "XenServer 9.1.12.94", "xenbus": "XenServer 9.2"}) is False
    assert check({"xenbus": "XCP_ng 9.0.9048"})["driver"] == "xenbus"  # missing segments are 0
    assert check({"xenbus": "Unknown_vendor 1.0"}) == {"reason": "no-pv-drivers-detected"}
    assert check({"xenbus": "XenServer"}) == {"reason": "no-pv-drivers-detected"}  # no version
    assert check({"xenbus": "XenServer 1.0"}, detected=False) is False
    assert check({"xenbus": "XenServer 1.0"}, device="0001") is False


def test_addresses_fold_old_and_new_agent_keys():
    networks = {"0/ip": "10.0.0.1 10.0.0.2", "0/ipv4/0": "10.0.0.1", "0/ipv6/0": "fe80::1",
                "10/ip": "10.9.0.1", "2/ipv4/0": " ", "2/ipv6/1": "fe80::2\nfe80::3", "junk": "x"}
    assert guest.addresses(networks) == {
        "0/ipv4/0": "10.0.0.1", "0/ipv4/1": "10.0.0.2", "0/ipv6/0": "fe80::1", "10/ipv4/0": "10.9.0.1",
        "2/ipv6/0": "fe80::2", "2/ipv6/1": "fe80::3"}
    assert guest.main_address(networks) == "10.0.0.1 10.0.0.2"  # as written, first sorted IPv4 key
    assert guest.main_address({"1/ipv6/0": "fe80::1"}) == "fe80::1"
    assert guest.main_address({}) is values.ABSENT


@pytest.mark.parametrize("xml, expected", [
    ('<provision><disk device="0" size="10" sr="" bootable="true"/></provision>',
     {"provision": {"disk": {"device": "0", "size": "10", "sr": "", "bootable": "true"}}}),
    ("<provision></provision>", {"provision": ""}),
    ('<a x="1">text</a>', {"a": {"#text": "text", "x": "1"}}),
    ("<a><b>1</b><b>2</b>tail</a>", {"a": {"b": ["1", "2"], "#text": "tail"}}),
    ('<a x="1"><b/>t</a>', {"a": {"b": "", "#text": "t", "x": "1"}}),
    ("<r>  spaced  </r>", {"r": "spaced"}),
    ("", ""), ("not xml", ""), ('<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>', ""),
])
def test_xml_reads_as_fast_xml_parser_does(xml, expected):
    result = xmltree.parse_xml(xml)
    assert result == expected and json.dumps(result) == json.dumps(expected)  # key order too


def test_template_disks_and_firmware():
    disks = '<provision><disk device="0" size="8589934592" sr="abc" bootable="true" type="system"/>' \
            '<disk device="1" size="1" bootable="false" type="user"/></provision>'
    assert xmltree.template_disks(disks) == [
        {"device": "0", "size": 8589934592, "bootable": True, "type": "system", "SR": "abc"},
        {"device": "1", "size": 1, "bootable": False, "type": "user"}]
    recommendations = '<restrictions><restriction field="vcpus-max" max="32"/>' \
                      '<restriction field="supports-uefi" value="no"/></restrictions>'
    assert xmltree.firmware_supported(recommendations, "uefi") is False
    assert xmltree.firmware_supported(recommendations, "bios") is True
    reduced = xmltree.firmware_restrictions(recommendations)
    assert len(reduced) < len(recommendations) and xmltree.firmware_supported(reduced, "uefi") is False


@pytest.mark.parametrize("body, expected", [
    ('value: 0.954321\nconfig:\n<variable>\n<name value="cpu_usage"/>',
     {"value": "95.4", "name": "cpu_usage"}),
    ('value: 0.0025 config: <variable> <name value="x"/>', {"value": "0.3", "name": "x"}),  # 0.25: ties up
    ('value: NaN config: <variable> <name value="x"/>', {"value": "NaN", "name": "x"}),
    ("<value>0.97</value><name>cpu_usage</name>", {"name": "<value>0.97</value><name>cpu_usage</name>"}),
])
def test_alarm_bodies(body, expected):
    context = objects.Context({}, "pool-uuid")
    message = {"name": "ALARM", "id": "m", "type": "message", "body": body, "time": 2, "$object": "gone"}
    assert objects.task.is_alarm(message) and objects.collection_of(message) == "alarms"
    alarm = objects.task.alarm(message, context)
    assert alarm["body"] == expected and alarm["time"] == 2000
    assert alarm["object"] == {"type": "unknown", "uuid": "gone"}
    assert objects.collection_of({"type": "message", "name": "VM_STARTED"}) == "messages"


def test_malformed_refs_read_as_unknown_records():
    """A record whose ref fields hold something else than refs (a list, a dict: not XAPI's)
    maps as if they named no record, never fails."""
    from xorest.objects.values import ABSENT

    context = objects.Context({"OpaqueRef:a": ("VM", {"uuid": "u-a"}), "OpaqueRef:b": ("VM", {})}, "pool-uuid")
    assert context.links(["OpaqueRef:a", "OpaqueRef:b", "OpaqueRef:gone", 7, None]) == \
        ["u-a", "OpaqueRef:b", None, None, None]
    assert context.links(["OpaqueRef:a", ["a", "list"], {"a": "dict"}]) == ["u-a", None, None]
    assert context.link({"a": "dict"}) is ABSENT and context.link(["x"]) is ABSENT and context.link(3) is ABSENT
    assert context.record(["x"]) is None and context.record("OpaqueRef:a") == {"uuid": "u-a"}
