"""Xen Orchestra's JSON-RPC API at ``/api/`` over a WebSocket: a Python client, npm's xo-lib
(the library xo-cli uses), straight to gunicorn and through the shipped nginx site."""
import json
import os
import ssl
import subprocess
import threading
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .conftest import NGINX, Gateway, Nginx, npm_package
from .management import reset_timing, seconds
from .test_sim import JsonRpc


class Client:
    """A JSON-RPC peer over a WebSocket; notifications are kept apart from answers."""

    def __init__(self, url, **kwargs):
        self.ws = connect(url, open_timeout=10, **kwargs)
        self.next_id = 0
        self.notifications = []

    def send(self, payload):
        self.ws.send(payload if isinstance(payload, str) else json.dumps(payload))

    def receive(self, timeout=15):
        while True:
            message = json.loads(self.ws.recv(timeout=timeout))
            if isinstance(message, dict) and message.get("method") == "all":
                self.notifications.append(message["params"])
                continue
            return message

    def call(self, method, **params):
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        answer = self.receive()
        assert answer["id"] == self.next_id, answer
        return answer

    def close(self):
        self.ws.close()


def _ws(gw):
    return gw.url.replace("http://", "ws://") + "/api/"


@pytest.fixture
def client(gateway):
    c = Client(_ws(gateway))
    yield c
    c.close()


def test_sign_in_tokens_and_objects(gateway, client):
    assert client.call("system.getServerVersion")["result"].startswith("5.")
    before = client.call("xo.getAllObjects")
    assert before["error"]["code"] == 2 and before["error"]["message"] == "not enough permissions"
    wrong = client.call("session.signIn", email="admin@example.com", password="wrong-password")
    assert wrong["error"]["code"] == 3 and wrong["error"]["message"] == "invalid credentials"
    time.sleep(0.1)  # past the (test) pause after a failure
    user = client.call("session.signIn", email="admin@example.com", password="admin-password")["result"]
    assert user["email"] == "admin@example.com" and user["permission"] == "admin"
    assert client.call("session.getUser")["result"]["id"] == user["id"]
    token = client.call("token.create", expiresIn="1h", description="from JSON-RPC")["result"]
    listing = requests.get(gateway.url + "/rest/v0/vms", cookies={"authenticationToken": token}, timeout=10)
    assert listing.status_code == 200 and listing.json()
    mine = {t["description"]: t for t in client.call("token.getAll")["result"]}
    assert mine["from JSON-RPC"]["expires_at"] - mine["from JSON-RPC"]["created_at"] == pytest.approx(3600, abs=5)
    # the REST API's rules: a lifetime too short, a role above the user's
    assert client.call("token.create", expiresIn=1000)["error"]["code"] == 10  # 1 s (milliseconds, as XO)
    # objects, with Xen Orchestra's filters: a partial object, a live filter, a limit
    vms = client.call("xo.getAllObjects", filter={"type": "VM"})["result"]
    assert vms and all(obj["type"] == "VM" for obj in vms.values())
    assert set(vms) == {url.rsplit("/", 1)[1] for url in gateway.get("/rest/v0/vms").json()}
    running = client.call("xo.getAllObjects", filter="type:VM power_state:Running")["result"]
    assert running and all(obj["power_state"] == "Running" for obj in running.values())
    assert len(client.call("xo.getAllObjects", limit=3)["result"]) == 3
    bad = client.call("xo.getAllObjects", filter="((")
    assert bad["error"]["code"] == 10
    # sign in with the token; deleting it ends what it opened
    other = Client(_ws(gateway))
    try:
        assert other.call("session.signIn", token=token)["result"]["email"] == "admin@example.com"
        assert other.call("xo.getAllObjects", limit=1)["result"]
        client.call("token.deleteOwn", tokens=[token])
        assert other.call("xo.getAllObjects", limit=1)["error"]["code"] == 2
        assert requests.get(gateway.url + "/rest/v0/vms", cookies={"authenticationToken": token},
                            timeout=10).status_code == 401
    finally:
        other.close()
    client.call("session.signOut")
    assert client.call("xo.getAllObjects")["error"]["code"] == 2
    methods = client.call("system.getMethodsInfo")["result"]
    assert {"session.signIn", "token.create", "xo.getAllObjects"} <= set(methods)
    # as Xen Orchestra: null for methods anyone may call, else the permission needed
    assert methods["session.signIn"]["permission"] is None and methods["vm.start"]["permission"] == "vm.operate"
    assert methods["vm.stop"]["params"]["forceShutdownDelay"] == {"type": "number", "default": 0}


