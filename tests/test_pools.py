"""Pool connections against simulators over HTTP: load, churn, restart, failover, TLS, auth."""
import time

import pytest
import requests

from xorest import config as config_module
from xorest.cache import ObjectCache
from xorest.services.pools import PoolService
from xorest.store.sqlite import SqliteStore

from .conftest import sim_admin, start_sim
from .test_sim import JsonRpc


def vm_state(sim_url):
    """``{uuid: (name_label, power_state)}`` of the user VMs, read straight from XAPI."""
    rpc = JsonRpc(sim_url)
    records = rpc("VM.get_all_records")
    return {r["uuid"]: (r["name_label"], r["power_state"]) for r in records.values()
            if not (r["is_a_template"] or r["is_control_domain"] or r["is_a_snapshot"])}


def cache_state(cache):
    return {key: (o["name_label"], o["power_state"]) for key, o in cache.snapshot().collection("vms").items()}


@pytest.fixture
def pools(tmp_path):
    config = config_module.load({"data_dir": str(tmp_path), "event_timeout": 2,
                                 "reconnect_max_delay": 1}, environ={})
    store = SqliteStore(config.database_path)
    service = PoolService(store, ObjectCache(), config)
    service.RECONCILE_SECONDS = 0.3
    yield service
    service.stop()


def converge(cache, expected, timeout=20):
    return cache.wait_for(lambda snap: cache_state(cache) == expected(), timeout)


def test_first_load_equals_simulator_for_every_type(sim, pools):
    pools.store.add_server(sim.url, "root", "password", None, False, "sim")
    pools.ensure_started()
    assert pools.wait_synced(30)
    snap = pools.cache.snapshot()
    rpc = JsonRpc(sim.url)
    for cls, collections in (("host", ["hosts"]), ("SR", ["srs"]), ("network", ["networks"]), ("VBD", ["vbds"]),
                             ("VIF", ["vifs"]), ("PIF", ["pifs"]), ("pool", ["pools"]),
                             ("message", ["messages", "alarms"])):  # ALARM messages are alarms
        uuids = {r["uuid"] for r in rpc(f"{cls}.get_all_records").values()}
        assert {key for name in collections for key in snap.collection(name)} == uuids, cls
    vms = rpc("VM.get_all_records")
    kinds = {"vms": set(), "vm-snapshots": set(), "vm-templates": set(), "vm-controllers": set()}
    pool_uuid = next(iter(rpc("pool.get_all_records").values()))["uuid"]
    for record in vms.values():
        if record["is_control_domain"]:
            kinds["vm-controllers"].add(record["uuid"])
        elif record["is_a_snapshot"]:
            kinds["vm-snapshots"].add(record["uuid"])
        elif record["is_a_template"]:
            default = record["is_default_template"]
            kinds["vm-templates"].add(f"{pool_uuid}-{record['uuid']}" if default else record["uuid"])
        else:
            kinds["vms"].add(record["uuid"])
    for collection, ids in kinds.items():
        assert set(snap.collection(collection)) == ids, collection
    vdis = rpc("VDI.get_all_records").values()
    assert set(snap.collection("vdis")) == {v["uuid"] for v in vdis if not v["is_a_snapshot"]}
    assert set(snap.collection("vdi-snapshots")) == {v["uuid"] for v in vdis if v["is_a_snapshot"]}
    assert cache_state(pools.cache) == vm_state(sim.url)
    vm = next(o for o in snap.collection("vms").values() if o["power_state"] == "Running")
    assert vm["$pool"] == pool_uuid and vm["mainIpAddress"] and vm["CPUs"]["number"] >= 1
    assert all(snap.collection("vbds")[v]["VM"] == vm["id"] for v in vm["$VBDs"])


def test_churn_converges_and_changes_are_seen(processes, pools):
    sim = processes.sim("--vms", "30", "--churn", "100")
    pools.store.add_server(sim.url, "root", "password", None, False, "sim")
    pools.ensure_started()
    assert pools.wait_synced(30)
    time.sleep(2)
    sim_admin(sim.url, "churn", {"rate": 0})
    assert converge(pools.cache, lambda: vm_state(sim.url))
    rpc = JsonRpc(sim.url)
    vm_ref = next(r for r, v in rpc("VM.get_all_records").items() if v["power_state"] == "Halted"
                  and not v["is_a_template"])
    rpc("VM.set_name_label", vm_ref, "renamed-by-test")
    uuid = rpc("VM.get_uuid", vm_ref)
    assert pools.cache.wait_for(
        lambda snap: snap.collection("vms").get(uuid, {}).get("name_label") == "renamed-by-test", 10)


