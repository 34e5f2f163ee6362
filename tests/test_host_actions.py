"""Actions on hosts, pools and servers through gunicorn against the simulator: hosts
disabled, evacuated, rebooted, shut down, started, forgotten, detached; pool networks,
new VMs, rolling reboots, emergency shutdowns, joins; servers disconnected and back."""
import os
import signal
import time

import pytest

from .conftest import Gateway, sim_admin, start_sim
from .management import client, guest, reset_timing, seconds, xapi
from .test_actions import NOWHERE, polled, refused


@pytest.fixture
def pool(tmp_path, processes):
    """A fresh pool (these actions change it deeply) and its gateway: ``(sim, api)``."""
    def make(*args):
        sim = processes.sim(*args) if args else processes.sim("--vms", "8", "--seed", "1")
        gw = processes.add(Gateway(tmp_path, sim.url, name=f"gw{len(args)}-{time.monotonic_ns()}"))
        return sim, client(gw)
    return make


def _evacuable(api, sim):
    """A member (not the master) whose guests can all move elsewhere."""
    rpc = xapi(sim)
    master = api.objects("pools")[0]["master"]
    for host in api.objects("hosts"):
        if host["id"] != master and not rpc("host.get_vms_which_prevent_evacuation", host["_xapiRef"]):
            return host
    raise AssertionError("no evacuable member")


def test_disable_evacuate_enable(pool):
    sim, api = pool()
    host = _evacuable(api, sim)
    assert api.action("hosts", host["id"], "disable").status_code == 204
    assert not api.one("hosts", host["id"])["enabled"]
    assert api.action("hosts", host["id"], "enable").status_code == 204 and api.one("hosts", host["id"])["enabled"]
    task = api.wait(api.action("hosts", host["id"], "disable", {"evacuate": True}, sync=False).json()["taskId"])
    assert task["status"] == "success" and task["properties"]["params"] == {"evacuate": True}
    guests = [v for v in api.objects("vms", "power_state:Running") if v["$container"] == host["id"]]
    assert not guests and not api.one("hosts", host["id"])["enabled"]
    # a host with guests on its local storage cannot be evacuated: it is enabled again
    local = guest(api, "Running", shared=False)
    refused = api.action("hosts", local["$container"], "disable", {"evacuate": True})
    assert refused.status_code == 409 and refused.json()["data"]["code"] == "VM_REQUIRES_SR"
    assert api.one("hosts", local["$container"])["enabled"]
    forced = api.action("hosts", local["$container"], "disable", {"evacuate": True, "force": True})
    assert forced.status_code == 204 and not api.one("hosts", local["$container"])["enabled"]
    assert api.action("hosts", host["id"], "disable", {"force": True}).status_code == 400  # force needs evacuate


def test_reboot_toolstack_and_shutdown_of_a_member(pool):
    sim, api = pool()
    host = _evacuable(api, sim)
    refused = api.action("hosts", host["id"], "clean_shutdown", {"bypassEvacuate": False})
    # clean_shutdown evacuates first, so it works on an enabled host; reboot the same way
    assert refused.status_code == 204, refused.text
    api.until(lambda: api.one("hosts", host["id"])["power_state"] == "Halted", what="the host down")
    start = api.action("hosts", host["id"], "start")
    assert start.status_code == 409 and start.json()["data"]["code"] == "HOST_POWER_ON_MODE_DISABLED"
    xapi(sim)("host.set_power_on_mode", host["_xapiRef"], "IPMI", {"power_on_ip": "10.0.0.1"})
    assert api.action("hosts", host["id"], "start").status_code == 204
    assert api.one("hosts", host["id"])["power_state"] == "Running" and api.one("hosts", host["id"])["enabled"]
    before = api.one("hosts", host["id"])["agentStartTime"]
    time.sleep(1.1)  # agent start times have a one-second resolution
    assert api.action("hosts", host["id"], "restart_toolstack").status_code == 204  # waits for the new agent
    assert api.one("hosts", host["id"])["agentStartTime"] > before
    assert api.action("hosts", host["id"], "clean_reboot").status_code == 204
    api.until(lambda: api.one("hosts", host["id"])["power_state"] == "Halted" or None, what="going down")
    api.until(lambda: api.one("hosts", host["id"])["enabled"] and
              api.one("hosts", host["id"])["power_state"] == "Running", what="back up")
    assert api.action("hosts", host["id"], "scan_pifs").status_code == 204
    forget = api.action("hosts", host["id"], "forget")
    assert forget.status_code == 409 and forget.json()["data"]["property"] == "power_state"


