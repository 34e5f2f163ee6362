"""Two xorest instances as one: separate data directories holding the same key, one
PostgreSQL database (a real server on a loopback port), the shipped nginx site with both
in its upstream block, and the simulator.  Whatever one instance changes (tokens,
revocations, lock-outs, servers, tasks, objects) the other shows at its next answer."""
import json
import os
import shutil
import socket
import threading
import time

import pytest
import requests

from xorest import config as config_module
from xorest.services.liveness import HEARTBEAT_SECONDS
from xorest.store import open_store

from .conftest import NGINX, PYTHON, Gateway, Nginx, ServerProcess, free_port, start_sim
from .management import Client, client, reset_timing, seconds
from .test_events import Stream, _vm

pytestmark = [pytest.mark.stack, pytest.mark.skipif(NGINX is None, reason="nginx is not installed")]

#: How long a change may take to show on the other instance before the test fails: a
#: liveness bound only (the changes are in the shared store before the answer).
LIVENESS = 10


def upstream_pair(first, second):
    """The shipped site with a second instance in its upstream block, after the first."""
    def adjust(site):
        line = f"server {first};"
        assert site.count(line) == 1, "the shipped site's upstream block is not one server line any more"
        return site.replace(line, f"{line}\n    server {second};")
    return adjust


class Cluster:
    """``a`` and ``b``: clients of each instance (the same admin token); ``nginx`` in front."""

    def __init__(self, tmp, database_url):
        self.tmp = tmp
        self.sim = start_sim(tmp, "--vms", "10", "--seed", "7")
        self.gw_a = Gateway(tmp, self.sim.url, name="a", env={
            "XOREST_DATABASE_URL": database_url, "XOREST_LOGIN_DELAY_BASE": "0", "XOREST_TASK_WAIT": "5",
            "XOREST_TRUSTED_PROXIES": "127.0.0.1"})
        # the second instance: a data directory of its own holding the first one's key
        self.b_data = tmp / "b-data"
        self.b_data.mkdir(mode=0o700)
        shutil.copy(os.path.join(self.gw_a.data_dir, "secret.key"), self.b_data / "secret.key")
        self.b_port = free_port()
        self.start_b()
        self.a, self.b = client(self.gw_a), Client(f"http://127.0.0.1:{self.b_port}", self.gw_a.token)
        self.nginx = Nginx(tmp, f"127.0.0.1:{self.gw_a.port}",
                           adjust=upstream_pair(f"127.0.0.1:{self.gw_a.port}", f"127.0.0.1:{self.b_port}"))

    def start_b(self):
        self.proc_b = ServerProcess(
            [PYTHON, "-m", "xorest", "serve", "--listen", f"127.0.0.1:{self.b_port}", "--workers", "2",
             "--threads", "16"], str(self.tmp / "b.log"), env={**self.gw_a.env, "XOREST_DATA_DIR": str(self.b_data)},
            ready_url=f"http://127.0.0.1:{self.b_port}/rest/v0")
        b = Client(f"http://127.0.0.1:{self.b_port}", self.gw_a.token)
        b.until(lambda: all(len(b.objects("vms")) > 0 for _ in range(6)), what="the second instance loaded")

    def stop(self):
        for proc in (self.nginx, self.proc_b, self.gw_a, self.sim):
            proc.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_cluster):
    nodes = Cluster(tmp_path_factory.mktemp("cluster"), postgres_cluster.new_database())
    yield nodes
    nodes.stop()


def _login(api, email, password):
    return requests.post(api.url + "/rest/v0/users/me/authentication_tokens", auth=(email, password),
                         json={"description": "cluster"}, timeout=30)


def _front(cluster, path, cookies, **params):
    """``GET`` through nginx (either instance answers)."""
    return requests.get(cluster.nginx.url + path, params=params, cookies=cookies, timeout=30,
                        verify=cluster.nginx.ca)


def _until_status(api, path, token, status):
    return api.until(lambda: requests.get(api.url + path, cookies={"authenticationToken": token},
                                          timeout=30).status_code == status,
                     timeout=LIVENESS, what=f"{path} answering {status} on {api.url}")


def test_the_second_instance_shares_the_first_one_s_database_not_its_files(cluster):
    files = os.listdir(cluster.b_data)
    assert "secret.key" in files and not [f for f in files if "sqlite" in f]  # PostgreSQL holds it all
    shared = {"fields": "id,host,label,enabled,status,poolId"}  # connection times are each process's own
    assert cluster.a.get("/rest/v0/servers", **shared).json() == cluster.b.get("/rest/v0/servers", **shared).json()
    assert cluster.b.get("/rest/v0/users", fields="email").json() == cluster.a.get("/rest/v0/users",
                                                                                  fields="email").json()


