"""XCP-ng's updater plugin through ``host.call_plugin``, as Xen Orchestra calls it for missing
patches, and ``POST /_sim/updates``."""
import json
import time

import pytest
import requests
import XenAPI

from xorest import objects

from .conftest import sim_admin
from .golden import map_pool
from .test_sim import JsonRpc

PACKAGE_KEYS = {"name", "version", "release", "description", "changelog", "url", "size", "license"}


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    from .conftest import start_sim

    sim = start_sim(tmp_path_factory.mktemp("updates"), "--vms", "6", "--seed", "8", "--hosts", "3")
    yield sim, JsonRpc(sim.url)
    sim.stop()


def check(rpc, host, **args):
    return json.loads(rpc("host.call_plugin", host, "updater.py", "check_update", args))


def test_check_update_answers_as_the_plugin_does(pool):
    sim, rpc = pool
    hosts = rpc("host.get_all_records")
    lists = {ref: check(rpc, ref) for ref in hosts}
    pending = [packages for packages in lists.values() if packages]
    assert pending and all(p == pending[0] for p in pending)  # one pool, one repository
    for package in pending[0]:
        assert set(package) == PACKAGE_KEYS
        assert set(package["changelog"]) == {"date", "author", "description"}
        assert isinstance(package["changelog"]["date"], int) and isinstance(package["size"], int)
        assert package["changelog"]["author"].endswith(f" - {package['version']}-{package['release']}")
        assert package["changelog"]["description"].startswith("- ")
    names = {p["name"] for p in pending[0]}
    assert {"xapi-core", "xen-hypervisor"} <= names
    assert lists == {ref: check(rpc, ref) for ref in hosts}  # the same every time
    # the text is Python's json.dumps, as the plugin prints it
    raw = rpc("host.call_plugin", next(iter(hosts)), "updater.py", "check_update", {})
    assert raw == json.dumps(json.loads(raw))
    # through the XenAPI SDK (XML-RPC) too
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password("root", "password", "1.0", "tests")
    ref = next(iter(hosts))
    assert json.loads(session.xenapi.host.call_plugin(ref, "updater.py", "check_update", {})) == lists[ref]


def test_pending_updates_agree_with_reboot_required(pool):
    sim, rpc = pool
    records = {cls: rpc(f"{cls}.get_all_records") for cls in ("pool", "host", "host_metrics", "Certificate",
                                                               "pool_update", "host_patch")}
    served, _ = map_pool({ref: (cls, objects.trim(cls, r)) for cls, t in records.items() for ref, r in t.items()})
    hosts = served["hosts"]
    for ref, host in records["host"].items():
        other = host["other_config"]
        patched = float(other["rpm_patch_installation_time"]) > float(other["boot_time"])
        assert hosts[host["uuid"]]["rebootRequired"] is patched  # Xen Orchestra's rule
        packages = check(rpc, ref)
        if patched:
            assert packages == []  # installed; only the reboot is left
        else:
            released = [p["changelog"]["date"] for p in packages]
            assert released and min(released) > float(other["rpm_patch_installation_time"])
    assert any(h["rebootRequired"] for h in hosts.values()) and not all(h["rebootRequired"] for h in hosts.values())


def test_plugin_errors(pool):
    sim, rpc = pool
    host = rpc("host.get_all")[0]
    with pytest.raises(XenAPI.Failure) as info:
        rpc("host.call_plugin", host, "updater.py", "frobnicate", {})
    assert info.value.details == ["UNKNOWN_XENAPI_PLUGIN_FUNCTION", "frobnicate"]
    with pytest.raises(XenAPI.Failure) as info:
        rpc("host.call_plugin", host, "no-such-plugin.py", "check_update", {})
    assert info.value.details == ["XENAPI_MISSING_PLUGIN", "no-such-plugin.py"]
    with pytest.raises(XenAPI.Failure) as info:
        rpc("host.call_plugin", host, "updater.py", "install", {})
    assert info.value.details[:3] == ["-1", "Missing or empty argument `packages`", ""]
    with pytest.raises(XenAPI.Failure) as info:
        rpc("host.call_plugin", host, "updater.py", "check_update")
    assert info.value.details[0] == "MESSAGE_PARAMETER_COUNT_MISMATCH"


def test_admin_endpoint_sets_lists_and_faults(processes):
    sim = processes.sim("--vms", "2", "--seed", "3")
    rpc = JsonRpc(sim.url)
    host_ref = rpc("host.get_all")[0]
    uuid = rpc("host.get_uuid", host_ref)
    mine = [{"name": "xen-hypervisor", "version": "4.17.6", "release": "1.xcpng8.3", "description": "The Xen Hypervisor",
             "changelog": None, "url": "https://www.xenproject.org/", "size": 1, "license": "GPLv2"}]
    state = sim_admin(sim.url, "updates", {"host": uuid, "updates": mine})
    assert state[uuid]["updates"] == mine and check(rpc, host_ref) == mine
    others = [r for r in rpc("host.get_all") if r != host_ref]
    assert all(check(rpc, r) != mine for r in others)
    # Xen Orchestra retries while the plugin is busy: code -1, "plugin is busy" in the first parameter
    sim_admin(sim.url, "updates", {"host": uuid, "busy": "update"})
    with pytest.raises(XenAPI.Failure) as info:
        check(rpc, host_ref)
    assert info.value.details[0] == "-1" and "plugin is busy (current operation: update)" in info.value.details[1]
    sim_admin(sim.url, "updates", {"host": uuid, "busy": "", "error": "Cannot retrieve repository metadata"})
    with pytest.raises(XenAPI.Failure) as info:
        check(rpc, host_ref)
    assert info.value.details[:2] == ["-1", "Cannot retrieve repository metadata"]
    sim_admin(sim.url, "updates", {"host": uuid, "reset": True})
    assert check(rpc, host_ref) != mine
    with pytest.raises(requests.exceptions.HTTPError):
        sim_admin(sim.url, "updates", {"host": uuid, "updates": "nope"})
    with pytest.raises(requests.exceptions.HTTPError):
        sim_admin(sim.url, "updates", {"host": "not-a-host", "updates": []})
    assert set(requests.get(f"{sim.url}/_sim/updates", timeout=10).json()) == {rpc("host.get_uuid", h)
                                                                             for h in rpc("host.get_all")}


def test_update_installs_and_query_installed_sees_it(processes):
    sim = processes.sim("--vms", "2", "--seed", "9")
    rpc = JsonRpc(sim.url)
    host = next(h for h in rpc("host.get_all") if check(rpc, h))
    before = check(rpc, host)
    first = before[0]["name"]
    installed = json.loads(rpc("host.call_plugin", host, "updater.py", "query_installed",
                               {"packages": f"{first},no-such-package"}))
    assert installed["no-such-package"] == "" and installed[first].startswith(first + "-")
    result = json.loads(rpc("host.call_plugin", host, "updater.py", "update", {"packages": first}))
    assert result["returncode"] == 0 and first in result["stdout"] and result["command"][:2] == ["yum", "update"]
    assert [p["name"] for p in check(rpc, host)] == [p["name"] for p in before[1:]]
    task = rpc("Async.host.call_plugin", host, "updater.py", "update", {})  # as Xen Orchestra installs them
    for _ in range(100):
        record = rpc("task.get_record", task)
        if record["status"] != "pending":
            break
        time.sleep(0.05)
    assert record["status"] == "success" and "Complete!" in record["result"]
    assert check(rpc, host) == []
    testing = check(rpc, rpc("host.get_all")[0], repos="xcp-ng-testing")
    assert all(p["name"] for p in testing)
