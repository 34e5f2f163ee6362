"""Actions on VMs, disks and devices through gunicorn against the simulator: each action
succeeds, asynchronously (then polled) and synchronously, and fails as the pool refuses
(409 with XAPI's code), for a missing object (404), a bad body (400), a pool down (503)."""
import time

import pytest
import requests

from .conftest import Gateway, start_sim
from .management import client, guest, reset_timing, seconds, xapi


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("actions")
    sim = start_sim(tmp, "--vms", "12", "--seed", "1")
    gw = Gateway(tmp, sim.url)
    yield sim, client(gw)
    gw.stop()
    sim.stop()


@pytest.fixture
def api(stack):
    sim, api = stack
    reset_timing(sim)
    return api


def test_async_start_then_polled_shows_the_task_and_the_change(stack, api):
    vm = guest(api, "Halted")
    response = api.action("vms", vm["id"], "start", sync=False)
    assert response.status_code == 202
    task_id = response.json()["taskId"]
    assert response.headers["Location"] == f"/rest/v0/tasks/{task_id}"
    task = api.wait(task_id)
    assert task["status"] == "success" and task["progress"] == 100 and task["end"] >= task["start"]
    assert task["properties"]["name"] == "REST API: start VM" and task["properties"]["objectId"] == vm["id"]
    assert task["properties"]["type"] == "xo:rest-api:action" and task["properties"]["userId"]
    (link,) = task["properties"]["xapiTasks"]
    assert link["method"] == "VM.start" and link["href"] == f"/rest/v0/xapi-tasks/{link['id']}"
    # read-your-writes: the task's success means the next read shows it (any worker)
    assert {api.one("vms", vm["id"])["power_state"] for _ in range(6)} == {"Running"}
    tasks = api.get(f"/rest/v0/vms/{vm['id']}/tasks", fields="id,status").json()
    assert {"id": task_id, "status": "success", "href": f"/rest/v0/tasks/{task_id}",
            "url": f"/rest/v0/tasks/{task_id}"} in tasks


def test_every_power_action_sync_and_its_refusals(api):
    vm = guest(api, "Halted")["id"]
    state = lambda: api.one("vms", vm)["power_state"]  # noqa: E731
    refused = api.action("vms", vm, "clean_shutdown")
    assert refused.status_code == 409
    body = refused.json()
    assert body["data"]["code"] == "VM_BAD_POWER_STATE" and body["data"]["params"][1:] == ["running", "halted"]
    for action, after in (("start", "Running"), ("pause", "Paused"), ("unpause", "Running"),
                          ("suspend", "Suspended"), ("resume", "Running"), ("clean_reboot", "Running"),
                          ("hard_reboot", "Running"), ("clean_shutdown", "Halted"), ("start", "Running"),
                          ("hard_shutdown", "Halted")):
        response = api.action("vms", vm, action)
        assert response.status_code == 204 and response.content == b"", (action, response.text)
        assert state() == after, action
    for action in ("pause", "suspend", "clean_reboot", "hard_reboot", "unpause", "resume"):
        assert api.action("vms", vm, action).json()["data"]["code"] == "VM_BAD_POWER_STATE", action
    # the refused ones are tasks too, ended in failure with XAPI's error
    failed = api.get("/rest/v0/tasks", fields="status,result", filter="status:failure").json()
    assert any(t["result"].get("code") == "VM_BAD_POWER_STATE" and t["result"]["status"] == 409 for t in failed)


def test_start_on_a_host_and_migrate_within_the_pool(api):
    vm = guest(api, "Halted")
    hosts = [h["id"] for h in api.objects("hosts")]
    assert api.action("vms", vm["id"], "start", {"hostId": hosts[1]}).status_code == 204
    assert api.one("vms", vm["id"])["$container"] == hosts[1]
    assert api.action("vms", vm["id"], "migrate", {"hostId": hosts[2]}).status_code == 204
    assert api.one("vms", vm["id"])["$container"] == hosts[2]
    local = guest(api, "Running", shared=False)
    other = next(h for h in hosts if h != local["$container"])
    refused = api.action("vms", local["id"], "migrate", {"hostId": other})
    assert refused.status_code == 409 and refused.json()["data"]["code"] == "VM_REQUIRES_SR"
    motion = api.action("vms", local["id"], "migrate", {"hostId": other, "srId": vm["$pool"]})
    assert motion.status_code == 501
    assert api.action("vms", vm["id"], "migrate", {"hostId": "no-such-host"}).status_code == 404
    assert api.action("vms", vm["id"], "start", {"hostId": hosts[0]}).json()["data"]["code"] == "VM_BAD_POWER_STATE"


