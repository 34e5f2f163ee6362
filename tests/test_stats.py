"""Stats of VMs, hosts and pools (``GET /<collection>/<id>/stats``) and a VM's data sources,
through gunicorn against a simulator whose every host is reachable; the values are compared
with what the hosts' ``/rrd_updates`` serve directly.  Then the parser of ``/rrd_updates``
answers and Xen Orchestra's stats keys, without processes."""
import json
import math
import time
import xml.etree.ElementTree as ElementTree

import pytest
import requests

from xorest.errors import Unprocessable
from xorest.services.statkeys import place, stats, stats_schema
from xorest.services.stats import step_of
from xorest.xapi import rrd

from .conftest import Gateway, start_sim
from .test_sim import JsonRpc

NOWHERE = "00000000-0000-0000-0000-000000000000"
STEPS = {"seconds": 5, "minutes": 60, "hours": 3600, "days": 86400}
ROWS = {5: 120, 60: 120, 3600: 168, 86400: 366}
MASTER, MEMBER = "127.0.0.1", "127.0.0.2"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stats")
    sim = start_sim(tmp, "--seed", "5", "--vms", "24", "--slave", "127.0.0.2", "--slave", "127.0.0.3",
                    name="stats-sim")
    gw = Gateway(tmp, sim.url, name="stats-gw")
    gw.sim, gw.rpc = sim, JsonRpc(sim.url)
    yield gw
    gw.stop()
    sim.stop()


def _direct(gw, address, start, step, **params):
    """``/rrd_updates`` of the host at ``address``, straight from the simulator (JSON):
    ``{(kind, uuid, name): {time: value}}``."""
    query = {"session_id": gw.rpc.session, "start": start, "cf": "AVERAGE", "interval": step, "json": "true",
             **params}
    answer = requests.get(f"http://{address}:{gw.sim.port}/rrd_updates", params=query, timeout=60)
    assert answer.status_code == 200, answer.status_code
    doc = answer.json()
    assert int(doc["meta"]["step"]) == step
    series = {}
    for index, entry in enumerate(doc["meta"]["legend"]):
        _cf, kind, rest = entry.split(":", 2)
        uuid, name = rest.rsplit(":", 1)
        series[(kind, uuid, name)] = {int(row["t"]): float(row["values"][index]) for row in doc["data"]}
    return series


def _times(body):
    """The time of each value of a stats answer, oldest first (its lists all have one length)."""
    lengths = set()

    def walk(node):
        if isinstance(node, list):
            lengths.add(len(node))
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
    walk(body["stats"])
    assert len(lengths) == 1, lengths
    count = lengths.pop()
    return [body["endTimestamp"] - (count - 1 - i) * body["interval"] for i in range(count)]


def _agrees(values, times, direct, factor=1.0):
    """The gateway's values are the direct ones (at the same times) in Xen Orchestra's unit."""
    compared = 0
    for t, value in zip(times, values):
        if t not in direct:
            continue
        expected = direct[t] * factor
        if math.isnan(expected):
            assert value is None, (t, value)
        else:
            assert value == pytest.approx(expected, rel=1e-12), (t, value, expected)
        compared += 1
    return compared


def _vms(gw):
    return gw.get("/rest/v0/vms?fields=id,uuid,power_state,$container,name_label&filter=!is_a_template?").json()


def _hosts(gw):
    return {h["id"]: h for h in gw.get("/rest/v0/hosts?fields=id,uuid,address,$pool").json()}


def _running_vm_on(gw, address):
    hosts = _hosts(gw)
    return next(vm for vm in sorted(_vms(gw), key=lambda v: v["id"]) if vm["power_state"] == "Running"
                and hosts.get(vm["$container"], {}).get("address") == address)


