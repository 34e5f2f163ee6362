"""``/rrd_updates``, ``/host_rrd`` and ``/vm_rrd`` of the simulator, read over HTTP as Xen
Orchestra and perfmon read XAPI's: layout, archives, data source names, parameters, values
that follow the VMs' power states, and the host that serves each object."""
import math
import re
import time
import xml.etree.ElementTree as ElementTree

import pytest
import requests

from .test_sim import JsonRpc

SLAVES = ("--slave", "127.0.0.2", "--slave", "127.0.0.3")
ARCHIVES = {5: 120, 60: 120, 3600: 168, 86400: 366}


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    from .conftest import start_sim

    sim = start_sim(tmp_path_factory.mktemp("rrd"), "--vms", "24", "--seed", "5", *SLAVES)
    yield sim, JsonRpc(sim.url)
    sim.stop()


def updates(url, session, json=True, **params):
    params.setdefault("start", int(time.time()) - 590)  # inside the 10-minute archive, as XO asks (one step less)
    params = {"session_id": session, **params}
    if json:
        params["json"] = "true"
    response = requests.get(url + "/rrd_updates", params=params, timeout=60,
                            headers={} if json else {"Accept": "text/xml"})
    assert response.status_code == 200, response.status_code
    return response.json() if json else response


def columns(doc):
    """``{legend entry: [values, newest first]}`` of a JSON export."""
    legend = doc["meta"]["legend"]
    return {name: [float(row["values"][i]) for row in doc["data"]] for i, name in enumerate(legend)}


def by_owner(doc):
    owners = {}
    for name in doc["meta"]["legend"]:
        cf, kind, uuid, ds = re.match(r"^([A-Z]+):([^:]+):(.+):(.+)$", name).groups()
        owners.setdefault((kind, uuid), set()).add(ds)
    return owners


def host_of(rpc, address):
    return next(h for h in rpc("host.get_all_records").values() if h["address"] == address)


def test_requests_need_a_session_and_a_start(pool):
    sim, rpc = pool
    assert requests.get(sim.url + "/rrd_updates?start=0", timeout=10).status_code == 401
    assert requests.get(sim.url + "/rrd_updates?start=0&session_id=OpaqueRef:bogus", timeout=10).status_code == 401
    missing = requests.get(f"{sim.url}/rrd_updates?session_id={rpc.session}&host=true", timeout=10)
    assert missing.status_code == 400 and missing.headers["Connection"] == "close"
    assert requests.get(f"{sim.url}/vm_rrd?session_id={rpc.session}", timeout=10).status_code == 400
    basic = requests.get(sim.url + "/host_rrd", auth=("root", "password"), timeout=30)
    assert basic.status_code == 200


def test_xml_layout(pool):
    sim, rpc = pool
    response = updates(sim.url, rpc.session, json=False, host="true", cf="AVERAGE", interval=5)
    assert response.headers["content-type"] == "text/xml" and response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<xport><meta><start>')
    root = ElementTree.fromstring(response.content)
    meta = root.find("meta")
    legend = [e.text for e in meta.find("legend")]
    rows = root.find("data").findall("row")
    assert int(meta.findtext("rows")) == len(rows) and int(meta.findtext("columns")) == len(legend)
    assert int(meta.findtext("step")) == 5
    times = [int(r.findtext("t")) for r in rows]
    assert times[0] == int(meta.findtext("end")) and times == sorted(times, reverse=True)
    assert all(a - b == 5 for a, b in zip(times, times[1:]))
    assert all(len(r.findall("v")) == len(legend) for r in rows)
    assert int(meta.findtext("start")) <= times[-1] + 5


def test_json_layout_and_content_negotiation(pool):
    sim, rpc = pool
    doc = updates(sim.url, rpc.session, host="true")
    meta = doc["meta"]
    assert all(isinstance(meta[k], str) for k in ("start", "step", "end", "rows", "columns"))  # strings since 23.31
    assert int(meta["rows"]) == len(doc["data"]) and int(meta["columns"]) == len(meta["legend"])
    assert all(isinstance(v, str) for v in doc["data"][0]["values"]) and isinstance(doc["data"][0]["t"], str)
    base = f"{sim.url}/rrd_updates?session_id={rpc.session}&start={int(time.time()) - 60}&host=true"
    # as rrdd does: the Accept header decides when it states a preference, else a json key in the query
    assert requests.get(base, headers={"Accept": "text/xml"}, timeout=30).text.startswith("<?xml")
    assert requests.get(base + "&json=false", headers={"Accept": "text/xml"}, timeout=30).text.startswith("<?xml")
    assert requests.get(base, headers={"Accept": "application/json"}, timeout=30).text.startswith("{")
    assert requests.get(base, headers={"Accept": "*/*"}, timeout=30).text.startswith("{")