def test_emergency_shutdown_and_forget(pool):
    sim, api = pool()
    host = _evacuable(api, sim)
    running = [v["id"] for v in api.objects("vms", "power_state:Running") if v["$container"] == host["id"]]
    assert api.action("hosts", host["id"], "emergency_shutdown").status_code == 204
    for vm in running:
        assert api.one("vms", vm)["power_state"] == "Suspended"
    api.until(lambda: api.one("hosts", host["id"])["power_state"] == "Halted", what="the host down")
    assert api.action("hosts", host["id"], "scan_pifs").status_code == 409
    assert api.action("hosts", host["id"], "forget").status_code == 204
    assert api.get(f"/rest/v0/hosts/{host['id']}").status_code == 404


def test_smart_reboot_suspends_and_resumes(pool):
    sim, api = pool()
    host = _evacuable(api, sim)
    guests = [v["id"] for v in api.objects("vms", "power_state:Running") if v["$container"] == host["id"]]
    task = api.wait(api.action("hosts", host["id"], "smart_reboot", sync=False).json()["taskId"])
    assert task["status"] == "success", (task.get("result"), task.get("warnings"))
    methods = [x["method"] for x in task["properties"]["xapiTasks"]]
    assert methods[0] == "host.disable" and "host.reboot" in methods
    assert methods.count("VM.suspend") == len(guests) == methods.count("VM.resume")
    assert all(api.one("vms", vm)["power_state"] == "Running" for vm in guests)
    assert api.one("hosts", host["id"])["enabled"]


def test_management_reconfigure_and_detach(pool):
    sim, api = pool()
    host = _evacuable(api, sim)
    pifs = [api.one("pifs", p) for p in host["PIFs"]]
    # an interface with an address of its own (a storage VLAN, say): management can move there
    storage = next(p for p in pifs if not p["management"] and not p["isBondSlave"] and p.get("mode") != "None")
    other = next(p for p in api.objects("pifs") if p["$host"] != host["id"])
    assert api.action("hosts", host["id"], "management_reconfigure", {"pif": other["id"]}).status_code == 422
    assert api.action("hosts", host["id"], "management_reconfigure", {"pif": storage["id"]}).status_code == 204
    assert api.one("pifs", storage["id"])["management"]
    pool_obj = api.objects("pools")[0]
    network = api.one("networks", storage["$network"])
    assert api.action("pools", pool_obj["id"], "management_reconfigure", {"network": network["id"]}).status_code == 204
    assert all(api.one("pifs", p)["management"] for p in network["PIFs"])
    api.ok("hosts", host["id"], "disable", {"evacuate": True})
    detached = api.wait(api.action("hosts", host["id"], "detach", sync=False).json()["taskId"])
    assert detached["status"] == "success" and f"//{host['address']}:" in detached["infos"][0]["data"]["url"]
    assert api.get(f"/rest/v0/hosts/{host['id']}").status_code == 404
    assert len(api.objects("servers")) == 2  # the ejected host, registered as a server of its own