@pytest.mark.parametrize("granularity", sorted(STEPS, key=STEPS.get))
def test_a_vm_s_stats_are_its_host_s_rrd(stack, granularity):
    gw = stack
    step, rows = STEPS[granularity], ROWS[STEPS[granularity]]
    vm = _running_vm_on(gw, MEMBER)  # its RRD is on a member: the master has none of it
    answer = gw.get(f"/rest/v0/vms/{vm['id']}/stats", params={"granularity": granularity})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"endTimestamp", "interval", "stats"}
    assert body["interval"] == step and body["endTimestamp"] % step == 0
    assert abs(body["endTimestamp"] - time.time()) < 2 * step + 10
    times = _times(body)
    assert rows - 2 <= len(times) <= rows
    stats = body["stats"]
    cpus = stats["cpus"]
    assert set(cpus) == {str(i) for i in range(len(cpus))} and cpus
    assert any(value for value in cpus["0"][-3:]), cpus["0"][-3:]  # a running VM uses some CPU
    # a start relative to the host's last update (negative, as rrd_updates takes it): a step
    # boundary passing since the answer above must not send the query to a coarser archive
    direct = _direct(gw, MEMBER, -(rows - 1) * step, step, vm_uuid=vm["uuid"])
    on_master = _direct(gw, MASTER, -(rows - 1) * step, step, host="true", vm_uuid=vm["uuid"])
    assert on_master and not any(kind == "vm" for kind, _uuid, _name in on_master)

    def source(name):
        return direct[("vm", vm["uuid"], name)]

    compared = _agrees(cpus["0"], times, source("cpu0"), 100)
    assert compared >= rows - 3
    _agrees(stats["cpuUsage"], times, source("cpu_usage"), 100)
    _agrees(stats["memory"], times, source("memory"))
    _agrees(stats["memoryTarget"], times, source("memory_target"))
    if ("vm", vm["uuid"], "memory_internal_free") in direct:  # with a guest agent
        _agrees(stats["memoryFree"], times, source("memory_internal_free"), 1024)
    else:
        assert "memoryFree" not in stats
    for device, values in stats["vifs"]["rx"].items():
        _agrees(values, times, source(f"vif_{device}_rx"))
        _agrees(stats["vifs"]["tx"][device], times, source(f"vif_{device}_tx"))
    assert stats["xvds"]["r"] and stats["iops"]["total"]
    for letter, values in stats["xvds"]["r"].items():
        _agrees(values, times, source(f"vbd_xvd{letter}_read"))
        _agrees(stats["iops"]["total"][letter], times, source(f"vbd_xvd{letter}_iops_total"))
        _agrees(stats["vbdLatency"]["r"][letter], times, source(f"vbd_xvd{letter}_read_latency"), 1e-3)
        _agrees(stats["ioThroughput"]["w"][letter], times, source(f"vbd_xvd{letter}_io_throughput_write"), 2 ** 20)
        _agrees(stats["vbdIowait"][letter], times, source(f"vbd_xvd{letter}_iowait"), 100)
    assert "runstateFullrun" not in stats  # not recorded by default


def test_a_host_s_stats_come_from_the_host_itself(stack):
    gw = stack
    hosts = _hosts(gw)
    for host in hosts.values():
        body = gw.get(f"/rest/v0/hosts/{host['id']}/stats").json()
        assert body["interval"] == 5
        times = _times(body)
        stats = body["stats"]
        assert {"cpus", "memory", "memoryFree", "load", "pifs", "iops", "latency", "iowait", "hostload"} <= set(stats)
        direct = _direct(gw, host["address"], -595, 5, host="true", vm_uuid="none")
        assert {uuid for _kind, uuid, _name in direct} == {host["uuid"]}

        def source(name, uuid=host["uuid"]):
            return direct[("host", uuid, name)]

        assert _agrees(stats["memory"], times, source("memory_total_kib"), 1024) >= 100
        _agrees(stats["memoryFree"], times, source("memory_free_kib"), 1024)
        _agrees(stats["load"], times, source("loadavg"))
        for cpu, values in stats["cpus"].items():
            _agrees(values, times, source(f"cpu{cpu}"), 100)
        for device, values in stats["pifs"]["rx"].items():
            _agrees(values, times, source(f"pif_eth{device}_rx"))
        for sr, values in stats["latency"]["total"].items():
            _agrees(values, times, source(f"latency_{sr}"), 1e-3)
            _agrees(stats["iops"]["r"][sr], times, source(f"iops_read_{sr}"))
        assert stats["memory"][-1] == stats["memory"][0] > 0


def test_a_pool_s_stats_are_its_hosts(stack):
    gw = stack
    hosts = _hosts(gw)
    pool = gw.get("/rest/v0/pools?fields=id").json()[0]["id"]
    body = gw.get(f"/rest/v0/pools/{pool}/stats", params={"granularity": "minutes"}).json()
    assert set(body) == {host for host, h in hosts.items() if h["$pool"] == pool}
    for host, entry in body.items():
        assert entry["interval"] == 60 and 118 <= len(_times(entry)) <= 120
        alone = gw.get(f"/rest/v0/hosts/{host}/stats?granularity=minutes").json()
        assert entry["stats"]["memory"] == alone["stats"]["memory"]


