"""Least privilege through gunicorn: every declared operation against every role, each role
doing real work in each family of operations, scoped tokens over the simulator's objects
(listings, exports, imports, actions, the task log, messages and alarms, event streams and
JSON-RPC, with VMs moving in and out of scope while clients watch), tokens that cannot
outgrow their maker, pool-admins managing anyone's tokens, the audit trail, and what the
CLI prints."""
import getpass
import http.client
import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest
import requests
from websockets.sync.client import connect

from xorest.api import routes
from xorest.services.permissions import ROLES, has_permission

from .conftest import PYTHON, ROOT, Gateway, start_sim
from .management import Client
from .test_events import Stream
from .test_sim import JsonRpc

NOWHERE = "00000000-0000-0000-0000-000000000000"
#: The tag that puts VMs in the scope of the scoped tokens of these tests.
SCOPE_TAG = "in-scope"


@pytest.fixture(scope="module")
def roles_sim(tmp_path_factory):
    """This module's own pool: its tests write (actions, edits, deletions, imports, tags)."""
    proc = start_sim(tmp_path_factory.mktemp("roles-sim"), "--seed", "1", "--vms", "50")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def roles_gateway(roles_sim, tmp_path_factory):
    """A gateway with one user per role (and one without), each with a token."""
    gw = Gateway(tmp_path_factory.mktemp("roles"), roles_sim.url, name="gw-roles")
    tokens, passwords = {}, {}
    for role in (*ROLES, None):
        email = f"{role or 'norole'}@example.com"
        passwords[role] = f"{email}-password"
        gw.cli("user", "add", email, *(["--role", role] if role else []), "--password-stdin",
               input=f"{passwords[role]}\n")
        tokens[role] = gw.cli("token", "create", email).strip()
    gw.tokens, gw.passwords = tokens, passwords
    yield gw
    gw.stop()


def _as(token):
    return {"authenticationToken": token}


def _api(gw, role="pool-admin"):
    return Client(gw.url, gw.tokens[role])


def _everywhere(check, what, times=6, timeout=30):
    """``check()`` holds several times in a row: requests land on any worker, and each
    worker's cache follows the pool on its own."""
    deadline, good = time.monotonic() + timeout, 0
    while good < times:
        good = good + 1 if check() else 0
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never held on every worker")
        if good < times:
            time.sleep(0.05)


RULES = {}  # endpoint -> the rule as the app serves it (with its blueprint's prefix)


def _concrete(op):
    """A URL for ``op`` naming objects that do not exist: allowed roles get an answer about
    the request (404, 400...), never a change; refused roles get a 403 first."""
    path = RULES[op.endpoint]

    def fill(match):
        converter, name = match.group(1), match.group(2)
        if converter and converter.startswith("any("):
            return re.findall(r"[\w-]+", converter[4:])[0]
        return {"fmt": "raw", "sub": "messages", "user": "me"}.get(name, NOWHERE)
    return re.sub(r"<(?:([^:>]+):)?([^>]+)>", fill, path)


def _send(gw, op, token):
    method = next(m for m in op.methods if m not in ("HEAD", "OPTIONS"))
    kwargs = {"timeout": 30, "allow_redirects": False, "stream": True}
    if token is not None:
        kwargs["cookies"] = {"authenticationToken": token}
    if op.body is routes.BINARY:
        kwargs["data"] = b""
    elif op.body is not None:
        kwargs["json"] = {}
    answer = requests.request(method, gw.url + _concrete(op), **kwargs)
    if answer.headers.get("Content-Type", "").startswith("text/event-stream"):
        answer.close()  # a stream (GET /events) never ends by itself: its status is the answer
    else:
        answer.content  # read it all
    return answer


def _declared_operations():
    """Every operation the app declares (declared when its blueprints are imported)."""
    import tempfile

    from xorest.app import create_app

    app = create_app({"data_dir": tempfile.mkdtemp()})
    RULES.update({rule.endpoint: rule.rule for rule in app.url_map.iter_rules()})
    assert len(routes.OPERATIONS) > 20
    return sorted(routes.OPERATIONS.values(), key=lambda o: o.endpoint)


def test_every_operation_against_every_role(roles_gateway):
    """The matrix: each declared operation, each role (and none): refused exactly when the
    role lacks the operation's permission, with a 403 naming it.  Objects named do not
    exist, so what an allowed role gets is an answer about the request, never a change."""
    gw = roles_gateway
    checked = 0
    operations = _declared_operations()
    for op in operations:
        for role, token in gw.tokens.items():
            answer = _send(gw, op, token)
            # a "self" route about another user (here: nobody) needs its declared "others" permission
            about_another = op.others is not None and "/users/me" not in _concrete(op)
            needed = op.others if about_another else op.permission
            allowed = has_permission(role, needed)
            if allowed:
                assert answer.status_code != 403, (op.endpoint, role, answer.text)
            else:
                assert answer.status_code == 403, (op.endpoint, role, answer.status_code, answer.text)
                assert answer.headers.get("Content-Type") == "application/json", (op.endpoint, role, answer.text)
                assert answer.json()["data"]["permission"] == needed
            checked += 1
        if op.permission != "public":
            assert _send(gw, op, None).status_code == 401, op.endpoint
    assert checked == len(operations) * len(gw.tokens)


def test_a_token_does_no_more_than_its_role(roles_gateway):
    gw = roles_gateway
    admin = gw.tokens["pool-admin"]
    made = requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", json={"role": "read-only"},
                         cookies={"authenticationToken": admin}, timeout=10)
    assert made.status_code == 201 and made.json()["token"]["role"] == "read-only"
    reader = made.json()["token"]["id"]
    cookies = {"authenticationToken": reader}
    assert requests.get(gw.url + "/rest/v0/vms", cookies=cookies, timeout=10).status_code == 200
    refused = requests.get(gw.url + "/rest/v0/users", cookies=cookies, timeout=10)
    assert refused.status_code == 403 and refused.json()["data"]["required"] == "pool-admin"
    # a token cannot make a stronger one, nor can a user give a token more than they have
    stronger = requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", json={"role": "pool-admin"},
                             cookies=cookies, timeout=10)
    assert stronger.status_code == 403
    operator = requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", json={"role": "pool-admin"},
                             cookies={"authenticationToken": gw.tokens["vm-operator"]}, timeout=10)
    assert operator.status_code == 403 and "vm-operator" in operator.json()["error"]
    unknown = requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", json={"role": "root"},
                            cookies=cookies, timeout=10)
    assert unknown.status_code == 400


