"""perfmon's ALARM messages in the simulator: raised when a watched value crosses its
threshold (``other_config:perfmon``), in perfmon's body format, as Xen Orchestra parses them;
and the admin endpoints that make them happen on purpose."""
import time

import pytest
import requests
import XenAPI

from xorest import objects

from .conftest import sim_admin
from .golden import map_pool
from .test_sim import JsonRpc

CPU_090 = '<config><variable><name value="cpu_usage"/><alarm_trigger_level value="0.9"/></variable></config>'


def alarms(rpc):
    return {ref: m for ref, m in rpc("message.get_all_records").items() if m["name"] == "ALARM"}


def running_vm(rpc):
    return next((r, v) for r, v in rpc("VM.get_all_records").items()
                if v["power_state"] == "Running" and not v["is_control_domain"])


@pytest.fixture
def sim(processes, monkeypatch):
    monkeypatch.setenv("XOREST_SIM_MONITORING", "0")  # a pool nobody has configured perfmon on yet
    sim = processes.sim("--vms", "12", "--seed", "14", "--hosts", "1")
    return sim, JsonRpc(sim.url)


def test_a_watched_vm_over_its_threshold_raises_an_alarm(sim):
    sim, rpc = sim
    ref, vm = running_vm(rpc)
    assert alarms(rpc) == {}  # nothing is watched until someone configures it, as on XAPI
    assert sim_admin(sim.url, "perfmon", {"run": True})["alarms"] == []
    rpc("VM.add_to_other_config", ref, "perfmon", CPU_090)
    sim_admin(sim.url, "stats", {"uuid": vm["uuid"], "values": {"cpu_usage": 0.97}})
    raised = sim_admin(sim.url, "perfmon", {"run": True})["alarms"]
    assert len(raised) == 1
    message = rpc("message.get_record", raised[0]["ref"])
    assert message["name"] == "ALARM" and message["cls"] == "VM" and message["obj_uuid"] == vm["uuid"]
    assert message["priority"] == 3
    assert message["body"] == ('value: 0.970000\nconfig:\n<variable>\n\t<name value="cpu_usage"/>\n\t'
                               '<alarm_trigger_level value="0.9"/>\n</variable>\n')
    # the forced values are what /rrd_updates shows too
    doc = requests.get(f"{sim.url}/rrd_updates?session_id={rpc.session}&start={int(time.time()) - 120}"
                       f"&vm_uuid={vm['uuid']}&json=true", timeout=30).json()
    usage = doc["meta"]["legend"].index(f"AVERAGE:vm:{vm['uuid']}:cpu_usage")
    assert doc["data"][0]["values"][usage] == "0.97"
    # then perfmon holds back for alarm_auto_inhibit_period (an hour)
    assert sim_admin(sim.url, "perfmon", {"run": True})["alarms"] == []
    # Xen Orchestra's alarm object, from xorest's mapping of the records
    records = {}
    for cls in ("pool", "host", "VM", "message"):
        records.update({r: (cls, objects.trim(cls, rec)) for r, rec in rpc(f"{cls}.get_all_records").items()})
    served, _ = map_pool(records)
    alarm = served["alarms"][message["uuid"]]
    assert alarm["body"] == {"value": "97.0", "name": "cpu_usage"}
    assert alarm["object"] == {"type": "VM", "uuid": vm["uuid"], "href": f"/rest/v0/vms/{vm['uuid']}"}


def test_below_the_level_or_too_briefly_no_alarm(sim):
    sim, rpc = sim
    ref, vm = running_vm(rpc)
    rpc("VM.add_to_other_config", ref, "perfmon",
        '<config><variable><name value="cpu_usage"/><alarm_trigger_level value="0.9"/>'
        '<alarm_trigger_period value="180"/></variable></config>')
    sim_admin(sim.url, "stats", {"uuid": vm["uuid"], "values": {"cpu_usage": 0.5}})
    assert sim_admin(sim.url, "perfmon", {"run": True})["alarms"] == []
    # two bad minutes are not the three the configuration asks for
    now = time.time()
    last = int(now) - int(now) % 60
    sim_admin(sim.url, "stats", {"uuid": vm["uuid"], "values": {"cpu_usage": 0.99}, "since": last - 90})
    sim_admin(sim.url, "stats", {"reset": True, "uuid": "unknown"})
    sim_admin(sim.url, "perfmon", {"interval": 0})
    assert sim_admin(sim.url, "perfmon", {"run": True})["alarms"] == []