def test_a_host_that_cannot_be_reached(processes, tmp_path):
    """Without a listener on its members' addresses, the pool's members keep their RRDs to
    themselves: their stats are 503s, and the pool's stats name the error of each."""
    sim = processes.sim("--seed", "3", "--vms", "6", "--hosts", "2")
    gw = processes.add(Gateway(tmp_path, sim.url, name="lonely-gw"))
    hosts = _hosts(gw)
    member = next(h for h in hosts.values() if h["address"] == MEMBER)
    master = next(h for h in hosts.values() if h["address"] == MASTER)
    unreachable = gw.get(f"/rest/v0/hosts/{member['id']}/stats")
    assert unreachable.status_code == 503 and MEMBER in unreachable.json()["error"]
    body = gw.get(f"/rest/v0/pools/{member['$pool']}/stats").json()
    assert set(body) == {member["id"], master["id"]}
    assert set(body[member["id"]]) == {"error"} and MEMBER in body[member["id"]]["error"]["message"]
    assert body[master["id"]]["interval"] == 5 and body[master["id"]]["stats"]["memory"]


def test_refusals(stack):
    gw = stack
    vms = _vms(gw)
    halted = next(vm for vm in vms if vm["power_state"] == "Halted")
    answer = gw.get(f"/rest/v0/vms/{halted['id']}/stats")
    assert answer.status_code == 422 and "halted" in answer.json()["error"]
    running = _running_vm_on(gw, MASTER)
    for path in (f"/rest/v0/vms/{running['id']}/stats", f"/rest/v0/hosts/{next(iter(_hosts(gw)))}/stats"):
        bad = gw.get(path, params={"granularity": "weeks"})
        assert bad.status_code == 422 and bad.json()["data"] == {"parameter": "granularity"}, bad.text
        assert "seconds, minutes, hours, days" in bad.json()["error"]
    for collection in ("vms", "hosts", "pools"):
        missing = gw.get(f"/rest/v0/{collection}/{NOWHERE}/stats")
        assert missing.status_code == 404 and missing.headers["Content-Type"] == "application/json"
    assert gw.get(f"/rest/v0/srs/{NOWHERE}/stats").status_code == 404  # no SR stats (yet)


def test_a_scoped_token_reads_the_stats_of_its_vms_only(stack):
    gw = stack
    mine = _running_vm_on(gw, MEMBER)
    ref = gw.rpc("VM.get_by_uuid", mine["uuid"])
    gw.rpc("VM.add_tags", ref, "stats-scope")
    try:
        made = requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", timeout=10,
                             json={"scope": {"filter": "tags:stats-scope"}},
                             cookies={"authenticationToken": gw.token})
        assert made.status_code == 201, made.text
        cookies = {"authenticationToken": made.json()["token"]["id"]}
        deadline = time.monotonic() + 20
        while gw.get("/rest/v0/vms?filter=tags:stats-scope").json() == [] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert gw.get(f"/rest/v0/vms/{mine['id']}/stats", cookies=cookies).status_code == 200
        other = _running_vm_on(gw, MASTER)
        hidden = gw.get(f"/rest/v0/vms/{other['id']}/stats", cookies=cookies)
        assert hidden.status_code == 404 and hidden.json()["error"] == gw.get(
            f"/rest/v0/vms/{other['id']}", cookies=cookies).json()["error"]
        host = mine["$container"]  # the host its stats come from is still out of scope
        assert gw.get(f"/rest/v0/hosts/{host}/stats", cookies=cookies).status_code == 404
        pool = gw.get("/rest/v0/pools?fields=id").json()[0]["id"]
        assert gw.get(f"/rest/v0/pools/{pool}/stats", cookies=cookies).status_code == 404
        toggled = requests.put(f"{gw.url}/rest/v0/vms/{other['id']}/stats/data_source/runstate_fullrun",
                               cookies=cookies, timeout=10)
        assert toggled.status_code == 404
    finally:
        gw.rpc("VM.remove_tags", ref, "stats-scope")


def _data_sources(gw, vm):
    ref = gw.rpc("VM.get_by_uuid", vm["uuid"])
    return {d["name_label"]: d["enabled"] for d in gw.rpc("VM.get_data_sources", ref)}