def test_snapshot_clone_and_revert(api):
    vm = guest(api, "Running")
    created = api.action("vms", vm["id"], "snapshot", {"name_label": "before the upgrade"})
    assert created.status_code == 201
    snap_id = created.json()["id"]
    assert created.headers["Location"] == f"/rest/v0/vm-snapshots/{snap_id}"
    snap = api.one("vm-snapshots", snap_id)
    assert snap["name_label"] == "before the upgrade" and snap["$snapshot_of"] == vm["id"]
    assert snap_id in api.one("vms", vm["id"])["snapshots"]
    fast = api.action("vms", vm["id"], "clone", {"name_label": "fast clone"})
    assert fast.status_code == 409 and fast.json()["data"]["code"] == "VM_BAD_POWER_STATE"  # XAPI's rule
    full = api.ok("vms", vm["id"], "clone", {"name_label": "full copy", "fast": False})  # copied from a snapshot
    copy = api.one("vms", full["id"])
    assert copy["name_label"] == "full copy" and copy["power_state"] == "Halted"
    assert not [s for s in api.objects("vm-snapshots") if s["name_label"] == "full copy"]  # its snapshot is gone
    clone = api.ok("vms", copy["id"], "clone", {"name_label": "fast clone"})
    assert api.one("vms", clone["id"])["name_label"] == "fast clone"
    sr = next(s for s in api.objects("srs") if s["name_label"] == "NFS shared storage")
    on_sr = api.ok("vms", copy["id"], "clone", {"name_label": "on nfs", "srId": sr["id"]})
    assert api.one("vms", on_sr["id"])["name_label"] == "on nfs"
    # revert: the VM runs again (it was running when snapshotted); snapshotBefore makes sub-tasks
    response = api.action("vms", vm["id"], "revert_snapshot", {"snapshotId": snap_id, "snapshotBefore": True},
                          sync=False)
    task = api.wait(response.json()["taskId"])
    assert task["status"] == "success", task
    assert [t["properties"]["name"] for t in task["tasks"]] == ["snapshot VM", "revert snapshot"]
    assert all(t["status"] == "success" for t in task["tasks"])
    assert api.one("vms", vm["id"])["power_state"] == "Running"
    other = api.action("vms", copy["id"], "revert_snapshot", {"snapshotId": snap_id})
    assert other.status_code == 422


@pytest.mark.parametrize("body, field", [
    ({"hostid": "x"}, "hostid"), ({"hostId": 5}, "hostId"), ({"hostId": ""}, "hostId")])
def test_bodies_are_validated(api, body, field):
    vm = guest(api, "Halted")
    response = api.action("vms", vm["id"], "start", body)
    assert response.status_code == 400 and field in response.json()["data"]["errors"], response.text


def test_validation_and_lookups(api):
    vm = guest(api, "Halted")["id"]
    assert api.action("vms", vm, "revert_snapshot", {}).json()["data"]["errors"] == {
        "snapshotId": ["Missing data for required field."]}
    assert api.action("vms", vm, "clone", {"fast": "yes"}).status_code == 400
    assert api.action("vms", vm, "clean_shutdown", {"force": True}).status_code == 400  # no such parameter
    assert api.request("POST", f"/rest/v0/vms/{vm}/actions/start", sync="maybe").status_code == 400
    before = len(api.get("/rest/v0/tasks").json())
    missing = api.action("vms", "00000000-0000-0000-0000-000000000000", "start", sync=False)
    assert missing.status_code == 404 and len(api.get("/rest/v0/tasks").json()) == before  # no task
    unknown = api.action("vms", vm, "teleport")
    assert unknown.status_code == 404 and "start" in unknown.json()["data"]["actions"]
    # one of Xen Orchestra's actions that xorest leaves out: not a 404 (it exists), a 501 saying why
    update = api.action("pools", api.objects("pools")[0]["id"], "rolling_update")
    assert update.status_code == 501 and "update plugin" in update.json()["error"]
    assert "rolling_reboot" in update.json()["data"]["actions"]
    assert api.action("vms", vm, "rolling_update").status_code == 404  # no such action on VMs at all
    assert api.request("GET", f"/rest/v0/vms/{vm}/actions/start").status_code == 405