def test_networks_of_a_pool(pool):
    sim, api = pool()
    pool_id = api.objects("pools")[0]["id"]
    # eth3: a NIC of no bond (the pool's own bond0 holds eth1 and eth2)
    eth3 = next(p for p in api.objects("pifs") if p["device"] == "eth3")
    created = api.action("pools", pool_id, "create_network",
                         {"name": "vlan 42", "pif": eth3["id"], "vlan": 42, "mtu": 1500, "nbd": True})
    assert created.status_code == 201 and created.headers["Location"] == f"/rest/v0/networks/{created.json()['id']}"
    network = api.one("networks", created.json()["id"])
    assert network["name_label"] == "vlan 42" and network["nbd"] and len(network["PIFs"]) == 3
    assert all(api.one("pifs", p)["vlan"] == 42 for p in network["PIFs"])
    again = api.action("pools", pool_id, "create_network", {"name": "again", "pif": eth3["id"], "vlan": 42})
    assert again.status_code == 409 and again.json()["data"]["code"] == "PIF_VLAN_EXISTS"
    assert not [n for n in api.objects("networks") if n["name_label"] == "again"]  # undone
    internal = api.ok("pools", pool_id, "create_internal_network", {"name": "private", "description": "lab"})
    assert api.one("networks", internal["id"])["PIFs"] == []
    eth0 = next(p for p in api.objects("pifs") if p["device"] == "eth0" and p["$host"] == eth3["$host"])
    alone = api.action("pools", pool_id, "create_bonded_network",
                       {"name": "bond", "pifIds": [eth3["id"]], "bondMode": "lacp"})
    assert alone.json()["data"]["code"] == "PIF_BOND_NEEDS_MORE_MEMBERS"  # one interface per host
    bonded = api.ok("pools", pool_id, "create_bonded_network",
                    {"name": "bond", "pifIds": [eth0["id"], eth3["id"]], "bondMode": "active-backup"})
    bond = api.one("networks", bonded["id"])
    assert len(bond["PIFs"]) == 3 and bond["isBonded"]
    assert api.action("pools", pool_id, "create_network", {"name": "x", "vlan": 5}).status_code == 400
    for network_id in (created.json()["id"], internal["id"], bonded["id"]):
        assert api.request("DELETE", f"/rest/v0/networks/{network_id}").status_code == 204
        assert api.get(f"/rest/v0/networks/{network_id}").status_code == 404
    assert api.request("DELETE", f"/rest/v0/networks/{eth3['$network']}").status_code == 409  # physical PIFs


def test_create_vm_from_a_template(pool):
    sim, api = pool()
    pool_obj = api.objects("pools")[0]
    template = next(t for t in api.objects("vm-templates") if t["name_label"] == "Debian Bookworm 12")
    network = api.objects("networks")[0]
    iso = next(v for v in api.objects("vdis") if v["name_label"].endswith(".iso"))
    body = {"name_label": "web-new", "template": template["uuid"], "name_description": "made over REST",
            "memory": "1GiB", "cpus": 2, "autoPoweron": True, "vifs": [{"network": network["id"]}],
            "vdis": [{"name_label": "root", "size": 1 << 30}], "install": {"method": "cdrom",
                                                                           "repository": iso["id"]}, "boot": True}
    created = api.action("pools", pool_obj["id"], "create_vm", body)
    assert created.status_code == 201, created.text
    vm = api.one("vms", created.json()["id"])
    assert vm["name_label"] == "web-new" and vm["power_state"] == "Running" and vm["auto_poweron"]
    assert vm["memory"]["size"] == 1 << 30 and vm["CPUs"]["number"] == 2 and len(vm["VIFs"]) == 1
    assert vm["creation"]["template"] == template["uuid"]
    disks = [api.one("vbds", b) for b in vm["$VBDs"]]
    assert {d["is_cd_drive"] for d in disks} == {True, False}
    assert api.one("pools", pool_obj["id"])["auto_poweron"]
    missing = api.action("pools", pool_obj["id"], "create_vm", {"name_label": "x", "template": "nope"})
    assert missing.status_code == 404
    assert api.action("pools", pool_obj["id"], "create_vm", {"template": template["id"]}).status_code == 400
    gpu = api.action("pools", pool_obj["id"], "create_vm", {**body, "createVtpm": True})
    assert gpu.status_code == 501


