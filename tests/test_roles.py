"""Least privilege through gunicorn: every declared operation against every role, scoped
tokens over the simulator's objects, tokens that cannot outgrow their maker, the audit
trail."""
import json
import re

import pytest
import requests

from xorest.api import routes
from xorest.services.permissions import PERMISSIONS, ROLES, has_permission

from .conftest import Gateway
from .test_sim import JsonRpc

NOWHERE = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def roles_gateway(sim, tmp_path_factory):
    """A gateway with one user per role (and one without), each with a token."""
    gw = Gateway(tmp_path_factory.mktemp("roles"), sim.url, name="gw-roles")
    tokens = {}
    for role in (*ROLES, None):
        email = f"{role or 'norole'}@example.com"
        gw.cli("user", "add", email, *(["--role", role] if role else []), "--password-stdin",
               input=f"{email}-password\n")
        tokens[role] = gw.cli("token", "create", email).strip()
    gw.tokens = tokens
    yield gw
    gw.stop()


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


def test_a_scoped_token_sees_its_vms_and_what_depends_on_them(roles_gateway, sim):
    gw = roles_gateway
    rpc, chosen = _tagged(sim, 3, "team-a")
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
