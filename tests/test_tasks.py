"""The task log across processes: two xorest servers on one data directory (as two
gunicorn workers are), a task started on one is listed, waited for, watched and aborted
on the other; a task whose worker is killed becomes interrupted; what a task or an edit
changed is what the next read shows, whichever process answers it."""
import json
import threading
import time

import pytest
import requests

from .conftest import PYTHON, Gateway, ServerProcess, free_port, start_sim
from .management import Client, client, kill_workers, reset_timing, seconds, worker_pids


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """``(sim, a, b, gw_a)``: clients of two servers sharing one store."""
    tmp = tmp_path_factory.mktemp("tasks")
    sim = start_sim(tmp, "--vms", "10", "--seed", "1")
    gw = Gateway(tmp, sim.url, workers=1, env={"XOREST_TASK_WAIT": "3"})
    port = free_port()
    other = ServerProcess([PYTHON, "-m", "xorest", "serve", "--listen", f"127.0.0.1:{port}", "--workers", "1"],
                          str(tmp / "b.log"), env=gw.env, ready_url=f"http://127.0.0.1:{port}/rest/v0")
    b = Client(f"http://127.0.0.1:{port}", gw.token)
    b.until(lambda: b.objects("vms"), what="the second server loaded")
    yield sim, client(gw), b, gw
    other.stop()
    gw.stop()
    sim.stop()


@pytest.fixture
def pair(two):
    reset_timing(two[0])
    return two


def _halted(api):
    """A halted VM (one is stopped when the tests before used them all)."""
    halted = api.objects("vms", "power_state:Halted")
    if halted:
        return halted[0]["id"]
    vm = api.objects("vms", "power_state:Running")[0]["id"]
    api.ok("vms", vm, "hard_shutdown")
    return vm


def test_started_on_one_waited_for_and_aborted_from_the_other(pair):
    sim, a, b, _ = pair
    seconds(sim, VM_start=30)
    vm = _halted(a)
    task_id = a.action("vms", vm, "start", sync=False).json()["taskId"]
    seen = b.get(f"/rest/v0/tasks/{task_id}").json()
    assert seen["status"] == "pending" and seen["properties"]["objectId"] == vm
    b.until(lambda: b.get(f"/rest/v0/tasks/{task_id}").json()["properties"].get("xapiTasks"), what="the XAPI task")
    waited = {}
    waiter = threading.Thread(target=lambda: waited.update(b.get(f"/rest/v0/tasks/{task_id}", wait="true").json()))
    waiter.start()
    started = time.monotonic()
    assert b.action("tasks", task_id, "abort").status_code == 204
    waiter.join(10)
    assert time.monotonic() - started < 10
    assert waited["status"] == "failure" and waited["result"]["code"] == "TASK_CANCELLED"
    assert a.get(f"/rest/v0/tasks/{task_id}").json()["status"] == "failure"
    assert a.one("vms", vm)["power_state"] == "Halted" and b.one("vms", vm)["current_operations"] == {}


def test_waiting_is_bounded(pair):
    sim, a, b, _ = pair
    seconds(sim, VM_start=8)
    task_id = a.action("vms", _halted(a), "start", sync=False).json()["taskId"]
    started = time.monotonic()
    still = b.get(f"/rest/v0/tasks/{task_id}", wait="true").json()
    assert still["status"] == "pending" and 2.5 < time.monotonic() - started < 6  # XOREST_TASK_WAIT=3
    assert a.wait(task_id, timeout=30)["status"] == "success"


def test_a_killed_worker_leaves_its_task_interrupted(pair):
    sim, a, b, gw = pair
    seconds(sim, VM_clean_shutdown=30)
    vm = a.objects("vms", "power_state:Running")[0]["id"]
    task_id = a.action("vms", vm, "clean_shutdown", sync=False).json()["taskId"]
    b.until(lambda: b.get(f"/rest/v0/tasks/{task_id}").json()["properties"].get("xapiTasks"), what="started")
    workers = worker_pids(gw.proc.process.pid)
    kill_workers(gw.proc.process.pid)
    task = b.until(lambda: (lambda t: t if t["status"] != "pending" else None)(
        b.get(f"/rest/v0/tasks/{task_id}").json()), what="the task interrupted")
    assert task["status"] == "interrupted" and "end" not in task
    b.until(lambda: set(worker_pids(gw.proc.process.pid)) - set(workers), what="a new worker")
    assert a.until(lambda: a.get(f"/rest/v0/tasks/{task_id}").status_code == 200, what="the new worker answering")
    assert a.get(f"/rest/v0/tasks/{task_id}").json()["status"] == "interrupted"
    assert b.action("tasks", task_id, "abort").status_code == 409
    # its XAPI task was marked with its process: a sweep cancels it (no task of a dead
    # process stays pending in the pool), and the VM stays as it was
    xapi_task = task["properties"]["xapiTasks"][0]["id"]
    b.until(lambda: b.get(f"/rest/v0/xapi-tasks/{xapi_task}").status_code == 404
            or b.get(f"/rest/v0/xapi-tasks/{xapi_task}").json()["status"] == "cancelled",
            what="the XAPI task swept", timeout=90)
    assert b.one("vms", vm)["power_state"] == "Running" and b.one("vms", vm)["current_operations"] == {}