def test_metrics_only_changes_reach_their_vm(processes, pools):
    """The balloon driver and the guest agent change only VM_metrics / VM_guest_metrics
    records; the VM objects built from them must follow."""
    sim = processes.sim("--vms", "12", "--seed", "8")
    pools.store.add_server(sim.url, "root", "password", None, False, "sim")
    pools.ensure_started()
    assert pools.wait_synced(30)
    rpc = JsonRpc(sim.url)
    records = rpc("VM.get_all_records")
    running = [v for v in records.values() if v["power_state"] == "Running" and not v["is_control_domain"]]
    with_guest = next(v for v in running if v["guest_metrics"] != "OpaqueRef:NULL")
    vms = lambda: pools.cache.snapshot().collection("vms")

    before = rpc("event.from", ["vm"], "", 0.0)["token"]
    sim_admin(sim.url, "guest", {"vm": with_guest["uuid"], "memory_actual": 123 * 2**20})
    changed = rpc("event.from", ["vm", "vm_metrics"], before, 0.0)["events"]
    assert {e["class"] for e in changed} == {"vm_metrics"}  # nothing on the VM itself
    assert pools.cache.wait_for(lambda snap: vms()[with_guest["uuid"]]["memory"]["size"] == 123 * 2**20, 10)

    sim_admin(sim.url, "guest", {"vm": with_guest["uuid"], "networks": {"0/ip": "192.0.2.10"}})
    assert pools.cache.wait_for(lambda snap: vms()[with_guest["uuid"]]["mainIpAddress"] == "192.0.2.10", 10)

    # a VM's metrics changed right after the VM itself in the same batch, and a second VM's
    sim_admin(sim.url, "guest", {"vm": running[-1]["uuid"], "memory_actual": 77 * 2**20,
                                 "networks": {"0/ip": "192.0.2.77"}})
    assert pools.cache.wait_for(lambda snap: vms()[running[-1]["uuid"]]["memory"]["size"] == 77 * 2**20
                                and vms()[running[-1]["uuid"]]["mainIpAddress"] == "192.0.2.77", 10)


def test_restart_resyncs_without_ghosts(tmp_path, pools):
    first = start_sim(tmp_path, "--vms", "12", "--seed", "5", name="a")
    port = first.port
    try:
        pools.store.add_server(first.url, "root", "password", None, False, "sim")
        pools.ensure_started()
        assert pools.wait_synced(30)
        old = set(cache_state(pools.cache))
    finally:
        first.stop()
    conn = pools.connections()[0]
    deadline = time.monotonic() + 20
    while conn.status()["status"] == "connected" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert conn.status()["status"] == "disconnected" and conn.status()["error"]
    assert set(cache_state(pools.cache)) == old  # still serving from the cache meanwhile
    second = start_sim(tmp_path, "--vms", "7", "--seed", "9", port=port, name="b")
    try:
        assert converge(pools.cache, lambda: vm_state(second.url), 30)
        assert not old & set(cache_state(pools.cache))
        assert conn.status()["status"] == "connected"
    finally:
        second.stop()


def test_follows_host_is_slave(processes, pools):
    sim = processes.sim("--vms", "4", "--slave", "127.0.0.2")
    pools.store.add_server(f"http://127.0.0.2:{sim.port}", "root", "password", None, False, "slave")
    pools.ensure_started()
    assert pools.wait_synced(30)
    assert cache_state(pools.cache) == vm_state(sim.url)
    assert pools.connections()[0].rpc.url.startswith("http://127.0.0.")