@pytest.mark.parametrize("sync", [False, True], ids=["polled", "sync"])
def test_rolling_reboot(pool, sync):
    sim, api = pool()
    seconds(sim, **{"host_reboot:down": 0.3})
    pool_id = api.objects("pools")[0]["id"]
    refused = api.action("pools", pool_id, "rolling_reboot")
    assert refused.status_code == 409 and refused.json()["data"]["code"] == "CANNOT_EVACUATE_HOST"
    while True:  # guests on local storage cannot move: stop them
        try:
            local = guest(api, "Running", shared=False)
        except AssertionError:
            break
        api.ok("vms", local["id"], "hard_shutdown")
    placement = {v["id"]: v["$container"] for v in api.objects("vms", "power_state:Running")}
    if sync:
        assert api.action("pools", pool_id, "rolling_reboot").status_code == 204
        task = next(t for t in api.objects("tasks") if t["properties"]["name"] == "REST API: rolling pool reboot"
                    and t["status"] == "success")
    else:
        task = api.wait(api.action("pools", pool_id, "rolling_reboot", sync=False).json()["taskId"], timeout=120)
    assert task["status"] == "success", (task.get("result"), task.get("warnings"))
    (restarting, back) = task["tasks"]
    assert restarting["properties"]["name"] == "Restarting hosts" and len(restarting["tasks"]) == 3
    assert back["properties"]["name"] == "Migrate VMs back"
    assert [t["properties"]["name"] for t in restarting["tasks"][0]["tasks"]][:3] == [
        "Check evacuation precondition", "Evacuate", "Restart"]
    assert {v["id"]: v["$container"] for v in api.objects("vms", "power_state:Running")} == placement
    assert all(h["enabled"] for h in api.objects("hosts"))


@pytest.mark.parametrize("sync", [False, True], ids=["polled", "sync"])
def test_pool_emergency_shutdown(pool, sync):
    sim, api = pool("--vms", "4", "--seed", "3", "--hosts", "2")
    pool_id = api.objects("pools")[0]["id"]
    # the master goes down last: the answer comes before, the pool's API then stops
    if sync:
        done = api.action("pools", pool_id, "emergency_shutdown")
        assert done.status_code == 204, done.text
        task = next(t for t in api.objects("tasks") if t["properties"]["name"] == "REST API: pool emergency shutdown")
    else:
        task = api.wait(api.action("pools", pool_id, "emergency_shutdown", sync=False).json()["taskId"])
    assert task["status"] == "success", (task.get("result"), task.get("warnings"))
    assert [t["properties"]["name"] for t in task["tasks"]].count("shutting down host") == 2
    api.until(lambda: api.get("/rest/v0/servers", fields="status").json()[0]["status"] != "connected",
              what="the pool down")


def test_add_host_joins_another_pool(pool, processes):
    sim, api = pool("--vms", "4", "--seed", "2")
    lone = processes.sim("--vms", "0", "--hosts", "1", "--seed", "5")
    pool_id = api.objects("pools")[0]["id"]
    registered = api.request("POST", "/rest/v0/servers", json={"host": lone.url, "username": "root",
                                                                "password": "password", "label": "lone"})
    assert registered.status_code == 201
    joining = api.until(lambda: [h for h in api.objects("hosts") if h["$pool"] != pool_id], what="the lone host")[0]
    refused = api.action("pools", pool_id, "add_host", {"host": joining["id"]})
    assert refused.status_code == 409, refused.text
    assert refused.json()["data"]["code"] == "POOL_JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS"
    joined = api.action("pools", pool_id, "add_host", {"host": joining["id"], "force": True})
    assert joined.status_code == 204, joined.text
    members = api.until(lambda: [h for h in api.objects("hosts") if h["$pool"] == pool_id
                                 and h["uuid"] == joining["uuid"]], what="the host in the pool")
    assert members and len([h for h in api.objects("hosts") if h["$pool"] == pool_id]) == 4
    # the joined host now answers as a member: its own server shows why it is not connected
    lone_server = api.until(lambda: [s for s in api.objects("servers") if s["label"] == "lone"
                                     and "HOST_IS_SLAVE" in (s.get("error") or "")], what="the member's status")
    assert lone_server[0]["status"] == "disconnected"