@pytest.mark.parametrize("step", sorted(ARCHIVES))
def test_four_archives_with_xapi_s_steps_and_rows(pool, step):
    sim, rpc = pool
    rows = ARCHIVES[step]
    now = int(time.time())
    doc = updates(sim.url, rpc.session, host="true", cf="AVERAGE", interval=step, start=now - rows * step + step)
    assert int(doc["meta"]["step"]) == step
    assert rows - 1 <= len(doc["data"]) <= rows
    assert int(doc["meta"]["end"]) % step == 0 and int(doc["meta"]["end"]) > now - 2 * step


def test_archive_is_chosen_by_start_as_rrdd_does(pool):
    sim, rpc = pool
    now = int(time.time())
    assert updates(sim.url, rpc.session, host="true", start=now - 300)["meta"]["step"] == "5"
    assert updates(sim.url, rpc.session, host="true", start=now - 3600)["meta"]["step"] == "60"  # not in 10 min
    assert updates(sim.url, rpc.session, host="true", start=now - 3 * 86400)["meta"]["step"] == "3600"
    assert updates(sim.url, rpc.session, host="true", start=now - 30 * 86400)["meta"]["step"] == "86400"
    relative = updates(sim.url, rpc.session, host="true", start=-60)
    assert 11 <= len(relative["data"]) <= 13
    # no MIN archives unless the pool asks for them
    url = f"{sim.url}/rrd_updates?session_id={rpc.session}&start={now - 60}&host=true&cf=MIN&interval=60"
    assert requests.get(url, timeout=30).status_code == 500


def test_host_and_vm_data_sources_are_named_as_xapi_names_them(pool):
    sim, rpc = pool
    master = host_of(rpc, "127.0.0.1")
    doc = updates(sim.url, rpc.session, host="true")
    owners = by_owner(doc)
    host_dss = owners[("host", master["uuid"])]
    for name in ["cpu0", "cpu15", "cpu_avg", "loadavg", "hostload", "memory_total_kib", "memory_free_kib",
                 "pif_eth0_rx", "pif_eth0_tx", "pif_bond0_rx", "pif_aggr_tx", "xapi_memory_usage_kib",
                 "xapi_open_fds", "pool_task_count", "running_vcpus", "running_domains"]:
        assert name in host_dss, name
    srs = {sr["uuid"][:8] for sr in rpc("SR.get_all_records").values() if sr["content_type"] == "user"}
    assert {f"iops_read_{s}" for s in srs} & host_dss and {f"latency_{s}" for s in srs} & host_dss
    assert not any(n.startswith("pif_bond0.") or "xenbr" in n for n in host_dss)  # VLANs and bridges are not PIFs
    vms = rpc("VM.get_all_records")
    resident = {v["uuid"] for v in vms.values() if v["resident_on"] == next(
        r for r, h in rpc("host.get_all_records").items() if h["uuid"] == master["uuid"])
        and v["power_state"] in ("Running", "Paused")}
    assert {uuid for kind, uuid in owners if kind == "vm"} == resident  # only the VMs running here
    running = next(v for v in vms.values() if v["uuid"] in resident and v["power_state"] == "Running"
                   and not v["is_control_domain"] and v["guest_metrics"] != "OpaqueRef:NULL")
    vm_dss = owners[("vm", running["uuid"])]
    for name in ["cpu0", "cpu_usage", "memory", "memory_target", "memory_internal_free", "vif_0_rx", "vif_0_tx",
                 "vbd_xvda_read", "vbd_xvda_write", "vbd_xvda_iops_read", "vbd_xvda_iops_write",
                 "vbd_xvda_iops_total", "vbd_xvda_read_latency", "vbd_xvda_write_latency", "vbd_xvda_latency",
                 "vbd_xvda_io_throughput_total", "vbd_xvda_iowait", "vbd_xvda_inflight", "vbd_xvda_avgqu_sz"]:
        assert name in vm_dss, name
    assert f"cpu{running['VCPUs_at_startup'] - 1}" in vm_dss and f"cpu{running['VCPUs_at_startup']}" not in vm_dss
    assert not any(n.startswith("runstate") for n in vm_dss)  # not recorded by default