def test_conflicting_actions_one_wins(stack, api):
    sim, _ = stack
    seconds(sim, VM_start=1.5)
    vm = guest(api, "Halted")["id"]
    first = api.action("vms", vm, "start", sync=False)
    time.sleep(0.4)
    second = api.action("vms", vm, "start")
    assert second.status_code == 409 and second.json()["data"]["code"] == "OTHER_OPERATION_IN_PROGRESS"
    current = api.one("vms", vm)["current_operations"]
    assert list(current.values()) == ["start"]
    assert api.wait(first.json()["taskId"])["status"] == "success"
    assert api.one("vms", vm)["current_operations"] == {}


def test_abort_cancels_the_xapi_task(stack, api):
    sim, _ = stack
    seconds(sim, VM_start=30)
    vm = guest(api, "Halted")["id"]
    task_id = api.action("vms", vm, "start", sync=False).json()["taskId"]
    api.until(lambda: api.one("vms", vm)["current_operations"], what="the start in progress")
    progress = api.until(lambda: api.get(f"/rest/v0/tasks/{task_id}").json()["progress"], what="some progress")
    assert 0 < progress < 100
    aborted = api.action("tasks", task_id, "abort")
    assert aborted.status_code == 204
    task = api.get(f"/rest/v0/tasks/{task_id}").json()
    assert task["status"] == "failure" and task["result"]["code"] == "TASK_CANCELLED" and task["abortionRequestedAt"]
    assert api.one("vms", vm)["power_state"] == "Halted" and api.one("vms", vm)["current_operations"] == {}
    again = api.action("tasks", task_id, "abort")
    assert again.status_code == 409  # it ended
    assert api.action("tasks", "0000000000-nope", "abort").status_code == 404
    # the abort is a task too
    assert any(t["properties"]["name"] == "REST API: abort task" and t["properties"]["objectId"] == task_id
               for t in api.objects("tasks"))


def test_a_pool_down_is_a_503(tmp_path):
    sim = start_sim(tmp_path, "--vms", "4")
    gw = Gateway(tmp_path, sim.url)
    try:
        api = client(gw)
        vm = api.objects("vms")[0]["id"]
        sim.stop()
        api.until(lambda: api.get("/rest/v0/servers", fields="status").json()[0]["status"] != "connected",
                  what="the pool seen down", timeout=30)
        response = api.action("vms", vm, "start")
        assert response.status_code == 503, response.text
        assert api.get(f"/rest/v0/vms/{vm}").status_code == 200  # still read from the cache
    finally:
        gw.stop()


def test_disk_and_device_actions(stack, api):
    sim, _ = stack
    vm = guest(api, "Running")
    vbd = next(api.one("vbds", b) for b in vm["$VBDs"] if not api.one("vbds", b)["is_cd_drive"])
    assert api.ok("vbds", vbd["id"], "disconnect") is None and not api.one("vbds", vbd["id"])["attached"]
    assert api.action("vbds", vbd["id"], "disconnect").json()["data"]["code"] == "DEVICE_ALREADY_DETACHED"
    assert api.ok("vbds", vbd["id"], "connect") is None and api.one("vbds", vbd["id"])["attached"]
    vif = api.one("vifs", vm["VIFs"][0])
    api.ok("vifs", vif["id"], "disconnect")
    assert not api.one("vifs", vif["id"])["attached"]
    api.ok("vifs", vif["id"], "connect")
    assert api.one("vifs", vif["id"])["attached"]
    # a disk of a running VM moves live; one of a halted VM is copied, its VBDs follow
    vdi = api.one("vdis", vbd["VDI"])
    host_sr = next(s for s in api.objects("srs") if not s["shared"] and s["$container"] == vm["$container"])
    moved = api.action("vdis", vdi["id"], "migrate", {"srId": host_sr["id"]})
    assert moved.status_code == 200 and moved.headers["Location"] == f"/rest/v0/vdis/{moved.json()['id']}"
    assert api.one("vdis", moved.json()["id"])["$SR"] == host_sr["id"]
    assert api.get(f"/rest/v0/vdis/{vdi['id']}").status_code == 404
    halted = guest(api, "Halted")
    disk = next(api.one("vbds", b) for b in halted["$VBDs"] if not api.one("vbds", b)["is_cd_drive"])
    nfs = next(s for s in api.objects("srs") if s["name_label"] == "NFS shared storage")
    target = nfs if api.one("vdis", disk["VDI"])["$SR"] != nfs["id"] else host_sr
    copied = api.ok("vdis", disk["VDI"], "migrate", {"srId": target["id"]})
    assert copied["id"] != disk["VDI"] and api.one("vdis", copied["id"])["$SR"] == target["id"]
    assert any(api.one("vbds", b).get("VDI") == copied["id"] for b in api.one("vms", halted["id"])["$VBDs"])
    # PBDs and SRs
    pbd = api.one("pbds", host_sr["$PBDs"][0])
    in_use = api.action("pbds", pbd["id"], "unplug")
    assert in_use.status_code == 409 and in_use.json()["data"]["code"] == "VDI_IN_USE"
    assert api.action("srs", host_sr["id"], "scan").status_code == 204
    local_trim = api.action("srs", host_sr["id"], "reclaim_space")
    if host_sr["SR_type"] == "lvm":  # thick LVM: trimmed (local SRs alternate lvm and ext)
        assert local_trim.status_code == 204, local_trim.text
    else:
        assert local_trim.json()["data"]["code"] == "UnsupportedSRForTrim"
    assert any(api.action("srs", sr["id"], "reclaim_space").status_code == 204
               for sr in api.objects("srs") if sr["SR_type"] == "lvm")
    nfs_trim = api.action("srs", nfs["id"], "reclaim_space")  # not thick LVM: the SR cannot be trimmed
    assert nfs_trim.status_code == 409 and nfs_trim.json()["data"]["code"] == "UnsupportedSRForTrim"