def test_changes_arrive_as_notifications(gateway, client, sim):
    client.call("session.signIn", email="admin@example.com", password="admin-password")
    vms = client.call("xo.getAllObjects", filter={"type": "VM"})["result"]
    vm = next(iter(vms.values()))
    rpc = JsonRpc(sim.url)
    ref = rpc("VM.get_by_uuid", vm["uuid"])
    original = rpc("VM.get_name_label", ref)
    rpc("VM.set_name_label", ref, "renamed for a notification")
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            seen = [n for n in client.notifications if n["type"] == "enter" and vm["id"] in n["items"]]
            if seen:
                assert seen[-1]["items"][vm["id"]]["name_label"] == "renamed for a notification"
                break
            try:
                client.receive(timeout=0.5)
            except TimeoutError:
                pass
        else:
            pytest.fail(f"no notification for {vm['id']}: {client.notifications}")
    finally:
        rpc("VM.set_name_label", ref, original)


def test_bad_input_gets_an_error_or_a_reasoned_close(gateway, client):
    client.send("{not json")
    assert client.receive()["error"]["code"] == -32700
    client.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": 42}))
    assert client.receive()["error"]["code"] == -32600
    assert client.call("no.such.method")["error"] == {"code": -32601, "message": "method not found: no.such.method",
                                                      "data": "no.such.method"}
    assert client.call("session.signIn", nope=1)["error"]["code"] == 10
    batch = [{"jsonrpc": "2.0", "id": n, "method": "system.getVersion"} for n in range(3)]
    client.send(batch)
    answers = client.receive()
    assert [a["result"] for a in answers] == ["0.1"] * 3
    client.send([])
    assert client.receive()["error"]["code"] == -32600
    client.send({"jsonrpc": "2.0", "method": "system.getVersion"})  # a notification: no answer
    assert client.call("system.getVersion")["result"] == "0.1"
    client.send("x" * (2 << 20))  # over the 1 MiB message limit
    with pytest.raises(ConnectionClosed) as closed:
        client.receive()
    assert closed.value.rcvd.code == 1009
    # plain HTTP to the endpoint: a clear JSON error
    plain = requests.get(gateway.url + "/api/", timeout=10)
    assert plain.status_code == 400 and "WebSocket" in plain.json()["error"]


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_through_the_nginx_site(sim, tmp_path):
    gw = Gateway(tmp_path, sim.url, workers=1, unix_socket=str(tmp_path / "gunicorn.sock"),
                 env={"XOREST_TRUSTED_PROXIES": "unix"})
    nginx = Nginx(tmp_path, f"unix:{gw.unix_socket}")
    try:
        context = ssl.create_default_context(cafile=nginx.ca)
        c = Client(nginx.url.replace("https://", "wss://") + "/api/", ssl_context=context)
        try:
            assert c.call("session.signIn", email="admin@example.com", password="admin-password")["result"]
            assert c.call("xo.getAllObjects", limit=2)["result"]
        finally:
            c.close()
        _xo_lib_through_nginx(gw, nginx, sim, tmp_path)
    finally:
        nginx.stop()
        gw.stop()


#: npm's xo-lib through the nginx site: sign in with a token, create a token and use it,
#: delete it, read objects with a filter, start a VM and see it change in the notifications.
XO_LIB_NGINX_SCRIPT = r"""
const Xo = require('xo-lib').default
const [url, token, vmId] = process.argv.slice(2)
const out = { notified: [] }
const connect = async credentials => {
  const xo = new Xo({ url })
  await xo.open()
  try { await xo.signIn(credentials) } catch (error) { await xo.close(); throw error }
  return xo
}
const within = (promise, what) => Promise.race([promise, new Promise((_, reject) =>
  setTimeout(() => reject(new Error(what)), 30000).unref())])
;(async () => {
  const xo = await connect({ token })
  let running
  const started = new Promise(resolve => { running = resolve })
  xo.on('notification', ({ method, params }) => {
    if (method !== 'all') return
    out.notified.push(...Object.keys(params.items))
    const vm = params.items[vmId]
    if (params.type === 'enter' && vm && vm.power_state === 'Running') running()
  })
  out.user = xo.user.email
  out.created = await xo.call('token.create', { description: 'xo-lib through nginx', expiresIn: '1h' })
  const other = await connect({ token: out.created })
  out.createdReads = Object.keys(await other.call('xo.getAllObjects', { filter: 'type:host' })).length
  await other.close()
  out.halted = Object.keys(await xo.call('xo.getAllObjects', { filter: { type: 'VM', power_state: 'Halted' } }))
  out.started = await xo.call('vm.start', { id: vmId })
  await within(started, 'no notification of the VM running')
  out.deleted = await xo.call('token.deleteOwn', { tokens: [out.created] })
  try { await connect({ token: out.created }) } catch (error) { out.afterDelete = error.code }
  console.log(JSON.stringify(out))
  await xo.close()
})().catch(error => { console.error(error); process.exit(1) })
"""