def test_hosts_srs_low_sense_and_defaults(sim):
    sim, rpc = sim
    host_ref, host = next(iter(rpc("host.get_all_records").items()))
    rpc("host.add_to_other_config", host_ref, "perfmon",
        '<config><variable><name value="cpu_usage"/><alarm_trigger_level value="0.001"/></variable>'
        '<variable><name value="memory_free_kib"/><alarm_trigger_level value="1099511627776"/>'
        '<alarm_priority value="2"/></variable></config>')
    sr_ref, sr = next((r, s) for r, s in rpc("SR.get_all_records").items() if s["shared"] and s["content_type"] == "user")
    rpc("SR.add_to_other_config", sr_ref, "perfmon",
        '<config><variable><name value="physical_utilisation"/><alarm_trigger_level value="0.00001"/></variable></config>')
    raised = sim_admin(sim.url, "perfmon", {"run": True})["alarms"]
    kinds = {(a["cls"], a["obj_uuid"], a["priority"], a["body"].split("name value=\"")[1].split('"')[0]) for a in raised}
    assert ("Host", host["uuid"], 3, "cpu_usage") in kinds
    assert ("Host", host["uuid"], 2, "memory_free_kib") in kinds  # triggers when low
    assert ("SR", sr["uuid"], 3, "physical_utilisation") in kinds
    # a default configuration watches VMs that have none
    sim_admin(sim.url, "perfmon", {"default": {"VM": '<config><variable><name value="network_usage"/>'
                                                     '<alarm_trigger_level value="0"/></variable></config>'}})
    raised = sim_admin(sim.url, "perfmon", {"interval": 300, "run": True})["alarms"]
    running = {v["uuid"] for v in rpc("VM.get_all_records").values() if v["power_state"] == "Running"
               and not v["is_control_domain"] and v["VIFs"]}
    assert running and {a["obj_uuid"] for a in raised if a["cls"] == "VM"} == running


def test_alarms_come_by_themselves_on_perfmon_s_timer(sim):
    sim, rpc = sim
    ref, vm = running_vm(rpc)
    rpc("VM.add_to_other_config", ref, "perfmon", CPU_090)
    sim_admin(sim.url, "stats", {"uuid": vm["uuid"], "values": {"cpu_usage": 0.95}})
    sim_admin(sim.url, "perfmon", {"interval": 1})
    deadline = time.monotonic() + 10
    while not alarms(rpc) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [m["obj_uuid"] for m in alarms(rpc).values()] == [vm["uuid"]]


def test_trigger_endpoint_and_message_calls(sim):
    sim, rpc = sim
    ref, vm = running_vm(rpc)
    rpc("VM.add_to_other_config", ref, "perfmon",
        '<config><variable><name value="memory_internal_free"/><alarm_trigger_level value="524288"/>'
        '<alarm_priority value="1"/></variable></config>')
    message = sim_admin(sim.url, "alarm", {"uuid": vm["uuid"], "variable": "memory_internal_free", "value": 131072})
    assert message["body"].startswith("value: 131072.000000\nconfig:\n<variable>\n\t<name value=\"memory_internal_free\"/>")
    assert message["priority"] == 1 and message["cls"] == "VM"
    host = next(iter(rpc("host.get_all_records").values()))
    plain = sim_admin(sim.url, "alarm", {"uuid": host["uuid"]})  # no configuration: a plain cpu_usage one
    assert plain["cls"] == "Host" and '<alarm_trigger_level value="0.9"/>' in plain["body"]
    with pytest.raises(requests.exceptions.HTTPError):
        sim_admin(sim.url, "alarm", {"uuid": "no-such-object"})
    assert set(alarms(rpc)) == {message["ref"], plain["ref"]}
    since = rpc("message.get_since", "19700101T00:00:00Z")
    assert message["ref"] in since
    mine = rpc("message.get", "VM", vm["uuid"], "19700101T00:00:00Z")
    assert set(mine) == {message["ref"]}
    created = rpc("message.create", "VM_STARTED", 5, "VM", vm["uuid"], "")
    with pytest.raises(XenAPI.Failure) as info:
        rpc("message.create", "X", 5, "VM", "not-a-vm", "")
    assert info.value.details == ["UUID_INVALID", "VM", "not-a-vm"]
    rpc("message.destroy_many", [message["ref"], created])
    assert set(alarms(rpc)) == {plain["ref"]}
    with pytest.raises(XenAPI.Failure) as info:
        rpc("message.destroy", created)
    assert info.value.details[0] == "HANDLE_INVALID"