def _catalogue():
    from xorest.services.actions import CATALOGUE
    return sorted(CATALOGUE)


@pytest.mark.parametrize("collection, name", _catalogue())
def test_every_action_of_a_missing_object_is_a_404(api, collection, name):
    for sync in (True, False):
        response = api.action(collection, "00000000-0000-0000-0000-000000000000", name, sync=sync)
        assert response.status_code in (404, 400), (sync, response.text)  # 400: a body it requires first
        if response.status_code == 400:
            assert response.json()["data"]["errors"]


@pytest.mark.parametrize("action, body, method, state", [
    ("clean_shutdown", None, "VM.clean_shutdown", "Running"), ("suspend", None, "VM.suspend", "Running"),
    ("snapshot", {"name_label": "never"}, "VM.snapshot", "Running"), ("clone", {"fast": False}, "VM.copy", "Halted")])
def test_aborts_leave_things_as_they_were(stack, api, action, body, method, state):
    sim, _ = stack
    seconds(sim, **{method.replace(".", "_"): 30})
    vm = guest(api, state, shared=None)
    vms_before = {v["id"] for v in api.objects("vms") + api.objects("vm-snapshots")}
    task_id = api.action("vms", vm["id"], action, body, sync=False).json()["taskId"]
    api.until(lambda: api.one("vms", vm["id"])["current_operations"], what=f"{method} running")
    assert api.action("tasks", task_id, "abort").status_code == 204
    task = api.get(f"/rest/v0/tasks/{task_id}").json()
    assert task["status"] == "failure" and task["result"]["code"] == "TASK_CANCELLED", task
    assert api.one("vms", vm["id"])["power_state"] == state
    assert {v["id"] for v in api.objects("vms") + api.objects("vm-snapshots")} == vms_before


def test_sr_forget_and_pbd_plug(api):
    host = api.objects("hosts")[0]
    sr = api.request("POST", "/rest/v0/srs", json={"hostId": host["id"], "SR_type": "lvm", "name_label": "to forget",
                                                  "device_config": {"device": "/dev/sdy"}}).json()["id"]
    pbd = api.one("srs", sr)["$PBDs"][0]
    assert api.ok("pbds", pbd, "unplug") is None and not api.one("pbds", pbd)["attached"]
    assert api.ok("pbds", pbd, "plug") is None and api.one("pbds", pbd)["attached"]
    task = api.wait(api.action("srs", sr, "forget", sync=False).json()["taskId"])
    assert task["status"] == "success" and [x["method"] for x in task["properties"]["xapiTasks"]] == ["PBD.unplug"]
    assert api.get(f"/rest/v0/srs/{sr}").status_code == 404 and api.get(f"/rest/v0/pbds/{pbd}").status_code == 404
    other = _new_sr(api, "to forget at once", "/dev/sdw")
    assert api.action("srs", other, "forget").status_code == 204  # sync
    assert api.get(f"/rest/v0/srs/{other}").status_code == 404