def test_a_token_made_on_one_works_on_the_other_until_revoked_there(cluster):
    made = _login(cluster.a, "user@example.com", "user-password")
    assert made.status_code == 201
    token, token_id = made.json()["token"]["id"], made.json()["token"]["token_id"]
    as_user = {"authenticationToken": token}
    assert requests.get(cluster.b.url + "/rest/v0/users/me", cookies=as_user, timeout=30).status_code == 200
    assert _front(cluster, "/rest/v0/users/me", as_user).status_code == 200
    listed = requests.get(cluster.b.url + "/rest/v0/users/me/authentication_tokens", cookies=as_user,
                          timeout=30).json()
    assert token_id in [t["id"] for t in listed]
    # revoked through the second instance: the first refuses it
    revoked = requests.delete(f"{cluster.b.url}/rest/v0/users/me/authentication_tokens/{token_id}",
                              cookies=as_user, timeout=30)
    assert revoked.status_code == 204
    _until_status(cluster.a, "/rest/v0/users/me", token, 401)
    assert _front(cluster, "/rest/v0/users/me", as_user).status_code == 401
    # the revocation made on one is in the audit trail read on the other
    deletes = cluster.a.get("/rest/v0/audit", filter="method:DELETE", fields="path,status").json()
    assert {"path": f"/rest/v0/users/me/authentication_tokens/{token_id}", "status": 204} in \
        [{key: entry[key] for key in ("path", "status")} for entry in deletes]


def test_a_lock_out_on_one_holds_on_the_other(cluster):
    cluster.gw_a.cli("user", "add", "guarded@example.com", "--password-stdin", input="guarded-password\n")
    for _ in range(10):  # XOREST_LOGIN_MAX_FAILURES
        assert _login(cluster.a, "guarded@example.com", "wrong").status_code == 401
    refused = _login(cluster.b, "guarded@example.com", "guarded-password")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert _login(cluster.b, "user@example.com", "user-password").status_code == 201  # another account


def test_servers_added_and_removed_on_one_are_known_to_the_other_at_its_next_read(cluster):
    other = start_sim(cluster.tmp, "--vms", "2", "--seed", "4", name="second-pool")
    try:
        added = cluster.a.request("POST", "/rest/v0/servers", json={"host": other.url, "username": "root",
                                                                     "password": "password", "label": "second"})
        assert added.status_code == 201
        server = added.json()["id"]
        for _ in range(6):  # each of the second instance's workers, whichever answers
            seen = cluster.b.get(f"/rest/v0/servers/{server}")
            assert seen.status_code == 200 and seen.json()["status"] == "connected"
            assert len(cluster.b.objects("pools")) == 2
        assert cluster.b.action("servers", server, "disconnect").status_code == 204
        assert cluster.a.one("servers", server)["status"] == "disconnected"
        assert cluster.b.action("servers", server, "connect").status_code == 204
        assert cluster.a.one("servers", server)["status"] == "connected"
        assert cluster.a.request("DELETE", f"/rest/v0/servers/{server}").status_code == 204
        for _ in range(6):
            assert cluster.b.get(f"/rest/v0/servers/{server}").status_code == 404
            assert len(cluster.b.objects("pools")) == 1
    finally:
        other.stop()


def test_a_task_started_on_one_is_seen_waited_for_and_aborted_from_the_other(cluster):
    a, b = cluster.a, cluster.b
    seconds(cluster.sim, VM_start=30)
    try:
        halted = a.objects("vms", "power_state:Halted")
        vm = halted[0]["id"] if halted else None
        if vm is None:
            vm = a.objects("vms", "power_state:Running")[0]["id"]
            a.ok("vms", vm, "hard_shutdown")
        task_id = a.action("vms", vm, "start", sync=False).json()["taskId"]
        seen = b.get(f"/rest/v0/tasks/{task_id}").json()
        assert seen["status"] == "pending" and seen["properties"]["objectId"] == vm
        assert task_id in [t.rsplit("/", 1)[-1] for t in b.get("/rest/v0/tasks").json()]
        b.until(lambda: b.get(f"/rest/v0/tasks/{task_id}").json()["properties"].get("xapiTasks"),
                what="the XAPI task", timeout=LIVENESS)
        waited = {}
        waiter = threading.Thread(target=lambda: waited.update(b.get(f"/rest/v0/tasks/{task_id}",
                                                                     wait="true").json()))
        waiter.start()
        assert b.action("tasks", task_id, "abort").status_code == 204
        waiter.join(LIVENESS)
        assert waited["status"] == "failure" and waited["result"]["code"] == "TASK_CANCELLED"
        assert a.get(f"/rest/v0/tasks/{task_id}").json()["status"] == "failure"
        assert a.one("vms", vm)["power_state"] == "Halted" and b.one("vms", vm)["current_operations"] == {}
    finally:
        reset_timing(cluster.sim)