def _tagged(sim, count, tag):
    rpc = JsonRpc(sim.url)
    vms = [ref for ref, r in rpc("VM.get_all_records").items()
           if not (r["is_a_template"] or r["is_control_domain"] or r["is_a_snapshot"]) and r["VBDs"] and r["VIFs"]]
    chosen = sorted(vms)[:count]
    for ref in chosen:
        rpc("VM.add_tags", ref, tag)
    return rpc, chosen


def _scoped(gw, scope, role=None):
    body = {"scope": scope, **({"role": role} if role else {})}
    made = requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", json=body, timeout=10,
                         cookies={"authenticationToken": gw.tokens["pool-admin"]})
    assert made.status_code == 201, made.text
    return made.json()["token"]["id"]


def _ids(gw, token, path):
    answer = requests.get(gw.url + path, cookies={"authenticationToken": token}, timeout=30)
    assert answer.status_code == 200, answer.text
    return {url.rsplit("/", 1)[1] for url in answer.json()}


def test_a_scoped_token_sees_its_vms_and_what_depends_on_them(roles_gateway, roles_sim):
    gw = roles_gateway
    rpc, chosen = _tagged(roles_sim, 3, "team-a")
    try:
        uuids = {rpc("VM.get_uuid", ref) for ref in chosen}
        token = _scoped(gw, {"filter": "tags:team-a"})
        admin = gw.tokens["pool-admin"]
        gw.wait_for = lambda: _ids(gw, admin, "/rest/v0/vms?filter=tags:team-a") == uuids
        deadline_ok = any(gw.wait_for() for _ in range(100))
        assert deadline_ok
        assert _ids(gw, token, "/rest/v0/vms") == uuids
        # the request's own filter narrows the scope, never widens it
        one = sorted(uuids)[0]
        assert _ids(gw, token, f"/rest/v0/vms?filter=id:{one}") == {one}
        assert _ids(gw, token, "/rest/v0/vms?filter=!tags:team-a") == set()
        # what depends on those VMs (and their snapshots), and nothing else
        snapshots = {s["id"] for s in gw.get("/rest/v0/vm-snapshots?fields=id,$snapshot_of").json()
                     if s.get("$snapshot_of") in uuids}
        assert _ids(gw, token, "/rest/v0/vm-snapshots") == snapshots
        owners = [gw.get(f"/rest/v0/vms/{uuid}").json() for uuid in uuids] + \
            [gw.get(f"/rest/v0/vm-snapshots/{snap}").json() for snap in snapshots]
        vbds = {vbd for owner in owners for vbd in owner["$VBDs"]}
        assert _ids(gw, token, "/rest/v0/vbds") == vbds
        disks = {gw.get(f"/rest/v0/vbds/{vbd}").json().get("VDI") for vbd in vbds} - {None}
        assert _ids(gw, token, "/rest/v0/vdis") == disks & _ids(gw, admin, "/rest/v0/vdis")
        vifs = {vif for owner in owners for vif in owner["VIFs"]}
        assert _ids(gw, token, "/rest/v0/vifs") == vifs
        for name in ("hosts", "srs", "networks", "pools", "vm-templates", "servers"):
            assert _ids(gw, token, f"/rest/v0/{name}") == set(), name
        # out of scope is absent: a 404, exactly as for an object that does not exist
        outside = next(iter(_ids(gw, admin, "/rest/v0/vms") - uuids))
        cookies = {"authenticationToken": token}
        for path in (f"/rest/v0/vms/{outside}", f"/rest/v0/vms/{outside}/vdis", f"/rest/v0/vms/{outside}.xva"):
            hidden = requests.head(gw.url + path, cookies=cookies, timeout=10) if path.endswith(".xva") else \
                requests.get(gw.url + path, cookies=cookies, timeout=10)
            missing = requests.get(gw.url + path.replace(outside, NOWHERE), cookies=cookies, timeout=10)
            assert hidden.status_code == missing.status_code == 404, path
        assert requests.get(f"{gw.url}/rest/v0/vms/{one}", cookies=cookies, timeout=10).status_code == 200
        board = requests.get(gw.url + "/rest/v0/dashboard", cookies=cookies, timeout=10).json()
        assert board["vmsStatus"]["total"] == len(uuids) and board["nHosts"] == 0
        # a VM tagged later comes into scope; untagged, it leaves
        extra = next(ref for ref in rpc("VM.get_all") if rpc("VM.get_uuid", ref) == outside)
        rpc("VM.add_tags", extra, "team-a")
        assert any(outside in _ids(gw, token, "/rest/v0/vms") for _ in range(100))
        rpc("VM.remove_tags", extra, "team-a")
        assert any(outside not in _ids(gw, token, "/rest/v0/vms") for _ in range(100))
    finally:
        for ref in chosen:
            rpc("VM.remove_tags", ref, "team-a")