def test_data_sources_are_recorded_and_forgotten(stack):
    gw = stack
    vm = _running_vm_on(gw, MEMBER)
    url = f"{gw.url}/rest/v0/vms/{vm['id']}/stats/data_source"
    cookies = {"authenticationToken": gw.token}
    assert _data_sources(gw, vm)["runstate_fullrun"] is False
    recorded = requests.put(f"{url}/runstate_fullrun", cookies=cookies, timeout=30)
    assert recorded.status_code == 204, recorded.text
    assert _data_sources(gw, vm)["runstate_fullrun"] is True
    stats = gw.get(f"/rest/v0/vms/{vm['id']}/stats").json()["stats"]
    assert "runstateFullrun" in stats and len(stats["runstateFullrun"]) == len(stats["cpus"]["0"])
    forgotten = requests.delete(f"{url}/runstate_fullrun", cookies=cookies, timeout=30)
    assert forgotten.status_code == 204
    assert _data_sources(gw, vm)["runstate_fullrun"] is False
    assert "runstateFullrun" not in gw.get(f"/rest/v0/vms/{vm['id']}/stats").json()["stats"]
    # a default one: forgotten, it leaves the stats; recorded again, it is back
    assert requests.delete(f"{url}/cpu_usage", cookies=cookies, timeout=30).status_code == 204
    assert "cpuUsage" not in gw.get(f"/rest/v0/vms/{vm['id']}/stats").json()["stats"]
    assert requests.put(f"{url}/cpu_usage", cookies=cookies, timeout=30).status_code == 204
    assert "cpuUsage" in gw.get(f"/rest/v0/vms/{vm['id']}/stats").json()["stats"]
    unknown = requests.put(f"{url}/no_such_source", cookies=cookies, timeout=30)
    assert unknown.status_code == 404 and "no_such_source" in unknown.json()["error"]
    assert unknown.json()["data"]["code"] == "INTERNAL_ERROR"
    halted = next(v for v in _vms(gw) if v["power_state"] == "Halted")
    refused = requests.put(f"{gw.url}/rest/v0/vms/{halted['id']}/stats/data_source/cpu0", cookies=cookies,
                           timeout=30)
    assert refused.status_code == 409 and "halted" in refused.json()["error"]
    assert requests.put(f"{gw.url}/rest/v0/vms/{NOWHERE}/stats/data_source/cpu0", cookies=cookies,
                        timeout=30).status_code == 404
    trail = gw.get("/rest/v0/audit?fields=method,path,status").json()
    assert {"method": "PUT", "path": f"/rest/v0/vms/{vm['id']}/stats/data_source/runstate_fullrun",
            "status": 204} in [{k: e[k] for k in ("method", "path", "status")} for e in trail]


# the parser of /rrd_updates answers ------------------------------------------------------------

UUID = "6a1e8fc4-0d6b-4f55-9c2e-2b0a9a1f3c11"
XML = (b'<?xml version="1.0" encoding="UTF-8"?>\n<xport><meta><start>1000</start><step>5</step><end>1010</end>'
       b'<rows>3</rows><columns>2</columns><legend><entry>AVERAGE:vm:' + UUID.encode() + b':cpu0</entry>'
       b'<entry>AVERAGE:host:' + UUID.encode() + b':memory_total_kib</entry></legend></meta><data>'
       b'<row><t>1010</t><v>0.25</v><v>1024.0</v></row><row><t>1005</t><v>NaN</v><v>1024.0</v></row>'
       b'<row><t>1000</t><v>0.5</v><v>Infinity</v></row></data></xport>')