def test_a_silent_machine_s_tasks_are_interrupted_on_every_instance(cluster):
    """The instances note their machine alive in the database; a task another machine left
    pending when it went silent (written as it left it) is interrupted, whoever reads it."""
    store = open_store(config_module.load({"data_dir": str(cluster.b_data),
                                           "database_url": cluster.gw_a.env["XOREST_DATABASE_URL"]}, environ={}))
    assert time.time() - store.hosts_alive()[socket.gethostname()] < 3 * HEARTBEAT_SECONDS
    body = json.dumps({"id": "0mgone0000-machine001", "properties": {"name": "REST API: a machine died"},
                       "start": 1000, "status": "pending", "updatedAt": 1000, "progress": 40})
    store.add_task("0mgone0000-machine001", "a-machine-that-died:77:1", "pending", None, body, 1.0)
    store.note_host_alive("a-machine-that-died", time.time() - 3600)
    assert cluster.b.get("/rest/v0/tasks/0mgone0000-machine001").json()["status"] == "interrupted"
    assert cluster.a.get("/rest/v0/tasks/0mgone0000-machine001").json()["status"] == "interrupted"
    assert cluster.a.action("tasks", "0mgone0000-machine001", "abort").status_code == 409


def test_listings_agree_and_show_the_other_instance_s_writes(cluster):
    fields = {"fields": "name_label,power_state,tags", "filter": "!is_a_template?"}
    assert cluster.a.get("/rest/v0/vms", **fields).json() == cluster.b.get("/rest/v0/vms", **fields).json()
    vm = cluster.a.objects("vms")[0]["id"]
    for name in ("renamed through a", "renamed again"):
        assert cluster.a.request("PATCH", f"/rest/v0/vms/{vm}", json={"nameLabel": name}).status_code == 204
        assert cluster.b.one("vms", vm)["name_label"] == name  # the next read, no polling
    assert cluster.a.get("/rest/v0/vms", **fields).json() == cluster.b.get("/rest/v0/vms", **fields).json()


def test_events_of_a_stream_on_one_follow_subscriptions_made_on_the_other(cluster):
    cookies = {"authenticationToken": cluster.gw_a.token}
    stream = Stream(cluster.a.url, cookies)
    try:
        added = requests.post(f"{cluster.b.url}/rest/v0/events/{stream.id}/subscriptions", cookies=cookies,
                              json={"collection": "VM", "fields": ["name_label"]}, timeout=30)
        assert added.status_code == 201
        rpc, ref, uuid = _vm(cluster.sim)
        original = rpc("VM.get_name_label", ref)
        rpc("VM.set_name_label", ref, "seen on the other instance")
        stream.wait("update", lambda data: data.get("name_label") == "seen on the other instance", timeout=LIVENESS)
        rpc("VM.set_name_label", ref, original)
    finally:
        stream.close()


def _served(log_path):
    with open(log_path) as fh:
        return fh.read().count('"GET /rest/v0/vms"')


def test_nginx_spreads_requests_over_both_and_keeps_answering_when_one_stops(cluster):
    cookies = {"authenticationToken": cluster.gw_a.token}
    a_log, b_log = cluster.gw_a.proc.log_path, cluster.proc_b.log_path
    before = _served(a_log), _served(b_log)
    answers = [_front(cluster, "/rest/v0/vms", cookies, fields="name_label") for _ in range(20)]
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.text for answer in answers}) == 1  # the same listing, whoever answered
    assert _served(a_log) > before[0] and _served(b_log) > before[1]
    cluster.proc_b.stop()
    try:
        for _ in range(10):
            assert _front(cluster, "/rest/v0/vms", cookies, fields="name_label").text == answers[0].text
    finally:
        cluster.start_b()