def test_server_disconnect_and_connect(pool):
    sim, api = pool("--vms", "3")
    server = api.objects("servers")[0]
    assert server["enabled"] and server["status"] == "connected"
    assert api.action("servers", server["id"], "disconnect").status_code == 204
    assert api.until(lambda: not api.objects("vms"), what="the pool's objects gone")
    gone = api.one("servers", server["id"])
    assert gone["status"] == "disconnected" and not gone["enabled"]
    assert api.action("servers", server["id"], "disconnect").status_code == 409
    assert api.action("servers", server["id"], "connect").status_code == 204
    assert api.one("servers", server["id"])["status"] == "connected" and api.objects("vms")
    assert api.action("servers", server["id"], "connect").status_code == 409


def test_a_pool_that_stopped_answering_is_disconnected_and_removed_at_once(pool):
    """A hung pool (its process stopped: connections are accepted, nothing is answered)
    holds neither a disconnect nor a removal for the logouts' timeouts (5 s each, 10 s in
    all before); its objects are gone at once, and once it answers again the watcher's
    session is logged out all the same."""
    sim, api = pool("--vms", "3")
    server = api.objects("servers")[0]
    assert sim_admin(sim.url, "state")["event_sessions"] == 1
    os.kill(sim.process.pid, signal.SIGSTOP)
    try:
        # (bounds against a hang, not measures: what they cut short waited 10 s)
        assert api.request("POST", f"/rest/v0/servers/{server['id']}/actions/disconnect", timeout=4,
                           sync="true").status_code == 204
        assert not api.objects("vms") and api.one("servers", server["id"])["status"] == "disconnected"
        assert api.request("DELETE", f"/rest/v0/servers/{server['id']}", timeout=4).status_code == 204
        assert not api.objects("servers")
    finally:
        os.kill(sim.process.pid, signal.SIGCONT)
    api.until(lambda: sim_admin(sim.url, "state")["event_sessions"] == 0, what="the watcher's session ended")


# -- one pool walked through the states of its hosts (shared by the tests below) ----------------

@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    """A pool whose hosts the tests below take through their states, in order: ``(sim, api)``."""
    tmp = tmp_path_factory.mktemp("hosts-walked")
    sim = start_sim(tmp, "--vms", "8", "--seed", "1")
    gw = Gateway(tmp, sim.url)
    yield sim, client(gw)
    gw.stop()
    sim.stop()


