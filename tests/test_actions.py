"""Actions on VMs, disks and devices through gunicorn against the simulator: each action
succeeds, asynchronously (then polled) and synchronously, and fails as the pool refuses
(409 with XAPI's code), for a missing object (404), a bad body (400), a pool down (503)."""
import time

import pytest

from .conftest import Gateway, start_sim
from .management import client, guest, reset_timing, seconds


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
    update = api.action("pools", api.objects("pools")[0]["id"], "rolling_update")
    assert update.status_code == 404 and "update plugin" in update.json()["error"]
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
    nfs_trim = api.action("srs", nfs["id"], "reclaim_space")
    assert nfs_trim.status_code == 502 and nfs_trim.json()["data"]["code"] == "UnsupportedSRForTrim"


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