# -- helpers of the tests below -------------------------------------------------------------

NOWHERE = "00000000-0000-0000-0000-000000000000"


def _new_sr(api, name, device):
    """A fresh local LVM SR on the first host (one PBD): ``srs`` actions can change it freely."""
    host = api.objects("hosts")[0]
    created = api.request("POST", "/rest/v0/srs", json={"hostId": host["id"], "SR_type": "lvm", "name_label": name,
                                                       "device_config": {"device": device}})
    assert created.status_code == 201, created.text
    return created.json()["id"]


def _running(api, host=None):
    """A new running VM of shared disks (on ``host``, if given): a fast clone of a halted one,
    started (the tests below change the state of what they are given: they must never run
    out of guests)."""
    clone = api.ok("vms", guest(api, "Halted")["id"], "clone", {"name_label": "test guest"})["id"]
    api.ok("vms", clone, "start", {"hostId": host} if host else None)
    return api.one("vms", clone)


def _disk_vbd(api, vm):
    return next(api.one("vbds", b) for b in vm["$VBDs"] if not api.one("vbds", b)["is_cd_drive"])


def polled(api, collection, key, name, body=None):
    """Start an action (no sync): 202, its task's URL and id; then the task once ended in success."""
    response = api.action(collection, key, name, body, sync=False)
    assert response.status_code == 202, (name, response.text)
    task_id = response.json()["taskId"]
    assert response.headers["Location"] == f"/rest/v0/tasks/{task_id}"
    task = api.wait(task_id)
    assert task["status"] == "success" and task["progress"] == 100, (name, task.get("result"))
    assert task["properties"]["objectId"] == key and task["end"] >= task["start"]
    return task


def refused(response, code):
    """A 409 keeping XAPI's code."""
    assert response.status_code == 409, response.text
    assert response.json()["data"]["code"] == code, response.text


# -- every action asynchronously, then polled: the task succeeds and the next read shows it -----

def _power(action, before, after, prepare=None):
    def case(api):
        vm = _running(api)
        if prepare:
            api.ok("vms", vm["id"], prepare)
        task = polled(api, "vms", vm["id"], action)
        assert [x["method"] for x in task["properties"]["xapiTasks"]] == [f"VM.{action}"]
        assert api.one("vms", vm["id"])["power_state"] == after
    return case


def _reboot(action):
    def case(api):
        vm = _running(api)
        time.sleep(1.1)  # start times have a one-second resolution
        polled(api, "vms", vm["id"], action)
        after = api.one("vms", vm["id"])
        assert after["power_state"] == "Running" and after["startTime"] > vm["startTime"]  # started again
    return case


def _snapshot(api):
    vm = _running(api)
    task = polled(api, "vms", vm["id"], "snapshot", {"name_label": "polled"})
    assert task["result"]["id"] in api.one("vms", vm["id"])["snapshots"]
    assert api.one("vm-snapshots", task["result"]["id"])["name_label"] == "polled"


def _clone(api):
    vm = guest(api, "Halted")
    task = polled(api, "vms", vm["id"], "clone", {"name_label": "polled clone"})
    assert api.one("vms", task["result"]["id"])["name_label"] == "polled clone"


def _migrate(api):
    vm = _running(api)
    target = next(h["id"] for h in api.objects("hosts") if h["id"] != vm["$container"])
    polled(api, "vms", vm["id"], "migrate", {"hostId": target})
    assert api.one("vms", vm["id"])["$container"] == target


def _sr_scan(api):
    nfs = next(s for s in api.objects("srs") if s["name_label"] == "NFS shared storage")
    task = polled(api, "srs", nfs["id"], "scan")
    assert [x["method"] for x in task["properties"]["xapiTasks"]] == ["SR.scan"]
    assert api.one("srs", nfs["id"])["current_operations"] == {}


def _sr_reclaim(api):
    lvm = next(s for s in api.objects("srs") if s["SR_type"] == "lvm")
    task = polled(api, "srs", lvm["id"], "reclaim_space")
    assert [x["method"] for x in task["properties"]["xapiTasks"]] == ["host.call_plugin"]


def _vdi_migrate(api):
    vm = guest(api, "Halted", shared=None)
    vdi = api.one("vdis", _disk_vbd(api, vm)["VDI"])
    target = next(s for s in api.objects("srs") if s["content_type"] == "user" and s["shared"]
                  and s["id"] != vdi["$SR"])
    task = polled(api, "vdis", vdi["id"], "migrate", {"srId": target["id"]})
    assert api.one("vdis", task["result"]["id"])["$SR"] == target["id"]