def _xo_lib_through_nginx(gw, nginx, sim, tmp_path):
    node, folder = npm_package("xo-lib@0.9.0", "xo-lib")
    script = os.path.join(folder, "xo-lib-nginx-test.js")
    with open(script, "w") as fh:
        fh.write(XO_LIB_NGINX_SCRIPT)
    vm = _halted_vm(gw)
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": nginx.ca}
    try:
        done = subprocess.run([node, script, nginx.url, gw.token, vm["id"]], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout.strip().splitlines()[-1])
        task = next(t for t in gw.get(f"/rest/v0/vms/{vm['id']}/tasks?fields=properties,status").json()
                    if t["properties"]["name"] == "API call: vm.start")
    finally:
        _halt(sim, vm["id"])
    assert out["user"] == "admin@example.com" and out["createdReads"] > 0 and out["started"] is True
    assert vm["id"] in out["halted"] and out["deleted"] is True and out["afterDelete"] == 3
    assert requests.get(gw.url + "/rest/v0/vms", headers={"Authorization": f"Bearer {out['created']}"},
                        timeout=10).status_code == 401
    # the task, in the log and as Xen Orchestra notifies it (XAPI's task among the objects)
    assert task["status"] == "success"
    assert {t["id"] for t in task["properties"]["xapiTasks"]} <= set(out["notified"])


XO_LIB_SCRIPT = r"""
const Xo = require('xo-lib').default
const [url, email, password] = process.argv.slice(2)
const xo = new Xo({ url })
const out = {}
const seen = new Promise(resolve => xo.on('notification', message => {
  if (message.method === 'all' && message.params.type === 'enter') resolve(message.params)
}))
;(async () => {
  await xo.open()
  await xo.signIn({ email, password })
  out.user = xo.user
  out.token = await xo.call('token.create', { description: 'xo-lib test' })
  out.vms = Object.keys(await xo.call('xo.getAllObjects', { filter: { type: 'VM' } }))
  try { await xo.call('no.such.method') } catch (error) { out.error = { code: error.code, message: error.message } }
  console.log('ready')
  const changed = await Promise.race([seen, new Promise((_, reject) =>
    setTimeout(() => reject(new Error('no notification')), 20000).unref())])
  out.changed = Object.keys(changed.items)
  console.log(JSON.stringify(out))
  await xo.close()
})().catch(error => { console.error(error); process.exit(1) })
"""