def test_the_parser_reads_xml_and_json_alike():
    parsed = rrd.parse(XML)
    assert (parsed.start, parsed.step, parsed.end) == (1000, 5, 1010)
    assert parsed.times == (1000, 1005, 1010)  # oldest first
    assert parsed.legend[0] == rrd.Column("AVERAGE", "vm", UUID, "cpu0")
    cpu = parsed.owned_by("vm", UUID)
    assert cpu[0][0] == "cpu0" and cpu[0][1][0] == 0.5 and math.isnan(cpu[0][1][1]) and cpu[0][1][2] == 0.25
    assert parsed.owned_by("host", UUID)[0][1][0] == math.inf
    assert parsed.owned_by("vm", UUID, cf="MAX") == [] and parsed.owned_by("vm", "other") == []
    strings = {"meta": {"start": "1000", "step": "5", "end": "1010", "rows": "3", "columns": "2",
                        "legend": [e.text for e in ElementTree.fromstring(XML).iter("entry")]},
               "data": [{"t": "1010", "values": ["0.25", "1024.0"]}, {"t": "1005", "values": ["NaN", "1024.0"]},
                        {"t": "1000", "values": ["0.5", "Infinity"]}]}
    as_json = rrd.parse(json.dumps(strings).encode())
    assert as_json.times == parsed.times and as_json.legend == parsed.legend
    assert [v for v in as_json.columns[0] if v == v] == [0.5, 0.25]
    numbers = dict(strings, data=[{"t": 1010, "values": [0.25, 1024]}, {"t": 1005, "values": [float("nan"), 1024]},
                                  {"t": 1000, "values": [0.5, float("inf")]}])
    assert rrd.parse(json.dumps(numbers).encode()).columns[1] == (math.inf, 1024.0, 1024.0)
    colons = rrd.Column.parse("AVERAGE:host:" + UUID + ":statefile/abc/latency")
    assert colons.uuid == UUID and colons.name == "statefile/abc/latency"


@pytest.mark.parametrize("body", [
    b"", b"garbage", b"<xport><meta>", b"<html><body>500</body></html>", b"{}", b'{"meta": {}, "data": []}',
    b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xport><meta><start>&a;</start></meta><data/></xport>',
    XML.replace(b"<v>0.25</v>", b""),  # a row short of a value
    XML.replace(b"<v>0.25</v>", b"<v>lots</v>"),
    XML.replace(b"<t>1010</t>", b"<t>NaN</t>"),
    XML.replace(b"AVERAGE:vm:" + UUID.encode() + b":cpu0", b"cpu0"),
])
def test_the_parser_refuses_what_is_not_an_answer(body):
    with pytest.raises(rrd.RrdError):
        rrd.parse(body)


def test_the_request_parameters():
    assert rrd.query(1000.7, 60, host=True, vm_uuid="none") == {
        "start": "1000", "cf": "AVERAGE", "interval": "60", "host": "true", "vm_uuid": "none"}
    assert rrd.query(5, 5, vm_uuid=UUID) == {"start": "5", "cf": "AVERAGE", "interval": "5", "vm_uuid": UUID}


def test_xen_orchestra_s_keys_and_units():
    nan = float("nan")
    assert stats("vm", [("cpu0", [0.25, nan]), ("cpu1", [0.5, 1.0]), ("memory", [2048.0, 2048.0]),
                        ("memory_internal_free", [1.5, 2.0]), ("vbd_xvdb_read_latency", [1500.0, 3.0]),
                        ("vbd_xvda_io_throughput_total", [1.0, 0.5]), ("vif_0_rx_errors", [0.0, 1.0]),
                        ("vbd_hda_read", [1.0, 1.0]), ("runstate_blocked", [0.1, math.inf])]) == {
        "cpus": {"0": [25, None], "1": [50, 100]}, "memory": [2048, 2048], "memoryFree": [1536, 2048],
        "vbdLatency": {"r": {"b": [1.5, 0.003]}}, "ioThroughput": {"total": {"a": [1048576, 524288]}},
        "vifErrors": {"rx": {"0": [0, 1]}}, "runstateBlocked": [10, None]}
    assert place("host", "latency_0a1b2c3d") == (("latency", "total", "0a1b2c3d"), 1e-3)
    assert place("host", "read_latency_0a1b2c3d") == (("latency", "r", "0a1b2c3d"), 1e-3)
    assert place("host", "cpu_avg") is None and place("host", "pif_eth1_tx") == (("pifs", "tx", "1"), 1.0)
    assert place("vm", "memory_target") == (("memoryTarget",), 1.0)
    schema = stats_schema("host")
    assert schema["properties"]["cpus"]["additionalProperties"]["type"] == "array"
    assert schema["properties"]["pifs"]["properties"]["rx"]["additionalProperties"]["items"] == {
        "type": ["number", "null"]}


def test_granularities():
    assert [step_of(g) for g in (None, "seconds", "minutes", "hours", "days")] == [5, 5, 60, 3600, 86400]
    for bad in ("", "Seconds", "weeks", "5"):
        if bad == "":
            assert step_of(bad) == 5  # an empty value is no value
            continue
        with pytest.raises(Unprocessable):
            step_of(bad)