def _device(collection, first, then):
    def case(api):
        vm = _running(api)
        key = _disk_vbd(api, vm)["id"] if collection == "vbds" else vm["VIFs"][0]
        for name, attached in ((first, first == "connect"), (then, then == "connect")):
            polled(api, collection, key, name)
            assert api.one(collection, key)["attached"] is attached, name
    return case


def _pbd(api):
    sr = _new_sr(api, "polled pbd", "/dev/sdv")
    pbd = api.one("srs", sr)["$PBDs"][0]
    polled(api, "pbds", pbd, "unplug")
    assert not api.one("pbds", pbd)["attached"]
    polled(api, "pbds", pbd, "plug")
    assert api.one("pbds", pbd)["attached"]
    assert api.request("DELETE", f"/rest/v0/srs/{sr}").status_code == 204


POLLED = {
    "vms/clean_shutdown": _power("clean_shutdown", "Running", "Halted"),
    "vms/hard_shutdown": _power("hard_shutdown", "Running", "Halted"),
    "vms/clean_reboot": _reboot("clean_reboot"), "vms/hard_reboot": _reboot("hard_reboot"),
    "vms/unpause": _power("unpause", "Paused", "Running", prepare="pause"),
    "vms/suspend": _power("suspend", "Running", "Suspended"),
    "vms/resume": _power("resume", "Suspended", "Running", prepare="suspend"),
    "vms/snapshot": _snapshot, "vms/clone": _clone, "vms/migrate": _migrate,
    "srs/scan": _sr_scan, "srs/reclaim_space": _sr_reclaim, "vdis/migrate": _vdi_migrate,
    "vbds/disconnect+connect": _device("vbds", "disconnect", "connect"),
    "vifs/disconnect+connect": _device("vifs", "disconnect", "connect"), "pbds/unplug+plug": _pbd,
}


@pytest.mark.parametrize("case", POLLED.values(), ids=POLLED.keys())
def test_async_then_polled(api, case):
    case(api)


# -- refusals: 409 with XAPI's code ------------------------------------------------------------

def test_vm_refusals_keep_xapi_s_code(stack, api):
    sim, _ = stack
    halted = guest(api, "Halted")
    refused(api.action("vms", halted["id"], "hard_shutdown"), "VM_BAD_POWER_STATE")
    vm = _running(api)
    snapshot = api.ok("vms", vm["id"], "snapshot")["id"]
    snapshot_ref = api.one("vm-snapshots", snapshot)["_xapiRef"]
    rpc = xapi(sim)
    rpc("VM.add_to_blocked_operations", vm["_xapiRef"], "snapshot", "frozen by the admins")
    rpc("VM.add_to_blocked_operations", snapshot_ref, "revert", "frozen by the admins")  # XAPI reverts the snapshot
    api.until(lambda: "revert" in api.one("vm-snapshots", snapshot)["blockedOperations"], what="the blocks seen")
    try:
        blocked = api.action("vms", vm["id"], "snapshot", {"name_label": "never"})
        refused(blocked, "OPERATION_BLOCKED")
        assert blocked.json()["data"]["params"][-1] == "frozen by the admins"
        refused(api.action("vms", vm["id"], "revert_snapshot", {"snapshotId": snapshot}), "OPERATION_BLOCKED")
        assert not [s for s in api.objects("vm-snapshots") if s["name_label"] == "never"]
    finally:
        rpc("VM.remove_from_blocked_operations", vm["_xapiRef"], "snapshot")
        rpc("VM.remove_from_blocked_operations", snapshot_ref, "revert")
    # and synchronously, once unblocked: the VM is back as it was snapshotted (running)
    api.until(lambda: not api.one("vm-snapshots", snapshot)["blockedOperations"], what="the block lifted")
    assert api.action("vms", vm["id"], "revert_snapshot", {"snapshotId": snapshot}).status_code == 204
    assert api.one("vms", vm["id"])["power_state"] == "Running"