def test_host_vm_uuid_and_interval_parameters(pool):
    sim, rpc = pool
    doc = updates(sim.url, rpc.session)  # host defaults to none
    assert not any(kind == "host" for kind, _ in by_owner(doc))
    vm = next(uuid for kind, uuid in by_owner(doc) if kind == "vm")
    only = updates(sim.url, rpc.session, host="true", vm_uuid=vm)
    assert {u for k, u in by_owner(only) if k == "vm"} == {vm}
    assert updates(sim.url, rpc.session, host="false", vm_uuid=vm, interval=60)["meta"]["step"] == "60"


def test_each_host_serves_its_own_rrds(pool):
    sim, rpc = pool
    hosts = rpc("host.get_all_records")
    vms = rpc("VM.get_all_records")
    for ref, host in hosts.items():
        url = f"http://{host['address']}:{sim.port}"
        owners = by_owner(updates(url, rpc.session, host="true"))
        assert {u for k, u in owners if k == "host"} == {host["uuid"]}
        assert {u for k, u in owners if k == "vm"} == {v["uuid"] for v in vms.values() if v["resident_on"] == ref
                                                       and v["power_state"] in ("Running", "Paused")}
    # /vm_rrd: from the host running the VM; another host redirects there
    elsewhere = next(v for v in vms.values() if v["power_state"] == "Running" and not v["is_control_domain"]
                     and hosts[v["resident_on"]]["address"] == "127.0.0.2")
    moved = requests.get(f"{sim.url}/vm_rrd?session_id={rpc.session}&uuid={elsewhere['uuid']}", allow_redirects=False,
                         timeout=30)
    assert moved.status_code == 302 and moved.headers["Location"].startswith(f"http://127.0.0.2:{sim.port}/vm_rrd?")
    followed = requests.get(f"{sim.url}/vm_rrd?session_id={rpc.session}&uuid={elsewhere['uuid']}", timeout=30,
                            headers={"Accept": "text/xml"})
    assert followed.status_code == 200 and followed.headers["Connection"] == "close"
    root = ElementTree.fromstring(followed.content)
    assert root.findtext("version") == "0003" and root.findtext("step") == "5"
    rras = root.findall("rra")
    assert [(r.findtext("cf"), int(r.findtext("pdp_per_row")), len(r.find("database"))) for r in rras] == [
        ("AVERAGE", 1, 120), ("AVERAGE", 12, 120), ("AVERAGE", 720, 168), ("AVERAGE", 17280, 366)]
    names = [d.findtext("name") for d in root.findall("ds")]
    assert "cpu_usage" in names and all(len(row) == len(names) for r in rras for row in r.find("database"))
    never = next(v for v in vms.values() if v["power_state"] == "Halted" and not v["is_a_template"]
                 and rpc("VM_metrics.get_start_time", v["metrics"]).startswith("1970"))
    assert requests.get(f"{sim.url}/vm_rrd?session_id={rpc.session}&uuid={never['uuid']}",
                        timeout=30).status_code == 404  # it never ran: no RRD anywhere
    host = requests.get(f"http://127.0.0.3:{sim.port}/host_rrd?session_id={rpc.session}&json=true", timeout=30).json()
    assert host["version"] == "0003" and [r["pdp_per_row"] for r in host["rra"]] == ["1", "12", "720", "17280"]