def test_a_member_through_every_state_asynchronously(walked):
    """enable, scan_pifs, restart_toolstack, management_reconfigure, clean_reboot,
    clean_shutdown, start, emergency_shutdown and forget, each polled: the task succeeds and
    the next read shows the change; a halted host refuses what needs it running."""
    sim, api = walked
    reset_timing(sim)
    host = _evacuable(api, sim)
    key = host["id"]
    api.ok("hosts", key, "disable")
    polled(api, "hosts", key, "enable")
    assert api.one("hosts", key)["enabled"]
    assert [x["method"] for x in polled(api, "hosts", key, "scan_pifs")["properties"]["xapiTasks"]] == ["PIF.scan"]
    before = api.one("hosts", key)["agentStartTime"]
    time.sleep(1.1)  # agent start times have a one-second resolution
    polled(api, "hosts", key, "restart_toolstack")
    assert api.one("hosts", key)["agentStartTime"] > before
    storage = next(api.one("pifs", p) for p in host["PIFs"] if not api.one("pifs", p)["management"]
                   and not api.one("pifs", p)["isBondSlave"] and api.one("pifs", p).get("mode") != "None")
    polled(api, "hosts", key, "management_reconfigure", {"pif": storage["id"]})
    assert api.one("pifs", storage["id"])["management"]
    polled(api, "hosts", key, "clean_reboot")
    api.until(lambda: api.one("hosts", key)["enabled"] and api.one("hosts", key)["power_state"] == "Running",
              what="back up")
    polled(api, "hosts", key, "clean_shutdown")
    api.until(lambda: api.one("hosts", key)["power_state"] == "Halted", what="the host down")
    for name in ("enable", "restart_toolstack", "emergency_shutdown"):
        refused(api.action("hosts", key, name), "HOST_OFFLINE")
    refused(api.action("pbds", host["$PBDs"][0], "plug"), "HOST_OFFLINE")
    down = api.action("hosts", key, "detach")
    assert down.status_code == 409 and down.json()["data"]["property"] == "power_state"
    xapi(sim)("host.set_power_on_mode", host["_xapiRef"], "IPMI", {"power_on_ip": "10.0.0.1"})
    polled(api, "hosts", key, "start")
    assert api.one("hosts", key)["power_state"] == "Running"
    polled(api, "hosts", key, "emergency_shutdown")
    api.until(lambda: api.one("hosts", key)["power_state"] == "Halted", what="the host down")
    polled(api, "hosts", key, "forget")
    assert api.get(f"/rest/v0/hosts/{key}").status_code == 404


def test_host_refusals_then_smart_reboot_and_detach_synchronously(walked):
    sim, api = walked
    pool = api.objects("pools")[0]
    local = guest(api, "Running", shared=False,
                  exclude={vm["id"] for vm in api.objects("vms") if vm["$container"] == pool["master"]})
    key = local["$container"]
    # its guest on local storage cannot move: nothing is shut down, the host is enabled again
    for name in ("clean_shutdown", "clean_reboot"):
        refused(api.action("hosts", key, name), "VM_REQUIRES_SR")
        assert api.one("hosts", key)["enabled"] and api.one("hosts", key)["power_state"] == "Running"
    blocked = api.request("PATCH", f"/rest/v0/vms/{local['id']}", json={"blockedOperations": {"suspend": True}})
    assert blocked.status_code == 204
    smart = api.action("hosts", key, "smart_reboot")
    assert smart.status_code == 409 and smart.json()["data"]["object"] == "suspendBlocked"
    assert local["id"] in smart.json()["data"]["actual"] and api.one("hosts", key)["enabled"]
    api.request("PATCH", f"/rest/v0/vms/{local['id']}", json={"blockedOperations": {"suspend": False}})
    refused(api.action("hosts", key, "detach"), "OPERATION_NOT_ALLOWED")  # it runs VMs
    master = api.action("hosts", pool["master"], "detach")
    assert master.status_code == 409 and master.json()["data"]["property"] == "master"
    # synchronously: a smart reboot suspends the guests and resumes them after
    guests = [v["id"] for v in api.objects("vms", "power_state:Running") if v["$container"] == key]
    assert api.action("hosts", key, "smart_reboot", {"bypassBlockedSuspend": True}).status_code == 204
    task = [t for t in api.objects("tasks") if t["properties"]["name"] == "REST API: smart reboot host"][-1]
    methods = [x["method"] for x in task["properties"]["xapiTasks"]]
    assert task["status"] == "success" and "host.reboot" in methods
    assert methods.count("VM.suspend") == methods.count("VM.resume") >= 1  # the suspended ones came back
    assert api.one("vms", local["id"])["power_state"] == "Running" and local["id"] in guests
    assert api.one("hosts", key)["enabled"]
    for vm in [v["id"] for v in api.objects("vms") if v["$container"] == key and v["power_state"] != "Halted"]:
        api.ok("vms", vm, "hard_shutdown")
    assert api.action("hosts", key, "detach").status_code == 204  # synchronously
    assert api.get(f"/rest/v0/hosts/{key}").status_code == 404 and len(api.objects("servers")) == 2