def test_tls_verified_with_ca_and_refused_without(processes, pools):
    sim = processes.sim("--vms", "3", "--tls")
    ca_path = sim.output().split("CA certificate: ")[1].split()[0]
    pools.store.add_server(sim.url, "root", "password", None, False, "no-ca")
    pools.ensure_started()
    conn = pools.connections()[0]
    deadline = time.monotonic() + 10
    while not conn.status()["error"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert conn.status()["status"] == "disconnected" and "TLS" in conn.status()["error"]
    pools.store.remove_server(conn.key)
    pools.store.add_server(sim.url, "root", "password", ca_path, False, "with-ca")
    pools.reconcile()
    assert pools.wait_synced(30)
    assert cache_state(pools.cache) == {k: v for k, v in _tls_state(sim.url, ca_path).items()}


def test_redirected_transfer_is_verified_over_tls(processes):
    """A pool sends an export of a member's local disk to that member: the stream follows,
    with the same CA, to the member's address."""
    from xorest.sim.disks import DiskContent
    from xorest.xapi import XapiClient, XapiStream

    from .test_sim import local_disks

    sim = processes.sim("--vms", "20", "--seed", "5", "--tls", "--slave", "127.0.0.2")
    ca_path = sim.output().split("CA certificate: ")[1].split()[0]
    client = XapiClient(sim.url, "root", "password", ca_file=ca_path, members=lambda: {"127.0.0.2"})
    client.login()
    vdi = local_disks(client.call, "127.0.0.2")[0]
    record = client.call("VDI.get_record", vdi)
    stream = XapiStream(client, "/export_raw_vdi", {"vdi": vdi, "format": "raw"}, "redirect test")
    try:
        assert stream.response.url.startswith(f"https://127.0.0.2:{sim.port}/")
        body = b"".join(stream)
    finally:
        stream.close()
    assert body == DiskContent.generate(5, record["uuid"], record["virtual_size"]).read(0, record["virtual_size"])


def _tls_state(url, ca_path):
    def call(method, *params):
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        return requests.post(url + "/jsonrpc", json=body, timeout=10, verify=ca_path).json()["result"]
    ref = call("session.login_with_password", "root", "password")
    return {r["uuid"]: (r["name_label"], r["power_state"]) for r in call("VM.get_all_records", ref).values()
            if not (r["is_a_template"] or r["is_control_domain"] or r["is_a_snapshot"])}


def test_wrong_password_shows_status_and_retries(sim, pools):
    pools.store.add_server(sim.url, "root", "not-the-password", None, False, "bad")
    pools.ensure_started()
    conn = pools.connections()[0]
    deadline = time.monotonic() + 15
    while conn.status()["failedAttempts"] < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    status = conn.status()
    assert status["status"] == "disconnected"
    assert "SESSION_AUTHENTICATION_FAILED" in status["error"] and "not-the-password" not in status["error"]
    assert status["failedAttempts"] >= 3


def test_two_pools_and_live_removal(processes, pools):
    a, b = processes.sim("--vms", "5", "--seed", "11"), processes.sim("--vms", "6", "--seed", "12")
    pools.store.add_server(a.url, "root", "password", None, False, "a")
    pools.ensure_started()
    assert pools.wait_synced(30)
    key_b = pools.store.add_server(b.url, "root", "password", None, False, "b")
    expected = {**vm_state(a.url), **vm_state(b.url)}
    assert converge(pools.cache, lambda: expected)
    assert len(pools.cache.snapshot().collection("pools")) == 2
    pools.store.remove_server(key_b)
    assert converge(pools.cache, lambda: vm_state(a.url))


def test_falls_back_to_xml_rpc_on_old_hosts(processes, pools):
    sim = processes.sim("--vms", "6", "--no-jsonrpc")
    reply = requests.post(sim.url + "/jsonrpc", data="<?xml version='1.0'?><methodCall><methodName>"
                          "system.listMethods</methodName><params></params></methodCall>", timeout=10)
    assert reply.headers["Content-Type"] == "text/xml"  # what an old host does
    pools.store.add_server(sim.url, "root", "password", None, False, "old")
    pools.ensure_started()
    assert pools.wait_synced(30)
    conn = pools.connections()[0]
    assert conn.watcher.client.protocol == "xml"
    assert cache_state(pools.cache) == vm_state_xml(sim.url)
    vm = next(iter(cache_state(pools.cache)))
    ref = conn.rpc.call("VM.get_by_uuid", vm)
    assert conn.rpc.protocol == "xml"
    conn.rpc.call("VM.set_name_label", ref, "via-xml-rpc")
    assert pools.cache.wait_for(lambda s: s.collection("vms")[vm]["name_label"] == "via-xml-rpc", 10)
    memory = pools.cache.snapshot().collection("hosts")
    assert all(isinstance(h["memory"]["size"], int) for h in memory.values())  # ints normalised


def vm_state_xml(url):
    import XenAPI

    session = XenAPI.Session(url)
    session.xenapi.login_with_password("root", "password", "1.0", "t")
    records = session.xenapi.VM.get_all_records()
    return {r["uuid"]: (r["name_label"], r["power_state"]) for r in records.values()
            if not (r["is_a_template"] or r["is_control_domain"] or r["is_a_snapshot"])}