def test_watch_streams_updates_and_removals(pair):
    sim, a, b, _ = pair
    assert b.get("/rest/v0/tasks", watch="true").status_code == 400
    lines, stop = [], threading.Event()

    def watch():
        with requests.get(b.url + "/rest/v0/tasks", params={"watch": "true", "ndjson": "true",
                                                            "fields": "status,properties"},
                          cookies={"authenticationToken": b.token}, stream=True, timeout=30) as response:
            assert response.headers["Content-Type"].startswith("application/x-ndjson")
            for line in response.iter_lines():
                if line:
                    lines.append(json.loads(line))
                if stop.is_set():
                    return
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.5)
    vm = _halted(a)
    task_id = a.action("vms", vm, "start", sync=False).json()["taskId"]
    a.wait(task_id)
    b.until(lambda: any(e == "update" and t["href"] == f"/rest/v0/tasks/{task_id}" and t["status"] == "success"
                        for e, t in lines), what="the task's end in the stream")
    assert a.request("DELETE", f"/rest/v0/tasks/{task_id}").status_code == 204
    b.until(lambda: ["remove", {"id": task_id}] in lines, what="its removal in the stream")
    assert all(set(t) <= {"status", "properties", "href", "url", "id"} for _, t in lines)
    stop.set()
    a.ok("vms", vm, "hard_shutdown")  # one more line, so the watcher's loop sees stop


def test_a_watcher_s_costly_filter_ends_its_stream_visibly(pair):
    """A watcher's filter runs under the same time budget as a listing's: a pattern that would
    backtrack for hours on a task's text ends the stream with an error line instead."""
    sim, a, b, _ = pair
    response = requests.get(b.url + "/rest/v0/tasks", params={"watch": "true", "ndjson": "true",
                                                              "filter": "/^(a|a)+$/"},
                            cookies={"authenticationToken": b.token}, stream=True, timeout=30)
    try:
        time.sleep(0.5)
        vm = _halted(a)
        a.ok("vms", vm, "snapshot", {"name_label": "a" * 40 + "!"})  # the task's params carry the name
        lines = [json.loads(line) for line in response.iter_lines() if line]  # the stream ends by itself
    finally:
        response.close()
    assert lines and lines[-1][0] == "error" and "too costly" in lines[-1][1]["error"], lines
    assert b.get("/rest/v0/hosts").status_code == 200


def test_a_watcher_does_not_hold_a_graceful_stop(pair, tmp_path):
    sim, a, b, gw = pair
    port = free_port()
    server = ServerProcess([PYTHON, "-m", "xorest", "serve", "--listen", f"127.0.0.1:{port}", "--workers", "1"],
                           str(tmp_path / "c.log"), env=gw.env, ready_url=f"http://127.0.0.1:{port}/rest/v0")
    ended = threading.Event()

    def watch():
        with requests.get(f"http://127.0.0.1:{port}/rest/v0/tasks", params={"watch": "true", "ndjson": "true"},
                          cookies={"authenticationToken": gw.token}, stream=True, timeout=60) as response:
            for _ in response.iter_lines():
                pass
        ended.set()
    threading.Thread(target=watch, daemon=True).start()
    time.sleep(1)
    started = time.monotonic()
    server.stop()  # SIGTERM: gunicorn's graceful stop, which waits for running requests
    assert time.monotonic() - started < 15 and ended.wait(5)


def test_delete_and_list_of_an_object(pair):
    sim, a, b, _ = pair
    assert b.request("DELETE", "/rest/v0/tasks").status_code == 204  # the tests before's ended tasks
    seconds(sim, VM_start=5)
    vm = _halted(a)
    running = a.action("vms", vm, "start", sync=False).json()["taskId"]
    refused = b.request("DELETE", f"/rest/v0/tasks/{running}")
    assert refused.status_code == 409
    ended = a.action("vms", vm, "pause", sync=False).json()["taskId"]  # refused by the pool: it ends at once
    assert a.wait(ended)["status"] == "failure"
    mine = [t["id"] for t in b.objects(f"vms/{vm}/tasks")]
    assert running in mine and ended in mine
    assert b.get(f"/rest/v0/vms/{vm}/tasks", filter="status:failure", fields="status").json() == [
        {"status": "failure", "href": f"/rest/v0/tasks/{ended}", "url": f"/rest/v0/tasks/{ended}"}]
    assert b.request("DELETE", "/rest/v0/tasks").status_code == 204
    left = {t["id"] for t in a.objects("tasks")}
    assert running in left and ended not in left and all(t["status"] == "pending" for t in a.objects("tasks"))
    assert a.get(f"/rest/v0/tasks/{ended}").status_code == 404
    assert a.get("/rest/v0/vms/nope/tasks").status_code == 404
    a.wait(running, timeout=30)