def test_npm_xo_lib(gateway, sim, tmp_path):
    node, folder = npm_package("xo-lib@0.9.0", "xo-lib")
    script = os.path.join(folder, "xo-lib-test.js")
    with open(script, "w") as fh:
        fh.write(XO_LIB_SCRIPT)
    proc = subprocess.Popen([node, script, gateway.url, "admin@example.com", "admin-password"], cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        rpc = JsonRpc(sim.url)
        ref = next(r for r, v in rpc("VM.get_all_records").items()
                   if not (v["is_a_template"] or v["is_control_domain"] or v["is_a_snapshot"]))
        uuid = rpc("VM.get_uuid", ref)
        original = rpc("VM.get_name_label", ref)
        changer = threading.Timer(0.5, lambda: rpc("VM.set_name_label", ref, "changed for xo-lib"))
        changer.start()
        out, err = proc.communicate(timeout=60)
        changer.join()
        rpc("VM.set_name_label", ref, original)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["user"]["email"] == "admin@example.com"
    assert requests.get(gateway.url + "/rest/v0/hosts", cookies={"authenticationToken": result["token"]},
                        timeout=10).status_code == 200
    assert uuid in result["vms"] and uuid in result["changed"]
    assert result["error"]["code"] == -32601


def test_xoadmin_logs_in_and_reads_over_rest(gateway):
    """PyPI's xoadmin: a token over the WebSocket, then the REST API with its cookie."""
    import asyncio

    from xoadmin.api.api import XOAPI

    async def run():
        api = XOAPI(gateway.url + "/rest/v0", ws_url=gateway.url.replace("http://", "ws://"), verify_ssl=False)
        await api.authenticate_with_websocket("admin@example.com", "admin-password")
        try:
            return api.auth_token, await api._request("GET", "hosts")
        finally:
            await api.close()

    token, hosts = asyncio.run(run())
    assert len(token) == 43
    answer = hosts.json() if hasattr(hosts, "json") else hosts
    assert answer == gateway.get("/rest/v0/hosts").json()


def test_methods_declare_their_rest_operations_permission():
    """A JSON-RPC method that does what a REST operation does needs what that route declares."""
    from xorest.api import actions, auth, collections, edits, routes  # noqa: F401 (they declare the routes)
    from xorest.services.jsonrpc import METHODS

    by_route = {f"{method} {op.rule}": op.permission for op in routes.OPERATIONS.values() for method in op.methods}
    mirrored = {name: m for name, m in METHODS.items() if m.rest}
    assert {"vm.start", "vm.stop", "vm.snapshot", "vm.delete", "vm.set", "host.restart", "sr.scan"} <= set(mirrored)
    for name, found in mirrored.items():
        assert found.rest in by_route, (name, found.rest)
        assert found.permission == by_route[found.rest], name
        assert found.audit or not found.rest.startswith(("POST", "PATCH", "DELETE")), name


def _halted_vm(gateway):
    vms = gateway.get("/rest/v0/vms?filter=power_state:Halted&fields=id,name_label").json()
    return max(vms, key=lambda v: v["id"])


def _halt(sim, uuid):
    rpc = JsonRpc(sim.url)
    ref = rpc("VM.get_by_uuid", uuid)
    if rpc("VM.get_power_state", ref) != "Halted":
        rpc("VM.hard_shutdown", ref)


def test_vm_actions_are_tasks_audited_and_notified(gateway, client, sim):
    client.call("session.signIn", email="admin@example.com", password="admin-password")
    vm = _halted_vm(gateway)
    client.call("xo.getAllObjects", filter={"type": "VM"})
    try:
        assert client.call("vm.start", vm=vm["id"]) == {"jsonrpc": "2.0", "id": client.next_id, "result": True}
        assert gateway.get(f"/rest/v0/vms/{vm['id']}").json()["power_state"] == "Running"
        tasks = gateway.get(f"/rest/v0/vms/{vm['id']}/tasks?fields=properties,status").json()
        task = next(t for t in tasks if t["properties"]["name"] == "API call: vm.start")
        assert task["status"] == "success" and task["properties"]["userId"]
        xapi_tasks = {t["id"] for t in task["properties"]["xapiTasks"]}
        # as Xen Orchestra's clients see it: the VM running, and XAPI's task, in the `all` notifications
        seen, deadline = set(), time.monotonic() + 15
        while time.monotonic() < deadline and not (xapi_tasks <= seen and running(client, vm["id"])):
            try:
                client.receive(timeout=0.5)
            except TimeoutError:
                pass
            seen = {key for n in client.notifications for key in n["items"]}
        assert xapi_tasks <= seen and running(client, vm["id"]), client.notifications
        # XAPI's refusal as Xen Orchestra words it, the VM named by its id
        again = client.call("vm.start", id=vm["id"])["error"]
        assert again["code"] == 13 and again["data"] == {"objectId": vm["id"], "expected": "halted",
                                                         "actual": "running"}
        snapshot = client.call("vm.snapshot", id=vm["id"], name="rpc snapshot", description="from JSON-RPC")["result"]
        assert gateway.get(f"/rest/v0/vm-snapshots/{snapshot}").json()["name_description"] == "from JSON-RPC"
        assert client.call("vm.delete", id=snapshot)["result"] is True
        assert gateway.get(f"/rest/v0/vm-snapshots/{snapshot}").status_code == 404
        assert client.call("vm.set", id=vm["id"], name_description="set over JSON-RPC")["result"] is True
        assert gateway.get(f"/rest/v0/vms/{vm['id']}").json()["name_description"] == "set over JSON-RPC"
        assert client.call("vm.set", id=vm["id"], videoram=3)["error"]["code"] == 10  # PATCH's checks
        # a clean shutdown still running after forceShutdownDelay ms is aborted, the VM powered off
        seconds(sim, VM_clean_shutdown=60)
        try:
            assert client.call("vm.stop", id=vm["id"], forceShutdownDelay=300)["result"] is True
        finally:
            reset_timing(sim)
        assert gateway.get(f"/rest/v0/vms/{vm['id']}").json()["power_state"] == "Halted"
        stops = [t for t in gateway.get(f"/rest/v0/vms/{vm['id']}/tasks?fields=properties,status").json()
                 if t["properties"]["name"] == "API call: vm.stop"]
        assert [t["status"] for t in stops[-2:]] == ["failure", "success"]
        assert client.call("vm.start", id=vm["id"])["result"] is True
        assert client.call("vm.stop", id=vm["id"], force=True)["result"] is True
        assert gateway.get(f"/rest/v0/vms/{vm['id']}").json()["power_state"] == "Halted"
        assert client.call("vm.snapshot", id=vm["id"], saveMemory=True)["error"]["code"] == 0  # not implemented
    finally:
        _halt(sim, vm["id"])
    audit = gateway.get("/rest/v0/audit?filter=operation:vm.start&fields=method,path,status,user_email").json()
    assert {"method": "RPC", "path": "/api/", "status": 200, "user_email": "admin@example.com"} in [
        {k: entry[k] for k in ("method", "path", "status", "user_email")} for entry in audit]
    assert any(entry["status"] == 409 for entry in audit)
    # the tasks the calls started record their end under the call that started them
    ends = gateway.get("/rest/v0/audit?filter=method:TASK operation:vm.start&fields=path,status").json()
    assert ends and {entry["status"] for entry in ends} <= {200, 409}
    assert all(entry["path"].startswith("/rest/v0/tasks/") for entry in ends)
    assert client.call("vm.copy", id=vm["id"])["error"]["code"] == -32601  # not served: method not found
    assert client.call("vm.start", id="no-such-vm")["error"]["code"] == 1


def running(client, vm_id):
    return any(n["type"] == "enter" and n["items"].get(vm_id, {}).get("power_state") == "Running"
               for n in client.notifications)


def test_roles_and_scopes_apply_to_calls(gateway, sim):
    vm, other = sorted(gateway.get("/rest/v0/vms?filter=power_state:Halted&fields=id").json(),
                       key=lambda v: v["id"])[:2]
    reader = gateway.cli("token", "create", "admin@example.com", "--role", "read-only").strip()
    scoped = gateway.cli("token", "create", "admin@example.com", "--scope", f"uuid:{vm['id']}").strip()
    c = Client(_ws(gateway))
    try:
        c.call("session.signIn", token=reader)
        refused = c.call("vm.start", id=vm["id"])["error"]
        assert refused["code"] == 2 and refused["data"]["permission"] == "vm.operate"
        c.call("session.signIn", token=scoped)
        assert set(c.call("xo.getAllObjects", filter={"type": "VM"})["result"]) == {vm["id"]}
        hidden = c.call("vm.start", id=other["id"])["error"]
        assert hidden["code"] == 1 and hidden["data"]["id"] == other["id"]  # as if it did not exist
        assert c.call("host.restart", id="anything")["error"]["code"] == 1
    finally:
        c.close()
    assert gateway.get(f"/rest/v0/vms/{other['id']}").json()["power_state"] == "Halted"


def test_token_delete_by_an_admin(gateway):
    user = Client(_ws(gateway))
    admin = Client(_ws(gateway))
    try:
        user.call("session.signIn", email="user@example.com", password="user-password")
        token = user.call("token.create", description="to revoke")["result"]
        other = user.call("token.create", description="revoked by pattern")["result"]
        assert user.call("token.delete", tokens=[token])["error"]["code"] == 2  # admins only
        admin.call("session.signIn", email="admin@example.com", password="admin-password")
        assert admin.call("token.delete", tokens=[token, "no-such-token"])["result"] is True
        assert admin.call("token.delete", pattern={"description": "revoked by pattern"})["result"] is True
        for revoked in (token, other):
            assert requests.get(gateway.url + "/rest/v0/users/me/authentication_tokens",
                                headers={"Authorization": f"Bearer {revoked}"}, timeout=10).status_code == 401
        assert user.call("token.getAll")["result"]  # the user's password session goes on
    finally:
        user.close()
        admin.close()