def test_storage_and_device_refusals_keep_xapi_s_code(stack, api):
    sim, _ = stack
    sr = _new_sr(api, "refusals", "/dev/sdu")
    pbd = api.one("srs", sr)["$PBDs"][0]
    api.ok("pbds", pbd, "unplug")
    refused(api.action("srs", sr, "scan"), "SR_NOT_ATTACHED")
    refused(api.action("srs", sr, "reclaim_space"), "SR_NOT_ATTACHED")
    api.ok("pbds", pbd, "plug")
    # a disk of the SR in use by a VM running on its host: the SR cannot be unplugged, hence not forgotten
    vm = _running(api, host=api.one("pbds", pbd)["host"])
    disk = api.request("POST", "/rest/v0/vdis", json={"srId": sr, "virtual_size": 1 << 30, "name_label": "in use"})
    vbd = api.request("POST", "/rest/v0/vbds", json={"VM": vm["id"], "VDI": disk.json()["id"]}).json()["id"]
    assert api.one("vbds", vbd)["attached"]
    refused(api.action("srs", sr, "forget"), "VDI_IN_USE")
    assert api.one("pbds", pbd)["attached"]  # left as it was
    refused(api.action("vbds", vbd, "connect"), "DEVICE_ALREADY_ATTACHED")
    vif = vm["VIFs"][0]
    refused(api.action("vifs", vif, "connect"), "DEVICE_ALREADY_ATTACHED")
    api.ok("vifs", vif, "disconnect")
    refused(api.action("vifs", vif, "disconnect"), "DEVICE_ALREADY_DETACHED")
    api.ok("vifs", vif, "connect")
    # a disk being moved refuses a second move
    seconds(sim, VDI_pool_migrate=30)
    nfs = next(s for s in api.objects("srs") if s["name_label"] == "NFS shared storage")
    moving = api.action("vdis", disk.json()["id"], "migrate", {"srId": nfs["id"]}, sync=False).json()["taskId"]
    api.until(lambda: api.one("vdis", disk.json()["id"])["current_operations"], what="the move running")
    refused(api.action("vdis", disk.json()["id"], "migrate", {"srId": nfs["id"]}), "OTHER_OPERATION_IN_PROGRESS")
    # aborted: the disk stays where it was
    assert api.action("tasks", moving, "abort").status_code == 204
    task = api.get(f"/rest/v0/tasks/{moving}").json()
    assert task["status"] == "failure" and task["result"]["code"] == "TASK_CANCELLED"
    assert api.one("vdis", disk.json()["id"])["$SR"] == sr
    assert api.request("DELETE", f"/rest/v0/vbds/{vbd}").status_code == 204
    assert api.request("DELETE", f"/rest/v0/vdis/{disk.json()['id']}").status_code == 204
    assert api.request("DELETE", f"/rest/v0/srs/{sr}").status_code == 204


def test_aborted_storage_and_device_actions(stack, api):
    """An SR scan and a VIF plug aborted while XAPI works: the task fails with TASK_CANCELLED,
    the SR shows no operation left, the VIF stays unplugged."""
    sim, _ = stack
    seconds(sim, SR_scan=30, VIF_plug=30)
    nfs = next(s for s in api.objects("srs") if s["name_label"] == "NFS shared storage")
    vm = _running(api)
    vif = vm["VIFs"][0]
    api.ok("vifs", vif, "disconnect")
    for collection, key, name in (("srs", nfs["id"], "scan"), ("vifs", vif, "connect")):
        task_id = api.action(collection, key, name, sync=False).json()["taskId"]
        api.until(lambda: api.get(f"/rest/v0/tasks/{task_id}").json()["properties"].get("xapiTasks"),
                  what=f"{name} running in the pool")
        assert api.action("tasks", task_id, "abort").status_code == 204
        task = api.get(f"/rest/v0/tasks/{task_id}").json()
        assert task["status"] == "failure" and task["result"]["code"] == "TASK_CANCELLED", task
    assert api.one("srs", nfs["id"])["current_operations"] == {}
    assert not api.one("vifs", vif)["attached"]


# -- a missing object with a valid body is a 404 (before any task) ---------------------------