def test_xapi_tasks_are_their_own_collection(pair):
    sim, a, b, _ = pair
    seconds(sim, VM_start=3)
    task_id = a.action("vms", _halted(a), "start", sync=False).json()["taskId"]
    link = b.until(lambda: b.get(f"/rest/v0/tasks/{task_id}").json()["properties"].get("xapiTasks"),
                   what="the link")[0]
    xapi_task = b.until(lambda: b.get(link["href"]).json() if b.get(link["href"]).status_code == 200 else None,
                        what="the XAPI task in xapi-tasks")
    assert xapi_task["type"] == "task" and xapi_task["name_label"] == "Async.VM.start"
    assert "/rest/v0/xapi-tasks" in b.get("/rest/v0").json() and "/rest/v0/tasks" in b.get("/rest/v0").json()
    a.wait(task_id)


def test_transfers_are_tasks(pair):
    sim, a, b, _ = pair
    disk = next(d for d in a.objects("vdis") if d["size"] <= 1 << 30 and not d["name_label"].endswith(".iso"))
    body = a.get(f"/rest/v0/vdis/{disk['id']}.raw").content
    assert len(body) == disk["size"]
    export = b.until(lambda: [t for t in b.objects("tasks") if t["properties"]["name"] == "REST API: export VDI"
                              and t["properties"]["objectId"] == disk["id"] and t["status"] != "pending"],
                     what="the export's task")[0]
    assert export["status"] == "success" and export["result"]["bytes"] == disk["size"]
    assert export["properties"]["xapiTasks"][0]["method"] == "/export_raw_vdi"
    written = requests.put(f"{a.url}/rest/v0/vdis/{disk['id']}.raw", data=body[:1 << 20], timeout=60,
                           cookies={"authenticationToken": a.token})
    assert written.status_code == 204
    imported = [t for t in b.objects("tasks") if t["properties"]["name"] == "REST API: import VDI content"]
    assert imported and imported[-1]["status"] == "success"


def test_reads_show_writes_whichever_process_answers(pair):
    sim, a, b, _ = pair
    vm = _halted(a)
    for number in range(8):  # an edit on one server, at once a read on the other
        assert a.request("PATCH", f"/rest/v0/vms/{vm}", json={"nameLabel": f"renamed {number}"}).status_code == 204
        assert b.one("vms", vm)["name_label"] == f"renamed {number}"
    a.ok("vms", vm, "start")
    assert b.one("vms", vm)["power_state"] == "Running"
    task_id = b.action("vms", vm, "pause", sync=False).json()["taskId"]
    assert b.wait(task_id)["status"] == "success"
    assert a.one("vms", vm)["power_state"] == "Paused"  # a task's success: the change is there
    assert a.request("PUT", f"/rest/v0/vms/{vm}/tags/reads").status_code == 204
    assert "reads" in b.one("vms", vm)["tags"]
    assert "reads" in b.get("/rest/v0/vms", fields="tags", filter=f"id:{vm}").json()[0]["tags"]


def test_a_restarted_pool_does_not_make_reads_wait(tmp_path):
    sim = start_sim(tmp_path, "--vms", "5", "--seed", "3")
    gw = Gateway(tmp_path, sim.url, env={"XOREST_SYNC_WAIT": "8"})
    try:
        api = client(gw)
        vm = api.objects("vms")[0]["id"]
        for number in range(30):  # writes: the pool's event numbers grow well past a fresh pool's
            assert api.request("PUT", f"/rest/v0/vms/{vm}/tags/t{number}").status_code == 204
        port = sim.port
        sim.stop()
        sim = start_sim(tmp_path, "--vms", "5", "--seed", "3", port=port, name="again")
        # every worker has loaded the fresh pool: several answers in a row (any worker answers)
        api.until(lambda: all(api.get("/rest/v0/servers", fields="status").json()[0]["status"] == "connected"
                              and "t0" not in api.one("vms", vm)["tags"] for _ in range(6)),
                  what="the fresh pool loaded", timeout=60)
        started = time.monotonic()
        for _ in range(4):
            api.one("vms", vm)
        assert time.monotonic() - started < 4  # no read waited for a write of the old pool
        assert api.request("PATCH", f"/rest/v0/vms/{vm}", json={"nameLabel": "after restart"}).status_code == 204
        assert {api.one("vms", vm)["name_label"] for _ in range(4)} == {"after restart"}
    finally:
        gw.stop()
        sim.stop()