def test_values_are_plausible(pool):
    sim, rpc = pool
    master_ref, master = next((r, h) for r, h in rpc("host.get_all_records").items() if h["address"] == "127.0.0.1")
    metrics = rpc("host_metrics.get_record", master["metrics"])
    cols = columns(updates(sim.url, rpc.session, host="true"))
    prefix = f"AVERAGE:host:{master['uuid']}:"
    assert cols[prefix + "memory_total_kib"][0] == metrics["memory_total"] / 1024
    assert abs(cols[prefix + "memory_free_kib"][0] - metrics["memory_free"] / 1024) < metrics["memory_total"] / 1024 / 50
    cpu = cols[prefix + "cpu_avg"]
    assert all(0 <= v <= 1 for v in cpu) and len(set(cpu)) > 10  # it moves
    for name, values in cols.items():
        if not name.startswith("AVERAGE:vm:"):
            continue
        if name.endswith((":cpu0", ":cpu_usage")):
            assert all(math.isnan(v) or 0 <= v <= 1 for v in values)
        if name.endswith(":memory"):
            uuid = name.split(":")[2]
            vm = rpc("VM.get_by_uuid", uuid)
            assert values[0] == rpc("VM_metrics.get_memory_actual", rpc("VM.get_metrics", vm))
        if name.endswith("_rx") or name.endswith("_read"):
            assert all(math.isnan(v) or v >= 0 for v in values)


def test_values_follow_the_vm_s_power_state(processes):
    sim = processes.sim("--vms", "10", "--seed", "12", "--hosts", "1")
    rpc = JsonRpc(sim.url)
    vms = rpc("VM.get_all_records")
    halted = next(r for r, v in vms.items() if v["power_state"] == "Halted" and not v["is_a_template"])
    uuid = vms[halted]["uuid"]
    before = by_owner(updates(sim.url, rpc.session, host="true"))
    assert ("vm", uuid) not in before  # a halted VM has no RRD on any host
    rpc("VM.start", halted, False, False)
    time.sleep(11)  # two 5-second steps: the newest consolidated point is all after the start
    doc = updates(sim.url, rpc.session, host="true", start=int(time.time()) - 120)
    usage = columns(doc)[f"AVERAGE:vm:{uuid}:cpu_usage"]
    assert not math.isnan(usage[0]) and math.isnan(usage[-1])  # data since it started, none before
    rpc("VM.pause", halted)
    time.sleep(11)
    doc = updates(sim.url, rpc.session, host="true", start=int(time.time()) - 10)
    cols = columns(doc)
    assert cols[f"AVERAGE:vm:{uuid}:cpu_usage"][0] == 0.0  # a paused domain does not run
    rpc("VM.unpause", halted)
    rpc("VM.hard_shutdown", halted)
    assert ("vm", uuid) not in by_owner(updates(sim.url, rpc.session, host="true"))
    # the master keeps the RRD of a VM that stopped
    archived = requests.get(f"{sim.url}/vm_rrd?session_id={rpc.session}&uuid={uuid}&json=true", timeout=30)
    assert archived.status_code == 200 and archived.json()["ds"]


def test_same_seed_same_values(processes):
    first = processes.sim("--vms", "6", "--seed", "33", "--hosts", "1")
    second = processes.sim("--vms", "6", "--seed", "33", "--hosts", "1")
    start = int(time.time()) - 3 * 86400
    a = updates(first.url, JsonRpc(first.url).session, host="true", start=start, interval=3600)
    b = updates(second.url, JsonRpc(second.url).session, host="true", start=start, interval=3600)
    ta, tb = {row["t"]: row["values"] for row in a["data"]}, {row["t"]: row["values"] for row in b["data"]}
    common = sorted(set(ta) & set(tb))[:-1]  # the newest hour may straddle the two builds
    assert len(common) > 40 and a["meta"]["legend"] == b["meta"]["legend"]
    assert all(ta[t] == tb[t] for t in common)
    other = processes.sim("--vms", "6", "--seed", "34", "--hosts", "1")
    c = updates(other.url, JsonRpc(other.url).session, host="true", start=start, interval=3600)
    assert [r["values"] for r in c["data"][1:5]] != [r["values"] for r in a["data"][1:5]]