def test_a_missing_object_with_a_valid_body_is_a_404(api):
    vm = guest(api, "Running")
    snapshot = api.objects("vm-snapshots")[0]["id"]
    hosts = api.objects("hosts")
    pif = next(p for p in api.objects("pifs") if p["device"] == "eth3")
    template = next(t for t in api.objects("vm-templates") if t["name_label"] == "Debian Bookworm 12")
    network = api.objects("networks")[0]["id"]
    sr = next(s for s in api.objects("srs") if s["name_label"] == "NFS shared storage")["id"]
    bodies = {
        ("vms", "start"): {"hostId": hosts[0]["id"]}, ("vms", "revert_snapshot"): {"snapshotId": snapshot},
        ("vms", "migrate"): {"hostId": hosts[0]["id"]}, ("vms", "snapshot"): {"name_label": "x"},
        ("vms", "clone"): {"name_label": "x", "fast": True}, ("hosts", "management_reconfigure"): {"pif": pif["id"]},
        ("hosts", "disable"): {"evacuate": True}, ("pools", "create_vm"): {"name_label": "x", "template": template["id"]},
        ("pools", "create_network"): {"name": "x", "pif": pif["id"], "vlan": 7},
        ("pools", "create_bonded_network"): {"name": "x", "pifIds": [pif["id"]], "bondMode": "lacp"},
        ("pools", "create_internal_network"): {"name": "x"}, ("pools", "management_reconfigure"): {"network": network},
        ("pools", "add_host"): {"host": hosts[0]["id"]}, ("vdis", "migrate"): {"srId": sr},
    }
    before = len(api.objects("tasks"))
    for (collection, name), body in bodies.items():
        for sync in (True, False):
            response = api.action(collection, NOWHERE, name, body, sync=sync)
            assert response.status_code == 404, (collection, name, response.text)
            assert response.json()["data"]["id"] == NOWHERE
    assert len(api.objects("tasks")) == before  # refused before any task
    # and an object the body names that does not exist
    assert api.action("vms", vm["id"], "revert_snapshot", {"snapshotId": NOWHERE}).status_code == 404
    assert api.action("vdis", _disk_vbd(api, vm)["VDI"], "migrate", {"srId": NOWHERE}).status_code == 404


# -- transfers are tasks; every collection lists its tasks -------------------------------------

def test_transfers_are_tasks(stack, api):
    vm = guest(api, "Halted", shared=None)
    export = api.get(f"/rest/v0/vms/{vm['id']}.xva")
    assert export.status_code == 200 and export.content
    pool = api.objects("pools")[0]

    def upload(path, body, **params):
        return requests.post(api.url + path, data=body, params=params, timeout=60,
                             cookies={"authenticationToken": api.token})
    imported = upload(f"/rest/v0/pools/{pool['id']}/vms", export.content)
    assert imported.status_code in (200, 201), imported.text
    sr = next(s for s in api.objects("srs") if s["name_label"] == "NFS shared storage")
    disk = upload(f"/rest/v0/srs/{sr['id']}/vdis", b"\0" * 65536, raw="true", name_label="uploaded")
    assert disk.status_code in (200, 201), disk.text
    tasks = api.objects("tasks")

    def ended(name, object_id):
        found = [t for t in tasks if t["properties"]["name"] == name and t["properties"]["objectId"] == object_id]
        assert found, (name, object_id, [t["properties"]["name"] for t in tasks])
        task = found[-1]
        assert task["status"] == "success" and task["properties"]["type"] == "xo:rest-api:transfer", task
        assert task["properties"]["xapiTasks"], task
        return task
    assert ended("REST API: export VM", vm["id"])["result"]["bytes"] == len(export.content)
    ended("REST API: import VM", pool["id"])
    ended("REST API: import VDI", sr["id"])


def test_every_object_lists_its_tasks(api):
    host = api.objects("hosts")[0]
    nfs = next(s for s in api.objects("srs") if s["name_label"] == "NFS shared storage")
    pool = api.objects("pools")[0]
    vm = _running(api)
    vbd = _disk_vbd(api, vm)
    done = {("hosts", host["id"]): api.action("hosts", host["id"], "scan_pifs", sync=False),
            ("srs", nfs["id"]): api.action("srs", nfs["id"], "scan", sync=False),
            ("pools", pool["id"]): api.action("pools", pool["id"], "create_internal_network", {"name": "listed"},
                                              sync=False),
            ("vbds", vbd["id"]): api.action("vbds", vbd["id"], "disconnect", sync=False)}
    for (collection, key), response in done.items():
        task_id = response.json()["taskId"]
        api.wait(task_id)
        listed = api.get(f"/rest/v0/{collection}/{key}/tasks", fields="id,status").json()
        assert {"id": task_id, "status": "success", "href": f"/rest/v0/tasks/{task_id}",
                "url": f"/rest/v0/tasks/{task_id}"} in listed, collection
        assert api.get(f"/rest/v0/{collection}/{NOWHERE}/tasks").status_code == 404