def test_a_token_made_by_a_scoped_token_is_no_wider(roles_gateway):
    gw = roles_gateway
    token = _scoped(gw, {"filter": "power_state:Running"})
    made = requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", json={"scope": {"filter": "web"}},
                         cookies={"authenticationToken": token}, timeout=10)
    assert made.status_code == 201
    scope = made.json()["token"]["scope"]
    assert "power_state:Running" in scope["filter"] and "web" in scope["filter"]
    unscoped = requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", json={},
                             cookies={"authenticationToken": token}, timeout=10)
    assert unscoped.json()["token"]["scope"] == {"filter": "power_state:Running"}
    bad = requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", json={"scope": {"filter": "(("}},
                        cookies={"authenticationToken": token}, timeout=10)
    assert bad.status_code == 400 and "position" in bad.json().get("data", {})


def test_a_pools_scope(roles_gateway):
    gw = roles_gateway
    pool = _ids(gw, gw.tokens["pool-admin"], "/rest/v0/pools").pop()
    inside = _scoped(gw, {"pools": [pool]})
    assert _ids(gw, inside, "/rest/v0/hosts") == _ids(gw, gw.tokens["pool-admin"], "/rest/v0/hosts")
    assert len(_ids(gw, inside, "/rest/v0/servers")) == 1
    elsewhere = _scoped(gw, {"pools": [NOWHERE]})
    for name in ("vms", "hosts", "servers", "pools"):
        assert _ids(gw, elsewhere, f"/rest/v0/{name}") == set()
    assert requests.get(gw.url + "/rest/v0/users", cookies={"authenticationToken": inside},
                        timeout=10).status_code == 200
    assert _ids(gw, inside, "/rest/v0/users") == set()  # users are no pool's


def test_users_over_rest_and_the_audit_trail(roles_gateway):
    gw = roles_gateway
    admin = {"authenticationToken": gw.tokens["pool-admin"]}
    created = requests.post(gw.url + "/rest/v0/users", json={"name": "new@example.com", "password": "a-password",
                                                             "permission": "none"}, cookies=admin, timeout=10)
    assert created.status_code == 201 and created.headers["Location"].endswith(created.json()["id"])
    user_id = created.json()["id"]
    assert requests.post(gw.url + "/rest/v0/users", json={"name": "x@example.com", "password": "a-password",
                                                          "surprise": 1}, cookies=admin, timeout=10).status_code == 400
    patched = requests.patch(f"{gw.url}/rest/v0/users/{user_id}", json={"role": "read-only"}, cookies=admin,
                             timeout=10)
    assert patched.status_code == 204
    assert requests.get(f"{gw.url}/rest/v0/users/{user_id}", cookies=admin, timeout=10).json()["role"] == "read-only"
    assert requests.delete(f"{gw.url}/rest/v0/users/{user_id}", cookies=admin, timeout=10).status_code == 204
    trail = requests.get(gw.url + "/rest/v0/audit?fields=method,path,operation,status,user_email,token_id",
                         cookies=admin, timeout=10).json()
    writes = [(e["method"], e["path"], e["status"]) for e in trail]
    assert ("POST", "/rest/v0/users", 201) in writes and ("POST", "/rest/v0/users", 400) in writes
    assert ("PATCH", f"/rest/v0/users/{user_id}", 204) in writes
    assert ("DELETE", f"/rest/v0/users/{user_id}", 204) in writes
    assert all(e["user_email"] == "pool-admin@example.com" for e in trail if e["path"].endswith(user_id))
    # refused writes are recorded too; secrets never are
    assert any(e["status"] == 403 for e in trail)
    text = json.dumps(trail) + gw.proc.output()
    for secret in gw.tokens.values():
        if secret:
            assert secret not in json.dumps(trail)
    assert "a-password" not in text
    filtered = requests.get(gw.url + "/rest/v0/audit", params={"filter": "method:DELETE", "fields": "method"},
                            cookies=admin, timeout=10).json()
    assert filtered and {e["method"] for e in filtered} == {"DELETE"}


def test_token_cli_with_role_and_scope(roles_gateway):
    gw = roles_gateway
    made = gw.cli("token", "create", "pool-admin@example.com", "--role", "read-only", "--scope", "tags:team-b",
                  "--expires", "90d", check=False)
    assert made.returncode == 0, made.stderr
    listed = [json.loads(line) for line in gw.cli("token", "list", "pool-admin@example.com", "--json").splitlines()]
    mine = next(t for t in listed if t["id"] == made.stderr.split("token id ")[1].split(",")[0])
    assert mine["role"] == "read-only" and mine["scope"] == "tags:team-b"
    too_strong = gw.cli("token", "create", "read-only@example.com", "--role", "pool-admin", check=False)
    assert too_strong.returncode == 1 and "at most read-only" in too_strong.stderr
    assert gw.cli("user", "set", "norole@example.com", "--role", "vm-operator", check=False).returncode == 0
    assert "vm-operator" in gw.cli("user", "list")
    gw.cli("user", "set", "norole@example.com", "--role", "none")


# the gate fails closed -------------------------------------------------------------------

def test_a_route_nobody_declared_fails_closed(roles_gateway):
    """Every route of the app is declared (with its permission) but Flask's own ``static``;
    a route without a declaration needs the most there is, never nothing."""
    _declared_operations()
    undeclared = {endpoint for endpoint in RULES if endpoint not in routes.OPERATIONS}
    assert undeclared == {"static"}, undeclared
    gw = roles_gateway
    path = RULES["static"].replace("<path:filename>", "anything.js")
    assert requests.get(gw.url + path, timeout=10).status_code == 401
    refused = requests.get(gw.url + path, cookies=_as(gw.tokens["pool-operator"]), timeout=10)
    assert refused.status_code == 403 and refused.json()["data"]["permission"] == "pool.admin"
    assert requests.get(gw.url + path, cookies=_as(gw.tokens["pool-admin"]), timeout=10).status_code == 404


# each role at work -------------------------------------------------------------------------

def _halted_vm(api, exclude=()):
    """A halted VM with disks and interfaces, in no scope of these tests."""
    return next(vm for vm in sorted(api.objects("vms", "power_state:Halted"), key=lambda v: v["id"], reverse=True)
                if vm["$VBDs"] and vm["VIFs"] and SCOPE_TAG not in vm["tags"] and "team-a" not in vm["tags"]
                and vm["id"] not in exclude)


def _new_disk(api, sr, label, size=1 << 20):
    made = api.request("POST", "/rest/v0/vdis", json={"srId": sr, "virtual_size": size, "name_label": label})
    assert made.status_code == 201, made.text
    return made.json()["id"]


def test_each_role_does_real_work_in_each_family(roles_gateway):
    """For each role (and none), one real operation of each family on real objects: done
    when the role holds its permission, else a 403 naming that permission and nothing changed."""
    gw = roles_gateway
    admin = _api(gw)
    vm = _halted_vm(admin)["id"]
    host = admin.objects("hosts", "power_state:Running")[0]["id"]
    pool = admin.objects("pools")[0]
    sr = pool["default_SR"]
    disk = _new_disk(admin, sr, "exported by each role")

    def read(api, role):
        answer = api.get(f"/rest/v0/vms/{vm}")
        assert answer.status_code != 200 or answer.json()["id"] == vm
        return answer

    def power(api, role):
        answer = api.action("vms", vm, "start")
        if answer.status_code == 204:
            assert admin.one("vms", vm)["power_state"] == "Running"
            admin.ok("vms", vm, "hard_shutdown")
        return answer

    def snapshot(api, role):
        answer = api.action("vms", vm, "snapshot", {"name_label": f"by {role}"})
        if answer.status_code == 201:
            assert admin.one("vm-snapshots", answer.json()["id"])["$snapshot_of"] == vm
            assert admin.request("DELETE", f"/rest/v0/vm-snapshots/{answer.json()['id']}").status_code == 204
        return answer

    def export(api, role):
        answer = requests.get(f"{gw.url}/rest/v0/vdis/{disk}.raw", cookies=_as(api.token), timeout=60)
        assert answer.status_code != 200 or len(answer.content) == 1 << 20
        return answer

    def edit(api, role):
        answer = api.request("PATCH", f"/rest/v0/vms/{vm}", json={"nameDescription": f"edited by {role}"})
        edited = admin.one("vms", vm)["name_description"] == f"edited by {role}"
        assert edited == (answer.status_code == 204)
        return answer

    def deletion(api, role):
        snap = admin.ok("vms", vm, "snapshot", {"name_label": f"for {role} to delete"})["id"]
        answer = api.request("DELETE", f"/rest/v0/vm-snapshots/{snap}")
        left = admin.get(f"/rest/v0/vm-snapshots/{snap}").status_code
        assert left == (404 if answer.status_code == 204 else 200)
        if left == 200:
            admin.request("DELETE", f"/rest/v0/vm-snapshots/{snap}")
        return answer

    def host_action(api, role):
        return api.action("hosts", host, "scan_pifs")

    def sr_action(api, role):
        return api.action("srs", sr, "scan")

    def administration(api, role):
        answer = api.request("POST", "/rest/v0/users", json={"name": f"made-by-{role}@example.com",
                                                             "password": "made-password", "role": "read-only"})
        if answer.status_code == 201:
            assert api.request("DELETE", f"/rest/v0/users/{answer.json()['id']}").status_code == 204
        return answer

    families = [("read", read), ("vm.operate", power), ("vm.operate", snapshot), ("vm.admin", export),
                ("vm.admin", edit), ("vm.admin", deletion), ("pool.operate", host_action),
                ("pool.operate", sr_action), ("pool.admin", administration)]
    done = refused = 0
    try:
        for role, token in gw.tokens.items():
            api = Client(gw.url, token)
            for permission, operation in families:
                answer = operation(api, role)
                if has_permission(role, permission):
                    assert 200 <= answer.status_code < 300, \
                        (role, operation.__name__, answer.status_code, answer.text)
                    done += 1
                else:
                    assert answer.status_code == 403, (role, operation.__name__, answer.status_code, answer.text)
                    assert answer.json()["data"]["permission"] == permission, (role, operation.__name__)
                    refused += 1
            assert admin.one("vms", vm)["power_state"] == "Halted"
    finally:
        admin.request("DELETE", f"/rest/v0/vdis/{disk}")
    assert done + refused == len(gw.tokens) * len(families) and done == 27


# scoped tokens ---------------------------------------------------------------------------

class Team:
    """VMs tagged :data:`SCOPE_TAG` (the scope ``tags:in-scope``) and others that are not."""

    def __init__(self, admin, rpc, inside, outside):
        self.admin, self.rpc = admin, rpc
        self.inside, self.outside = inside, outside  # VM ids, halted ones first

    def ref(self, vm):
        return self.rpc("VM.get_by_uuid", vm)

    def disk(self, vm):
        """One disk of ``vm`` (through its VBDs)."""
        for vbd in self.admin.one("vms", vm)["$VBDs"]:
            found = self.admin.one("vbds", vbd).get("VDI")
            if found and self.admin.get(f"/rest/v0/vdis/{found}").status_code == 200:
                return found
        raise AssertionError(f"VM {vm} has no disk")


@pytest.fixture(scope="module")
def team(roles_gateway, roles_sim):
    admin = _api(roles_gateway)
    rpc = JsonRpc(roles_sim.url)
    usable = sorted((vm for vm in admin.objects("vms") if vm["$VBDs"] and vm["VIFs"]
                     and not {SCOPE_TAG, "team-a"} & set(vm["tags"])), key=lambda vm: vm["id"])
    halted = [vm["id"] for vm in usable if vm["power_state"] == "Halted"]
    running = [vm["id"] for vm in usable if vm["power_state"] == "Running"]
    inside, outside = halted[:3] + running[:1], halted[3:6] + running[1:2]
    team = Team(admin, rpc, inside, outside)
    for vm in inside:
        rpc("VM.add_tags", team.ref(vm), SCOPE_TAG)
    _everywhere(lambda: {v["id"] for v in admin.objects("vms", f"tags:{SCOPE_TAG}")} == set(inside),
                "the tags")
    yield team
    for vm in rpc("VM.get_all"):
        if SCOPE_TAG in rpc("VM.get_tags", vm):
            rpc("VM.remove_tags", vm, SCOPE_TAG)


def _pool_collections(gw):
    """The collections of the pools' objects (not the gateway's own: servers, users...)."""
    names = [url.rsplit("/", 1)[1] for url in requests.get(gw.url + "/rest/v0", cookies=_as(gw.token),
                                                           timeout=10).json()]
    return [name for name in names if name not in ("servers", "users", "audit", "tasks")]


def _visible(gw, token):
    """Ids of every pool object the token sees, over REST."""
    return set().union(*(_ids(gw, token, f"/rest/v0/{name}?limit=100000") for name in _pool_collections(gw)))


def test_a_scoped_token_exports_and_imports_only_in_scope(roles_gateway, team):
    gw, admin = roles_gateway, team.admin
    token = _scoped(gw, {"filter": f"tags:{SCOPE_TAG}"}, role="vm-admin")
    vm, other = team.inside[0], team.outside[0]
    disk, other_disk = team.disk(vm), team.disk(other)
    # exports: an in-scope VM's XVA and its disk are served, another VM's are absent
    for path in (f"/rest/v0/vms/{vm}.xva", f"/rest/v0/vdis/{disk}.vhd", f"/rest/v0/vdis/{disk}.raw"):
        with requests.get(gw.url + path, cookies=_as(token), stream=True, timeout=60) as answer:
            assert answer.status_code == 200, (path, answer.text)
            assert next(answer.iter_content(65536)), path
    for path in (f"/rest/v0/vms/{other}.xva", f"/rest/v0/vdis/{other_disk}.vhd",
                 f"/rest/v0/vdis/{other_disk}.raw"):
        for method in ("GET", "HEAD"):
            answer = requests.request(method, gw.url + path, cookies=_as(token), timeout=30)
            assert answer.status_code == 404, (method, path, answer.status_code)
    # imports: into an in-scope disk, done; into another VM's disk, or an SR or a pool
    # (not a VM's: outside a VM filter), absent
    pool = admin.objects("pools")[0]
    body = b"\0" * 65536
    written = requests.put(f"{gw.url}/rest/v0/vdis/{team.disk(team.inside[1])}.raw", data=body,
                           cookies=_as(token), timeout=60)
    assert written.status_code == 204, written.text
    for method, path in (("PUT", f"/rest/v0/vdis/{other_disk}.raw"),
                         ("POST", f"/rest/v0/srs/{pool['default_SR']}/vdis?raw=true"),
                         ("POST", f"/rest/v0/pools/{pool['id']}/vms")):
        answer = requests.request(method, gw.url + path, data=body, cookies=_as(token), timeout=60)
        assert answer.status_code == 404, (method, path, answer.status_code, answer.text)
    # a pools scope: an import into its pool is made, one into another pool's is absent
    made = requests.post(f"{gw.url}/rest/v0/srs/{pool['default_SR']}/vdis", data=body, timeout=60,
                         params={"raw": "true", "name_label": "imported within a pools scope"},
                         cookies=_as(_scoped(gw, {"pools": [pool["id"]]}, role="vm-admin")))
    assert made.status_code == 201, made.text
    assert admin.request("DELETE", f"/rest/v0/vdis/{made.text.strip()}").status_code == 204
    nowhere = _scoped(gw, {"pools": [NOWHERE]}, role="vm-admin")
    elsewhere = requests.post(f"{gw.url}/rest/v0/srs/{pool['default_SR']}/vdis", data=body, timeout=60,
                              params={"raw": "true"}, cookies=_as(nowhere))
    assert elsewhere.status_code == 404


def test_a_scoped_token_acts_only_in_scope(roles_gateway, team):
    gw, admin = roles_gateway, team.admin
    scoped = Client(gw.url, _scoped(gw, {"filter": f"tags:{SCOPE_TAG}"}, role="vm-operator"))
    vm, other = team.inside[1], team.outside[1]
    started = scoped.action("vms", vm, "start", sync=False)
    assert started.status_code == 202, started.text
    assert scoped.wait(started.json()["taskId"])["status"] == "success"
    assert admin.one("vms", vm)["power_state"] == "Running"
    assert scoped.action("vms", vm, "hard_shutdown").status_code == 204
    assert admin.one("vms", vm)["power_state"] == "Halted"
    # out of scope: a 404 before any task, as for a VM that does not exist
    for name in ("start", "snapshot"):
        for key in (other, NOWHERE):
            answer = scoped.action("vms", key, name, sync=False)
            assert answer.status_code == 404 and "taskId" not in answer.text, (name, key, answer.text)
    assert admin.one("vms", other)["power_state"] == "Halted"
    # the task runs within the scope of the request that started it, waited for or not: a
    # host (not a VM's) named in its body is absent there too
    host = admin.objects("hosts", "power_state:Running")[0]["id"]
    waited = scoped.action("vms", vm, "start", {"hostId": host})
    assert waited.status_code == 404 and waited.json()["data"]["type"] == "host", waited.text
    started = scoped.action("vms", vm, "start", {"hostId": host}, sync=False)
    assert started.status_code == 202
    task = scoped.wait(started.json()["taskId"])
    assert task["status"] == "failure" and task["result"]["status"] == 404, task
    assert admin.one("vms", vm)["power_state"] == "Halted"


class _Lines:
    """An NDJSON stream read by a thread (a task watcher: its answer starts with its first
    line); ``close`` shuts its socket down, which wakes the reader at once."""

    def __init__(self, gw, path, token):
        self.lines = []
        self.conn = http.client.HTTPConnection("127.0.0.1", int(gw.url.rsplit(":", 1)[1]), timeout=60)
        self.conn.connect()
        self.thread = threading.Thread(target=self._read, args=(path, token), daemon=True)
        self.thread.start()

    def _read(self, path, token):
        try:
            self.conn.request("GET", path, headers={"Cookie": f"authenticationToken={token}"})
            response = self.conn.getresponse()
            assert response.status == 200
            for line in iter(response.readline, b""):
                if line.strip():
                    self.lines.append(json.loads(line))
        except Exception:  # the socket shut down under the reader: how the test leaves
            pass

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(10)
        self.conn.close()


def test_the_task_log_of_a_scoped_token(roles_gateway, team):
    gw, admin = roles_gateway, team.admin
    token = _scoped(gw, {"filter": f"tags:{SCOPE_TAG}"}, role="vm-operator")
    scoped = Client(gw.url, token)
    vm, other = team.inside[2], team.outside[2]
    watch = _Lines(gw, "/rest/v0/tasks?watch=true&ndjson=true&fields=id,status", token)
    try:
        def run(api, vm, name):
            task_id = api.action("vms", vm, name, sync=False).json()["taskId"]
            assert api.wait(task_id)["status"] == "success"
            return task_id

        def told(task_id):
            return any(event == "update" and task["id"] == task_id and task["status"] == "success"
                       for event, task in list(watch.lines))

        # the watcher follows from its start: its own tasks' ends tell when it is listening
        mine = []
        for attempt in range(5):
            mine.append(run(scoped, vm, "start" if attempt % 2 == 0 else "hard_shutdown"))
            try:
                scoped.until(lambda: told(mine[-1]), timeout=3)
                break
            except AssertionError:
                continue
        outside = [run(admin, other, "start"), run(admin, other, "hard_shutdown")]
        mine.append(run(scoped, vm, "hard_shutdown" if len(mine) % 2 else "start"))
        scoped.until(lambda: told(mine[-1]), what="the watcher told the end of the scoped token's task")
        assert not {task["id"] for _, task in watch.lines} & set(outside)
    finally:
        watch.close()
    if admin.one("vms", vm)["power_state"] != "Halted":
        admin.ok("vms", vm, "hard_shutdown")
    listed = scoped.get("/rest/v0/tasks", fields="id,properties").json()
    assert set(mine) <= {task["id"] for task in listed} and not set(outside) & {task["id"] for task in listed}
    for task in listed:  # each about an object the token sees
        about = task["properties"]
        assert scoped.get(f"/rest/v0/{about['objectType'].lower()}s/{about['objectId']}").status_code == 200, task
    own = {url.rsplit("/", 1)[1] for url in scoped.get(f"/rest/v0/vms/{vm}/tasks").json()}
    assert set(mine) <= own
    # another VM's tasks are absent, whatever one does with them
    hidden = outside[0]
    assert admin.get(f"/rest/v0/tasks/{hidden}").status_code == 200
    for method, path, params in (("GET", f"/rest/v0/tasks/{hidden}", {}),
                                 ("GET", f"/rest/v0/tasks/{hidden}", {"wait": "true"}),
                                 ("GET", f"/rest/v0/vms/{other}/tasks", {}),
                                 ("DELETE", f"/rest/v0/tasks/{hidden}", {}),
                                 ("POST", f"/rest/v0/tasks/{hidden}/actions/abort", {})):
        answer = scoped.request(method, path, **params)
        assert answer.status_code == 404, (method, path, answer.status_code, answer.text)
    # deleting "every ended task" deletes the ones it sees
    assert scoped.request("DELETE", "/rest/v0/tasks").status_code == 204
    assert not set(mine) & {url.rsplit("/", 1)[1] for url in scoped.get("/rest/v0/tasks").json()}
    assert set(outside) <= {url.rsplit("/", 1)[1] for url in admin.get("/rest/v0/tasks").json()}


#: perfmon's body of an ALARM message, as the simulator writes them.
ALARM_BODY = ('value: 0.950000\nconfig:\n<variable>\n\t<name value="cpu_usage"/>\n\t'
              '<alarm_trigger_level value="0.9"/>\n</variable>\n')


def test_messages_and_alarms_of_a_scoped_token(roles_gateway, team):
    gw, admin, rpc = roles_gateway, team.admin, team.rpc
    vm, other = team.inside[0], team.outside[0]
    for uuid in (vm, other):
        rpc("message.create", "VM_NOTE", 3, "VM", uuid, "a message about a VM")
        rpc("message.create", "ALARM", 3, "VM", uuid, ALARM_BODY)
    _everywhere(lambda: len(admin.objects("messages", "name:VM_NOTE")) == 2 and
                len([a for a in admin.objects("alarms") if a["object"]["uuid"] in (vm, other)]) == 2,
                "the messages")
    token = _scoped(gw, {"filter": f"tags:{SCOPE_TAG}"})
    scoped = Client(gw.url, token)
    seen = _visible(gw, token)
    assert vm in seen and other not in seen
    messages = {m["id"]: m["$object"] for m in admin.objects("messages")}
    alarms = {a["id"]: a["object"]["uuid"] for a in admin.objects("alarms")}
    assert _ids(gw, token, "/rest/v0/messages") == {key for key, about in messages.items() if about in seen}
    assert _ids(gw, token, "/rest/v0/alarms") == {key for key, about in alarms.items() if about in seen}
    assert vm in set(messages.values()) & set(alarms.values())
    assert {messages[m] for m in _ids(gw, token, f"/rest/v0/vms/{vm}/messages")} == {vm}
    assert {alarms[a] for a in _ids(gw, token, f"/rest/v0/vms/{vm}/alarms")} == {vm}
    for collection, about in (("messages", messages), ("alarms", alarms)):
        hidden = next(key for key, uuid in about.items() if uuid == other)
        assert scoped.get(f"/rest/v0/{collection}/{hidden}").status_code == 404
        assert scoped.get(f"/rest/v0/vms/{other}/{collection}").status_code == 404
        assert admin.get(f"/rest/v0/{collection}/{hidden}").status_code == 200


def test_events_of_a_scoped_token(roles_gateway, team):
    """An event stream tells only in-scope VMs' changes; a VM moving into the scope (its
    tags changed while the client watches) is an add, moving out a remove."""
    gw, rpc = roles_gateway, team.rpc
    token = _scoped(gw, {"filter": f"tags:{SCOPE_TAG}"})
    vm, other = team.inside[0], team.outside[3]
    names = {key: rpc("VM.get_name_label", team.ref(key)) for key in (vm, other)}
    stream = Stream(gw.url, _as(token))
    try:
        answer = requests.post(f"{gw.url}/rest/v0/events/{stream.id}/subscriptions", cookies=_as(token),
                               json={"collection": "VM", "fields": "*"}, timeout=10)
        assert answer.status_code == 201
        rpc("VM.set_name_label", team.ref(other), "renamed outside the scope")
        rpc("VM.set_name_label", team.ref(vm), "renamed inside the scope")
        stream.wait("update", lambda d: d.get("id") == vm and d["name_label"] == "renamed inside the scope")
        assert not [d for _, d in stream.events if d.get("id") == other]  # its change came first
        rpc("VM.add_tags", team.ref(other), SCOPE_TAG)
        assert SCOPE_TAG in stream.wait("add", lambda d: d.get("id") == other)["tags"]
        rpc("VM.remove_tags", team.ref(other), SCOPE_TAG)
        stream.wait("remove", lambda d: d.get("id") == other)
        told = {d["id"] for event, d in stream.events if event in ("add", "update", "remove")}
        assert told <= set(team.inside) | {other}
        assert {d.get("$subscription") for event, d in stream.events
                if event in ("add", "update", "remove")} == {"VM"}
    finally:
        stream.close()
        for key, name in names.items():
            rpc("VM.set_name_label", team.ref(key), name)


class _Rpc:
    """A JSON-RPC peer of ``/api/`` over a WebSocket; ``all`` notifications kept apart."""

    def __init__(self, gw):
        self.ws = connect(gw.url.replace("http://", "ws://") + "/api/", open_timeout=10)
        self.next_id, self.notifications = 0, []

    def _receive(self, timeout):
        message = json.loads(self.ws.recv(timeout=timeout))
        if isinstance(message, dict) and message.get("method") == "all":
            self.notifications.append(message["params"])
            return None
        return message

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}))
        while True:
            message = self._receive(30)
            if message is not None:
                assert message["id"] == self.next_id, message
                return message

    def told(self, kind, key, timeout=30):
        """Wait for an ``all`` notification of ``kind`` (enter, exit) naming ``key``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [n for n in self.notifications if n["type"] == kind and key in n["items"]]
            if found:
                return found[-1]["items"][key]
            try:
                self._receive(0.5)
            except TimeoutError:
                pass
        raise AssertionError(f"no {kind} of {key}: {self.notifications[-3:]}")

    def close(self):
        self.ws.close()


def test_json_rpc_of_a_scoped_token(roles_gateway, team):
    """``xo.getAllObjects`` gives exactly what the scope holds (what REST lists for the same
    token), and the ``all`` notifications tell only in-scope changes, with a VM entering and
    exiting the scope as its tags change while the client watches."""
    gw, rpc = roles_gateway, team.rpc
    token = _scoped(gw, {"filter": f"tags:{SCOPE_TAG}"})
    vm, other = team.inside[1], team.outside[3]
    names = {key: rpc("VM.get_name_label", team.ref(key)) for key in (vm, other)}
    client = _Rpc(gw)
    try:
        assert client.call("session.signIn", token=token)["result"]["email"] == "pool-admin@example.com"
        objects = client.call("xo.getAllObjects")["result"]
        assert set(objects) == _visible(gw, token)
        assert vm in objects and other not in objects
        assert {o["type"] for o in objects.values()} >= {"VM", "VBD", "VIF", "VDI"}
        assert not {o["type"] for o in objects.values()} & {"host", "SR", "pool", "network"}
        rpc("VM.set_name_label", team.ref(other), "renamed outside the scope")
        rpc("VM.set_name_label", team.ref(vm), "renamed inside the scope")
        assert client.told("enter", vm)["name_label"] == "renamed inside the scope"
        assert not [n for n in client.notifications if other in n["items"]]  # its change came first
        rpc("VM.add_tags", team.ref(other), SCOPE_TAG)
        assert SCOPE_TAG in client.told("enter", other)["tags"]
        rpc("VM.remove_tags", team.ref(other), SCOPE_TAG)
        client.told("exit", other)
        # what entered is in the scope, or was while the VM was (its disks, interfaces...)
        with_other = _visible(gw, _scoped(gw, {"filter": f"id:{other}"}))
        told = {kind: {key for n in client.notifications if n["type"] == kind for key in n["items"]}
                for kind in ("enter", "exit")}
        assert told["enter"] <= _visible(gw, token) | with_other and told["exit"] <= with_other
    finally:
        client.close()
        for key, name in names.items():
            rpc("VM.set_name_label", team.ref(key), name)


# pool-admins and anyone's tokens ---------------------------------------------------------------

def test_a_pool_admin_lists_and_revokes_anyone_s_tokens(roles_gateway):
    gw = roles_gateway
    admin = _as(gw.tokens["pool-admin"])
    owner = requests.get(gw.url + "/rest/v0/users/me", cookies=_as(gw.tokens["vm-operator"]), timeout=10).json()
    victim = requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", json={"description": "to revoke"},
                           cookies=_as(gw.tokens["vm-operator"]), timeout=10).json()["token"]
    for key in (owner["id"], owner["email"]):
        listed = requests.get(f"{gw.url}/rest/v0/users/{key}/authentication_tokens", cookies=admin, timeout=10)
        assert listed.status_code == 200 and victim["token_id"] in {t["id"] for t in listed.json()}
        assert all(t["user_id"] == owner["id"] and "token_hash" not in t for t in listed.json())
    # who may not: another user without pool-admin, and a read-only token of a pool-admin
    weak = requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", json={"role": "read-only"},
                         cookies=admin, timeout=10).json()["token"]["id"]
    for token in (gw.tokens["vm-admin"], gw.tokens["pool-operator"], weak):
        for method, path in (("GET", f"/rest/v0/users/{owner['id']}/authentication_tokens"),
                             ("GET", f"/rest/v0/users/{owner['email']}/authentication_tokens"),
                             ("DELETE",
                              f"/rest/v0/users/{owner['id']}/authentication_tokens/{victim['token_id']}"),
                             ("DELETE", f"/rest/v0/users/{owner['email']}/authentication_tokens/{victim['id']}")):
            answer = requests.request(method, gw.url + path, cookies=_as(token), timeout=10)
            assert answer.status_code == 403 and answer.json()["data"]["permission"] == "pool.admin", \
                (method, path, answer.status_code, answer.text)
    assert requests.get(gw.url + "/rest/v0/vms", cookies=_as(victim["id"]), timeout=10).status_code == 200
    # a token named under another owner is no such token of theirs
    wrong_owner = requests.delete(f"{gw.url}/rest/v0/users/read-only@example.com/authentication_tokens/"
                                  f"{victim['token_id']}", cookies=admin, timeout=10)
    assert wrong_owner.status_code == 404
    revoked = requests.delete(f"{gw.url}/rest/v0/users/{owner['email']}/authentication_tokens/"
                              f"{victim['token_id']}", cookies=admin, timeout=10)
    assert revoked.status_code == 204
    assert requests.get(gw.url + "/rest/v0/vms", cookies=_as(victim["id"]), timeout=10).status_code == 401
    listed = requests.get(f"{gw.url}/rest/v0/users/{owner['id']}/authentication_tokens", cookies=admin,
                          timeout=10).json()
    assert next(t for t in listed if t["id"] == victim["token_id"])["revoked_at"] is not None
    untouched = requests.get(gw.url + "/rest/v0/vms", cookies=_as(gw.tokens["vm-operator"]), timeout=10)
    assert untouched.status_code == 200


# the audit trail -------------------------------------------------------------------------------

def test_every_write_is_in_the_audit_trail_without_secrets(roles_gateway):
    """Each kind of write, by a vm-admin's token: the entry names the user, the token, the
    address, the call and its outcome; a task's end follows the request that started it;
    tokens made and revoked over REST, JSON-RPC and the CLI are recorded; no token value or
    password is in the trail or in the log."""
    gw = roles_gateway
    admin = _api(gw)
    email, password = "vm-admin@example.com", gw.passwords["vm-admin"]
    made = requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", auth=(email, password), timeout=10,
                         json={"description": "audited"})
    assert made.status_code == 201
    secrets, token_id = [made.json()["token"]["id"]], made.json()["token"]["token_id"]
    api = Client(gw.url, secrets[0])
    sr = admin.objects("pools")[0]["default_SR"]
    vm = _halted_vm(admin)["id"]
    calls = []  # (method, path, status) of each request expected in the trail

    def did(method, path, answer, status):
        assert answer.status_code == status, (method, path, answer.status_code, answer.text)
        calls.append((method, path, status))
        return answer

    disk = did("POST", "/rest/v0/vdis", api.request("POST", "/rest/v0/vdis", json={
        "srId": sr, "virtual_size": 1 << 20, "name_label": "audited disk"}), 201).json()["id"]
    did("PATCH", f"/rest/v0/vdis/{disk}", api.request("PATCH", f"/rest/v0/vdis/{disk}",
                                                      json={"name_description": "audited edit"}), 204)
    did("PUT", f"/rest/v0/vdis/{disk}.raw", requests.put(f"{gw.url}/rest/v0/vdis/{disk}.raw", data=b"x" * 4096,
                                                         cookies=_as(secrets[0]), timeout=60), 204)
    exported = did("GET", f"/rest/v0/vdis/{disk}.raw", requests.get(f"{gw.url}/rest/v0/vdis/{disk}.raw",
                                                                     cookies=_as(secrets[0]), timeout=60), 200)
    assert len(exported.content) == 1 << 20
    path = f"/rest/v0/vms/{vm}/actions/start"
    started = did("POST", path, api.action("vms", vm, "start", sync=False), 202).json()["taskId"]
    assert api.wait(started)["status"] == "success"
    again = did("POST", path, api.action("vms", vm, "start", sync=False), 202).json()["taskId"]
    failed = api.wait(again)
    assert failed["status"] == "failure"
    did("POST", f"/rest/v0/vms/{vm}/actions/hard_shutdown", api.action("vms", vm, "hard_shutdown"), 204)
    did("POST", f"/rest/v0/srs/{sr}/actions/scan", api.action("srs", sr, "scan"), 403)
    did("DELETE", f"/rest/v0/vdis/{disk}", api.request("DELETE", f"/rest/v0/vdis/{disk}"), 204)
    # tokens over REST: made with the token, revoked by value (a path that names a secret)
    child = did("POST", "/rest/v0/users/me/authentication_tokens",
                api.request("POST", "/rest/v0/users/me/authentication_tokens", json={}), 201).json()["token"]["id"]
    secrets.append(child)
    revoke_path = f"/rest/v0/users/me/authentication_tokens/{child}"
    did("DELETE", revoke_path, api.request("DELETE", revoke_path), 204)
    # tokens over JSON-RPC
    client = _Rpc(gw)
    try:
        assert client.call("session.signIn", email=email, password=password)["result"]["email"] == email
        secrets.append(client.call("token.create", description="over JSON-RPC")["result"])
        assert client.call("token.deleteOwn", tokens=[secrets[-1]])["result"] is True
    finally:
        client.close()
    # the CLI, as the local account running it
    newcomer, first, second = "audited@example.com", "first-secret-password", "second-secret-password"
    gw.cli("user", "add", newcomer, "--role", "read-only", "--password-stdin", input=first + "\n")
    gw.cli("user", "passwd", newcomer, "--password-stdin", input=second + "\n")
    created = gw.cli("token", "create", newcomer, check=False)
    assert created.returncode == 0, created.stderr
    secrets.append(created.stdout.strip())
    cli_token = created.stderr.split("token id ")[1].split(",")[0]
    revoked = gw.cli("token", "revoke", secrets[-1], check=False)
    assert revoked.returncode == 0, revoked.stderr
    assert gw.cli("token", "revoke", "not-a-token", check=False).returncode == 1

    def trail():
        return admin.get("/rest/v0/audit", fields="*", limit=100000).json()
    export_task = next(t for t in admin.get("/rest/v0/tasks", fields="*").json()
                       if t["properties"].get("objectId") == disk and "export" in t["properties"]["name"])
    ends = {started: (200, None), again: (failed["result"]["status"], failed["result"]["message"]),
            export_task["id"]: (200, None)}
    admin.until(lambda: {f"/rest/v0/tasks/{task}" for task in ends} <= {e["path"] for e in trail()},
                what="the tasks' ends in the trail")
    entries = trail()
    assert {"at", "time", "user_id", "user_email", "token_id", "address", "method", "path", "operation", "status",
            "error"} <= set(entries[-1])
    assert all(entry["time"] == int(entry["at"] * 1000) for entry in entries)
    mine = [e for e in entries if e["token_id"] == token_id]
    for method, path, status in calls:
        path = path.replace(child, "<redacted>")  # a token named in a path is not kept
        found = [e for e in mine if (e["method"], e["path"], e["status"]) == (method, path, status)]
        assert found, (method, path, status)
        assert all(e["user_email"] == email and e["address"] == "127.0.0.1" and e["operation"] for e in found)
        assert all((e["error"] is not None) == (status >= 400) for e in found)
    assert any(e["operation"] == "actions.vms_start" and e["status"] == 202 for e in mine)
    assert any(e["path"] == f"/rest/v0/srs/{sr}/actions/scan" and e["status"] == 403
               and "vm-admin" in e["error"] and "pool.operate" in e["error"] for e in mine)
    for task, (status, error) in ends.items():
        end = [e for e in mine if e["method"] == "TASK" and e["path"] == f"/rest/v0/tasks/{task}"]
        assert len(end) == 1 and (end[0]["status"], end[0]["error"]) == (status, error), end
        assert end[0]["user_email"] == email and end[0]["address"] == "127.0.0.1"
    assert {e["operation"] for e in mine if e["method"] == "TASK"} >= {"actions.vms_start", "exports.export_vdi"}
    # JSON-RPC: the calls that make and revoke tokens
    rpc = [e for e in entries if e["method"] == "RPC" and e["user_email"] == email]
    assert {(e["operation"], e["status"]) for e in rpc} >= {("token.create", 200), ("token.deleteOwn", 200)}
    assert all(e["address"] == "127.0.0.1" and e["token_id"] is None for e in rpc)  # signed in with a password
    # the CLI: the local account, from "cli"; tokens named by id
    cli = [e for e in entries if e["method"] == "CLI"]
    assert all(e["user_email"] == f"local:{getpass.getuser()}" and e["address"] == "cli" and e["user_id"] is None
               for e in cli)
    commands = {(e["operation"], e["path"], e["status"]) for e in cli}
    assert ("cli.user_add", f"xorest user add {newcomer} --role read-only", 201) in commands
    assert ("cli.user_passwd", f"xorest user passwd {newcomer}", 204) in commands
    assert ("cli.token_create", f"xorest token create {newcomer}: token {cli_token}", 201) in commands
    assert ("cli.token_revoke", f"xorest token revoke {cli_token}", 204) in commands
    assert ("cli.token_revoke", "xorest token revoke (no such token)", 404) in commands
    # no secret, anywhere
    text = json.dumps(entries)
    log = gw.proc.output()
    for secret in [*secrets, *filter(None, gw.tokens.values()), *gw.passwords.values(), first, second]:
        assert secret not in text and secret not in log, secret[:6]


# what the CLI prints -----------------------------------------------------------------------

def _xorest(data_dir, *args, input=None):
    return subprocess.run([PYTHON, "-m", "xorest", "--data-dir", data_dir, *args], input=input, text=True,
                          capture_output=True, cwd=ROOT, timeout=60, env=os.environ)


#: What an attacker would have a terminal do: clear it, set its title, ring, start a new line.
HOSTILE = "\x1b[2J\x1b]0;owned\x07\x9b31m\nforged line\r"


class _Refusing(http.server.BaseHTTPRequestHandler):
    """A server whose error texts carry escape sequences."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.dumps({"error": f"refused {HOSTILE}"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_cli_prints_no_control_character(tmp_path):
    """Descriptions, labels and servers' error texts are printed with their control
    characters escaped, as in log lines: nothing reaches the admin's terminal as a sequence."""
    data = str(tmp_path / "data")
    someone = "someone@example.com"
    assert _xorest(data, "user", "add", someone, "--password-stdin", input="a-password\n").returncode == 0
    assert _xorest(data, "token", "create", someone, "--description", f"desc {HOSTILE}").returncode == 0
    assert _xorest(data, "server", "add", "http://127.0.0.1:9", "--no-check", "--label", f"label {HOSTILE}",
                   "--password-stdin", input="pool-password\n").returncode == 0
    printed = [_xorest(data, "token", "list"), _xorest(data, "server", "list"),
               _xorest(data, "user", "set", f"nobody{HOSTILE}@example.com", "--role", "read-only")]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        printed.append(_xorest(data, "create-token", f"http://127.0.0.1:{server.server_port}", someone,
                               "--password-stdin", input="a-password\n"))
    finally:
        server.shutdown()
        server.server_close()
    for result, where, expected in zip(printed, ("stdout", "stdout", "stderr", "stderr"),
                                       ("desc ", "label ", "no such user nobody", "HTTP 401: refused ")):
        text = getattr(result, where)
        assert expected + "\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\nforged line\\r" in text, (where, text)
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", result.stdout + result.stderr), text
        assert "forged line" not in (result.stdout + result.stderr).replace("\\nforged line", "")
    # --json stays JSON (its own escaping), the same text once decoded
    listed = [json.loads(line) for line in _xorest(data, "token", "list", "--json").stdout.splitlines()]
    assert listed[0]["description"] == f"desc {HOSTILE}"