# -- two pools: the actions of a pool, polled and refused --------------------------------------

@pytest.fixture(scope="module")
def two_pools(tmp_path_factory):
    """A pool and a lone host registered as a second pool: ``(sim, lone, api)``."""
    tmp = tmp_path_factory.mktemp("two-pools")
    sim = start_sim(tmp, "--vms", "4", "--seed", "2")
    lone = start_sim(tmp, "--vms", "0", "--hosts", "1", "--seed", "5", name="lone")
    gw = Gateway(tmp, sim.url)
    api = client(gw)
    registered = api.request("POST", "/rest/v0/servers", json={"host": lone.url, "username": "root",
                                                                "password": "password", "label": "lone"})
    assert registered.status_code == 201
    api.until(lambda: len(api.objects("pools")) == 2, what="the second pool")
    yield sim, lone, api
    gw.stop()
    lone.stop()
    sim.stop()


def _pools(api):
    """``(the pool, the lone host's pool)``."""
    pools = api.objects("pools")
    lone = next(p for p in pools if len([h for h in api.objects("hosts") if h["$pool"] == p["id"]]) == 1)
    return next(p for p in pools if p["id"] != lone["id"]), lone


def test_pool_actions_asynchronously(two_pools):
    sim, lone, api = two_pools
    pool, _ = _pools(api)
    eth3 = next(p for p in api.objects("pifs") if p["device"] == "eth3" and p["$pool"] == pool["id"])
    task = polled(api, "pools", pool["id"], "create_network", {"name": "polled vlan", "pif": eth3["id"], "vlan": 43})
    assert all(api.one("pifs", p)["vlan"] == 43 for p in api.one("networks", task["result"]["id"])["PIFs"])
    eth0 = next(p for p in api.objects("pifs") if p["device"] == "eth0" and p["$host"] == eth3["$host"])
    task = polled(api, "pools", pool["id"], "create_bonded_network",
                  {"name": "polled bond", "pifIds": [eth0["id"], eth3["id"]], "bondMode": "active-backup"})
    assert api.one("networks", task["result"]["id"])["isBonded"]
    task = polled(api, "pools", pool["id"], "create_internal_network", {"name": "polled internal"})
    assert api.one("networks", task["result"]["id"])["PIFs"] == []
    storage = next(n for n in api.objects("networks") if n["$pool"] == pool["id"] and n["name_label"].startswith("VLAN"))
    polled(api, "pools", pool["id"], "management_reconfigure", {"network": storage["id"]})
    assert all(api.one("pifs", p)["management"] for p in storage["PIFs"])
    template = next(t for t in api.objects("vm-templates") if t["name_label"] == "Debian Bookworm 12"
                    and t["$pool"] == pool["id"])
    task = polled(api, "pools", pool["id"], "create_vm", {"name_label": "polled vm", "template": template["id"],
                                                          "boot": True})
    vm = api.one("vms", task["result"]["id"])
    assert vm["name_label"] == "polled vm" and vm["power_state"] == "Running"