def test_data_source_calls(pool):
    sim, rpc = pool
    vms = rpc("VM.get_all_records")
    master = next(r for r, h in rpc("host.get_all_records").items() if h["address"] == "127.0.0.1")
    vm = next(r for r, v in vms.items() if v["power_state"] == "Running" and v["resident_on"] == master
              and not v["is_control_domain"])
    sources = {d["name_label"]: d for d in rpc("VM.get_data_sources", vm)}
    assert sources["cpu_usage"]["enabled"] and sources["cpu_usage"]["standard"]
    assert not sources["runstate_fullrun"]["enabled"] and sources["cpu0"]["units"] == "(fraction)"
    rpc("VM.record_data_source", vm, "runstate_fullrun")
    assert "runstate_fullrun" in by_owner(updates(sim.url, rpc.session, vm_uuid=vms[vm]["uuid"]))[("vm", vms[vm]["uuid"])]
    rpc("VM.forget_data_source_archives", vm, "cpu_usage")
    assert "cpu_usage" not in by_owner(updates(sim.url, rpc.session, vm_uuid=vms[vm]["uuid"]))[("vm", vms[vm]["uuid"])]
    assert not {d["name_label"]: d for d in rpc("VM.get_data_sources", vm)}["cpu_usage"]["enabled"]
    rpc("VM.record_data_source", vm, "cpu_usage")
    assert 0 <= rpc("VM.query_data_source", vm, "cpu0") <= 1
    with pytest.raises(Exception, match="Datasource_missing"):
        rpc("VM.record_data_source", vm, "no_such_source")
    halted = next(r for r, v in vms.items() if v["power_state"] == "Halted" and not v["is_a_template"])
    assert rpc("VM.get_data_sources", halted) == []
    with pytest.raises(Exception, match="VM_BAD_POWER_STATE"):
        rpc("VM.query_data_source", halted, "cpu0")
    host_sources = {d["name_label"] for d in rpc("host.get_data_sources", master)}
    assert {"cpu_avg", "memory_free_kib", "pif_eth0_rx_errors"} <= host_sources
    assert rpc("host.query_data_source", master, "memory_total_kib") > 0
    assert rpc("host.get_servertime", master).endswith("Z")


def test_min_and_max_archives_when_the_pool_asks(processes):
    sim = processes.sim("--vms", "4", "--seed", "2", "--hosts", "1")
    rpc = JsonRpc(sim.url)
    pool_ref = rpc("pool.get_all")[0]
    rpc("pool.add_to_other_config", pool_ref, "create_min_max_in_new_VM_RRDs", "true")
    doc = updates(sim.url, rpc.session, host="true", interval=60, start=int(time.time()) - 600)
    kinds = {name.split(":")[0] for name in doc["meta"]["legend"]}
    assert kinds == {"AVERAGE", "MIN", "MAX"}
    assert {n.split(":")[0] for n in updates(sim.url, rpc.session, host="true", cf="MAX", interval=60)["meta"]["legend"]} == {"MAX"}


STATS = {"host": {"load": "loadavg", "memoryFree": "memory_free_kib", "memory": "memory_total_kib",
                  "cpus": r"^cpu(\d+)$", "pifs.rx": r"^pif_eth(\d+)_rx$", "iops.r": r"^iops_read_(\w+)$",
                  "latency.total": r"^latency_(\w+)$"},
         "vm": {"memoryFree": "memory_internal_free", "cpus": r"^cpu(\d+)$", "vifs.rx": r"^vif_(\d+)_rx$",
                "xvds.r": r"^vbd_xvd(.)_read$", "iops.total": r"^vbd_xvd(.)_iops_total$",
                "vbdLatency.r": r"^vbd_xvd(.)_read_latency$", "vbdAvgLatency": r"^vbd_xvd(.)_latency$"}}


def test_xen_orchestra_finds_its_stats(pool):
    """The legend read the way xo-server's xapi-stats reads it: every metric it shows has a source."""
    sim, rpc = pool
    doc = updates(sim.url, rpc.session, host="true", cf="AVERAGE", interval=60,
                  start=int(time.time()) - 120 * 60 + 60)
    found = {}
    for name in doc["meta"]["legend"]:
        match = re.match(r"^AVERAGE:([^:]+):(.+):(.+)$", name)
        kind, _uuid, metric = match.groups()
        for key, test in STATS.get(kind, {}).items():
            if metric == test or (test.startswith("^") and re.match(test, metric)):
                found.setdefault(kind, set()).add(key)
    assert found["host"] == set(STATS["host"]) and found["vm"] == set(STATS["vm"])