def test_pool_refusals(two_pools):
    sim, lone, api = two_pools
    pool, other = _pools(api)
    bare = next(n for n in api.objects("networks") if n["$pool"] == pool["id"]
                and n["name_label"] == "Pool-wide network associated with eth3")
    refused(api.action("pools", pool["id"], "management_reconfigure", {"network": bare["id"]}),
            "PIF_HAS_NO_NETWORK_CONFIGURATION")
    foreign = next(n for n in api.objects("networks") if n["$pool"] == other["id"])
    wrong = api.action("pools", pool["id"], "management_reconfigure", {"network": foreign["id"]})
    assert wrong.status_code == 422 and wrong.json()["data"]["parameter"] == "network"
    elsewhere = next(t for t in api.objects("vm-templates") if t["$pool"] == other["id"])
    wrong = api.action("pools", pool["id"], "create_vm", {"name_label": "x", "template": elsewhere["id"]})
    assert wrong.status_code == 422 and wrong.json()["data"]["parameter"] == "template"
    member = next(h for h in api.objects("hosts") if h["$pool"] == pool["id"])
    wrong = api.action("pools", pool["id"], "add_host", {"host": member["id"]})
    assert wrong.status_code == 422 and wrong.json()["data"]["parameter"] == "host"
    template = next(t for t in api.objects("vm-templates") if t["$pool"] == pool["id"])
    rpc = xapi(sim)
    rpc("VM.add_to_blocked_operations", template["_xapiRef"], "clone", "kept as it is")
    api.until(lambda: "clone" in api.one("vm-templates", template["id"])["blockedOperations"], what="the block")
    try:
        refused(api.action("pools", pool["id"], "create_vm", {"name_label": "never", "template": template["id"]}),
                "OPERATION_BLOCKED")
    finally:
        rpc("VM.remove_from_blocked_operations", template["_xapiRef"], "clone")
    assert not [v for v in api.objects("vms") if v["name_label"] == "never"]
    # the OpenAPI document lists the 422s the code answers
    paths = api.get("/rest/v0/openapi.json").json()["paths"]
    for path in ("/pools/{key}/actions/management_reconfigure", "/pools/{key}/actions/create_vm",
                 "/pools/{key}/actions/add_host", "/hosts/{key}/actions/management_reconfigure",
                 "/vms/{key}/actions/revert_snapshot"):
        assert "422" in paths[path]["post"]["responses"], path
    assert "422" not in paths["/vms/{key}/actions/start"]["post"]["responses"]


def test_aborted_host_and_pool_actions(two_pools):
    sim, lone, api = two_pools
    pool, _ = _pools(api)
    host = next(h for h in api.objects("hosts") if h["$pool"] == pool["id"])
    network = next(n for n in api.objects("networks") if n["$pool"] == pool["id"] and n["name_label"] == "Pool-wide "
                   "network associated with eth0")
    management = {p["id"] for p in api.objects("pifs") if p["management"]}
    seconds(sim, PIF_scan=30, pool_management_reconfigure=30)
    try:
        for collection, key, name, body in (("hosts", host["id"], "scan_pifs", None),
                                            ("pools", pool["id"], "management_reconfigure", {"network": network["id"]})):
            task_id = api.action(collection, key, name, body, sync=False).json()["taskId"]
            api.until(lambda: api.get(f"/rest/v0/tasks/{task_id}").json()["properties"].get("xapiTasks"),
                      what=f"{name} running in the pool")
            assert api.action("tasks", task_id, "abort").status_code == 204
            task = api.get(f"/rest/v0/tasks/{task_id}").json()
            assert task["status"] == "failure" and task["result"]["code"] == "TASK_CANCELLED", task
    finally:
        reset_timing(sim)
    assert {p["id"] for p in api.objects("pifs") if p["management"]} == management  # left where it was


def test_server_and_join_actions_asynchronously(two_pools):
    sim, lone, api = two_pools
    pool, other = _pools(api)
    server = next(s for s in api.objects("servers") if s["label"] == "lone")
    polled(api, "servers", server["id"], "disconnect")
    assert api.one("servers", server["id"])["status"] == "disconnected"
    polled(api, "servers", server["id"], "connect")
    assert api.one("servers", server["id"])["status"] == "connected"
    joining = api.until(lambda: [h for h in api.objects("hosts") if h["$pool"] == other["id"]], what="its host")[0]
    polled(api, "pools", pool["id"], "add_host", {"host": joining["id"], "force": True})
    api.until(lambda: [h for h in api.objects("hosts") if h["$pool"] == pool["id"] and h["uuid"] == joining["uuid"]],
              what="the host in the pool")
    assert api.action("servers", NOWHERE, "connect").status_code == 404
