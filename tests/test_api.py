"""The REST API under gunicorn against the simulator, as curl would use it."""
import base64
import json
import time
import zlib

import pytest
import requests

from .test_sim import JsonRpc

COLLECTIONS = ["hosts", "networks", "pools", "srs", "vbds", "vdis", "vdi-snapshots", "vifs", "vms",
               "vm-snapshots", "vm-templates", "vm-controllers", "pifs", "messages", "tasks", "xapi-tasks", "servers",
               "users"]


def test_root_lists_collections(gateway):
    response = gateway.get("/rest/v0")
    assert response.status_code == 200
    assert {f"/rest/v0/{c}" for c in COLLECTIONS} <= set(response.json())
    assert gateway.get("/rest/v0/").json() == response.json()


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_every_collection(gateway, collection):
    urls = gateway.get(f"/rest/v0/{collection}").json()
    assert isinstance(urls, list)
    if collection in ("tasks", "xapi-tasks"):
        return
    assert urls and all(u.startswith(f"/rest/v0/{collection}/") for u in urls)
    full = gateway.get(urls[0]).json()
    assert full["href"] == full["url"] == urls[0]
    assert "password" not in json.dumps(full) and "hash" not in json.dumps(full)


def test_contract_examples(gateway):
    plain = gateway.get("/rest/v0/vms")
    assert plain.headers["Content-Type"] == "application/json"
    assert plain.text.startswith('[\n  "/rest/v0/vms/')  # two-space pretty JSON, as XO
    with_fields = gateway.get("/rest/v0/vms?fields=name_label,power_state").json()
    assert set(with_fields[0]) == {"name_label", "power_state", "url", "href"}
    nd = gateway.get("/rest/v0/vms?fields=name_label,power_state&ndjson")
    assert nd.headers["Content-Type"].startswith("application/x-ndjson")
    lines = nd.text.splitlines()
    assert [json.loads(line) for line in lines] == with_fields
    for flag in ("ndjson=true", "ndjson=1"):
        assert gateway.get(f"/rest/v0/vms?fields=name_label,power_state&{flag}").text == nd.text
    for flag in ("ndjson=false", "ndjson=0"):
        assert gateway.get(f"/rest/v0/vms?fields=name_label,power_state&{flag}").json() == with_fields


def test_filter_limit_fields(gateway, sim):
    running = gateway.get("/rest/v0/vms?fields=power_state&filter=power_state:Running").json()
    assert running and all(v["power_state"] == "Running" for v in running)
    lower = gateway.get("/rest/v0/vms?fields=power_state&filter=power_state:running").json()
    assert lower == running  # case-insensitive, as in Xen Orchestra
    prod = gateway.get("/rest/v0/vms?fields=tags,name_label&filter=tags:prod%20!power_state:Halted").json()
    assert all(any("prod" in t for t in v["tags"]) for v in prod)
    assert gateway.get("/rest/v0/vms?filter=power_state:Running&limit=3").json() == [v["url"] for v in running[:3]]
    assert gateway.get("/rest/v0/vms?limit=0").json() == []
    nested = gateway.get("/rest/v0/vms?fields=CPUs.number,memory.size&limit=1").json()[0]
    assert set(nested) == {"CPUs", "memory", "href", "url"} and set(nested["CPUs"]) == {"number"}
    star = gateway.get("/rest/v0/vms?fields=*&limit=1").json()[0]
    assert {"name_label", "power_state", "$pool", "href", "url"} <= set(star)
    cmp = gateway.get("/rest/v0/vms?fields=CPUs&filter=CPUs:number:>=4").json()
    assert cmp and all(v["CPUs"]["number"] >= 4 for v in cmp)
    regex = gateway.get("/rest/v0/vms?fields=name_label&filter=name_label:/^web-/").json()
    assert regex and all(v["name_label"].startswith("web-") for v in regex)
    # stable order
    assert gateway.get("/rest/v0/vms").json() == gateway.get("/rest/v0/vms").json()


@pytest.mark.parametrize("query, fragment", [
    ("filter=(", "parse error: expected end of input at position 0"),
    ("filter=a%20b%20)", "position 4"),
    ("filter=>abc", "value must be a number"),
    ("filter=/(/", "Invalid regular expression"),
    ("limit=-1", "limit"),
    ("limit=abc", "limit"),
    ("limit=1.5", "limit"),
    ("limit=99999999999999999999999", "limit"),
    ("ndjson=maybe", "ndjson"),
    ("sort=name%20label", "invalid sort field"),
    ("sort=" + ",".join("abcdefghi"), "at most 8"),
    ("sort=name_label&after=!!!", "invalid after cursor"),
    ("after=", "after"),
])
def test_bad_queries_are_400_with_reason(gateway, query, fragment):
    response = gateway.get(f"/rest/v0/vms?{query}")
    assert response.status_code == 400
    assert fragment in json.dumps(response.json())


def _pages(gateway, path):
    """Every page of a listing, following ``Link: rel="next"``."""
    pages = []
    while path:
        response = gateway.get(path)
        assert response.status_code == 200, response.text
        pages.append(response)
        path = response.links.get("next", {}).get("url")
    return pages


def test_order_is_by_id_and_sort_orders_by_fields(gateway):
    urls = gateway.get("/rest/v0/vms").json()
    assert urls == sorted(urls)
    by_name = gateway.get("/rest/v0/vms?fields=name_label&sort=name_label").json()
    names = [v["name_label"] for v in by_name]
    assert names == sorted(names, key=lambda n: (n.casefold(), n)) and len(by_name) == len(urls)
    mixed = gateway.get("/rest/v0/vms?fields=memory.size,name_label,mainIpAddress&sort=-memory.size,name_label").json()
    keys = [(-v["memory"]["size"], v["name_label"].casefold()) for v in mixed]
    assert keys == sorted(keys)
    # missing values come last
    by_ip = gateway.get("/rest/v0/vms?fields=mainIpAddress&sort=mainIpAddress").json()
    present = [v.get("mainIpAddress") is not None for v in by_ip]
    assert present == sorted(present, reverse=True) and not all(present) and any(present)


@pytest.mark.parametrize("query", ["fields=name_label", "fields=name_label&sort=name_label",
                                   "fields=power_state&sort=-power_state,name_label&filter=tags:prod",
                                   "fields=name_label&ndjson"])
def test_pages_cover_every_object_once(gateway, query):
    def items(response):
        if "ndjson" in query:
            return [json.loads(line) for line in response.text.splitlines()]
        return response.json()

    expected = items(gateway.get(f"/rest/v0/vms?{query}"))
    pages = _pages(gateway, f"/rest/v0/vms?limit=7&{query}")
    assert [item for page in pages for item in items(page)] == expected
    assert len(pages) == max(1, -(-len(expected) // 7))  # the last page is known to be last


def test_cursor_belongs_to_its_sort(gateway):
    first = gateway.get("/rest/v0/vms?limit=2&sort=name_label")
    cursor = first.links["next"]["url"].split("after=")[1]
    response = gateway.get(f"/rest/v0/vms?limit=2&sort=power_state&after={cursor}")
    assert response.status_code == 400 and "another sort order" in response.json()["error"]
    assert "next" not in gateway.get("/rest/v0/vms?limit=0").links


def test_paging_survives_objects_leaving_between_pages(processes, tmp_path):
    from .conftest import Gateway

    sim = processes.sim("--vms", "16", "--seed", "61")
    gw = processes.add(Gateway(tmp_path, sim.url, name="gw-paging", workers=1))
    rpc = JsonRpc(sim.url)
    whole = gw.get("/rest/v0/vms?fields=name_label,power_state").json()
    first = gw.get("/rest/v0/vms?fields=name_label,power_state&limit=4")
    assert first.json() == whole[:4]
    last = first.json()[-1]
    ref = rpc("VM.get_by_uuid", last["url"].rsplit("/", 1)[1])
    if last["power_state"] != "Halted":
        rpc("VM.hard_shutdown", ref)
    rpc("VM.destroy", ref)  # the object the cursor names is gone
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and last["url"] in gw.get("/rest/v0/vms").json():
        time.sleep(0.2)
    rest = [item for page in _pages(gw, first.links["next"]["url"]) for item in page.json()]
    assert [v["url"] for v in rest] == [v["url"] for v in whole[4:]]


def test_selftest_stream(gateway):
    sized = gateway.get("/rest/v0/selftest/stream?size=3M")
    assert sized.status_code == 200 and len(sized.content) == 3 << 20
    assert sized.headers["Content-Length"] == str(3 << 20) and sized.headers["X-Accel-Buffering"] == "no"
    chunked = gateway.get("/rest/v0/selftest/stream?size=3MiB&length=false")
    assert "Content-Length" not in chunked.headers and chunked.headers["Transfer-Encoding"] == "chunked"
    assert chunked.content == sized.content
    assert len(zlib.compress(sized.content)) > len(sized.content) * 0.99  # a compressing proxy gains nothing
    started = time.monotonic()
    paused = gateway.get("/rest/v0/selftest/stream?size=100000&pause=1.2")
    assert len(paused.content) == 100000 and time.monotonic() - started >= 1.2
    assert gateway.get("/rest/v0/selftest/stream?size=0").content == b""
    for bad in ("size=abc", "size=65G", "size=-1", "pause=-1", "pause=4000", "length=maybe"):
        response = gateway.get(f"/rest/v0/selftest/stream?{bad}")
        assert response.status_code == 400 and bad.split("=")[0] in response.json()["error"], bad
    assert requests.get(gateway.url + "/rest/v0/selftest/stream", timeout=10).status_code == 401
    # a client leaving during the pause frees its thread at once, not after the pause
    left = gateway.get("/rest/v0/selftest/stream?size=4M&pause=600", stream=True)
    assert len(left.raw.read(2 << 20)) == 2 << 20  # the first half: the server is in its pause now
    left.close()
    deadline = time.monotonic() + 5
    while "selftest client went away" not in gateway.proc.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "selftest client went away" in gateway.proc.output()


def test_single_object_404_and_refs(gateway, sim):
    missing = gateway.get("/rest/v0/vms/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert missing.json()["error"] == "no such VM 00000000-0000-0000-0000-000000000000"
    vm = gateway.get("/rest/v0/vms?fields=*&limit=1").json()[0]
    by_ref = gateway.get(f"/rest/v0/vms/{vm['_xapiRef']}")
    assert by_ref.status_code == 200 and by_ref.json()["id"] == vm["id"]


def test_errors_are_json(gateway):
    for path, status in (("/nothing", 404), ("/rest/v0/nope", 404), ("/rest/v0/vms/x/y/z", 404)):
        response = gateway.get(path)
        assert response.status_code == status and response.headers["Content-Type"] == "application/json"
        assert "error" in response.json()
    response = requests.post(gateway.url + "/rest/v0/vms", cookies={"authenticationToken": gateway.token},
                             timeout=10)
    assert response.status_code == 405 and "GET" in response.headers["Allow"]


def test_etag_and_304(gateway):
    first = gateway.get("/rest/v0/hosts?fields=name_label")
    etag = first.headers["ETag"]
    again = gateway.get("/rest/v0/hosts?fields=name_label", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    host = first.json()[0]["url"]
    one = gateway.get(host)
    assert gateway.get(host, headers={"If-None-Match": one.headers["ETag"]}).status_code == 304


def _anonymous(gateway, path="/rest/v0/vms", **kw):
    return requests.get(gateway.url + path, timeout=10, **kw)


def test_every_auth_path(gateway):
    ok = {"cookies": {"authenticationToken": gateway.token}}
    assert _anonymous(gateway, **ok).status_code == 200
    assert _anonymous(gateway, cookies={"token": gateway.token}).status_code == 200
    assert _anonymous(gateway, headers={"Authorization": f"Bearer {gateway.token}"}).status_code == 200
    assert _anonymous(gateway, auth=("admin@example.com", "admin-password")).status_code == 200
    missing = _anonymous(gateway)
    assert missing.status_code == 401 and "WWW-Authenticate" in missing.headers
    assert missing.json()["error"]
    assert _anonymous(gateway, cookies={"authenticationToken": "x" * 43}).status_code == 401
    assert _anonymous(gateway, headers={"Authorization": "Basic !!!"}).status_code == 400
    assert _anonymous(gateway, headers={"Authorization": "Digest abc"}).status_code == 400
    user_token = gateway.cli("token", "create", "user@example.com").strip()
    forbidden = _anonymous(gateway, cookies={"authenticationToken": user_token})
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "only admin users can use the API"
    # precedence: the cookie wins over a bad Authorization header
    mixed = _anonymous(gateway, cookies={"authenticationToken": gateway.token},
                       headers={"Authorization": "Bearer wrong"})
    assert mixed.status_code == 200


def test_expired_and_revoked_tokens(gateway):
    token = gateway.cli("token", "create", "admin@example.com", "--expires", "61s").strip()
    assert _anonymous(gateway, cookies={"authenticationToken": token}).status_code == 200
    listing = gateway.cli("token", "list", "admin@example.com")
    token_id = [line.split()[0] for line in listing.splitlines() if "61" in line or True][-1]
    gateway.cli("token", "revoke", token_id)
    revoked = [_anonymous(gateway, cookies={"authenticationToken": token}) for _ in range(6)]
    assert {r.status_code for r in revoked} == {401}  # at once, in every worker
    assert revoked[0].json()["error"] == "token revoked"


def test_renewal_by_set_cookie(gateway):
    token = gateway.cli("token", "create", "admin@example.com", "--expires", "62s").strip()
    time.sleep(2.5)  # past the renewal threshold
    first = _anonymous(gateway, cookies={"authenticationToken": token})
    assert first.status_code == 200
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith("authenticationToken=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Max-Age=" in cookie and "Path=/rest/v0" in cookie and "Secure" not in cookie
    new_token = cookie.split("=", 1)[1].split(";")[0]
    assert new_token != token and len(new_token) == 43
    second = _anonymous(gateway, cookies={"authenticationToken": token})
    assert second.status_code == 200 and "Set-Cookie" not in second.headers  # only once
    assert _anonymous(gateway, cookies={"authenticationToken": new_token}).status_code == 200
    assert "X-Token-Expires" in first.headers


def test_create_token_remotely(gateway):
    response = requests.post(gateway.url + "/rest/v0/users/me/authentication_tokens",
                             auth=("admin@example.com", "admin-password"),
                             json={"expiresIn": "7d", "description": "from a test"}, timeout=10)
    assert response.status_code == 201
    token = response.json()["token"]["id"]
    assert len(token) == 43
    assert _anonymous(gateway, cookies={"authenticationToken": token}).status_code == 200
    result = gateway.cli("create-token", gateway.url, "admin@example.com", "--password-stdin",
                         input="admin-password\n", check=False)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 43 and "\n" not in result.stdout.strip()
    assert "Successfully logged with admin@example.com" in result.stderr
    bad = gateway.cli("create-token", gateway.url, "admin@example.com", "--password-stdin",
                      input="wrong-password\n", check=False)
    assert bad.returncode == 1 and bad.stdout == "" and "401" in bad.stderr


def test_login_throttling_and_no_account_disclosure(gateway):
    def attempt(email, password):
        return requests.post(gateway.url + "/rest/v0/users/me/authentication_tokens",
                             auth=(email, password), json={}, timeout=30)
    unknown = attempt("nobody@example.com", "whatever-password")
    wrong = attempt("user@example.com", "whatever-password")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()
    # a retry before the pause is over is answered at once, without a password check
    refused = attempt("user@example.com", "user-password")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["data"]["retry_after"] == int(refused.headers["Retry-After"])
    time.sleep(int(refused.headers["Retry-After"]))
    assert attempt("user@example.com", "user-password").status_code == 201  # checked again, and right


def test_servers_and_users_hide_secrets(gateway):
    servers = gateway.get("/rest/v0/servers?fields=*").json()
    assert servers[0]["status"] == "connected" and servers[0]["poolId"]
    assert "password" not in json.dumps(servers).lower()
    users = gateway.get("/rest/v0/users?fields=*").json()
    assert {u["email"] for u in users} >= {"admin@example.com", "user@example.com"}
    assert "hash" not in json.dumps(users)


def test_tokens_never_logged(gateway):
    gateway.get("/rest/v0/vms?limit=1")
    requests.post(gateway.url + "/rest/v0/users/me/authentication_tokens",
                  auth=("admin@example.com", "admin-password"), json={}, timeout=10)
    log = gateway.proc.output()
    assert gateway.token not in log
    assert "admin-password" not in log
    raw = open(gateway.data_dir + "/xorest.sqlite3", "rb").read()
    assert gateway.token.encode() not in raw and b"password" not in raw.replace(b"password_", b"")


def test_changes_reach_the_api(gateway, sim):
    rpc = JsonRpc(sim.url)
    vm = next(r for r, v in rpc("VM.get_all_records").items() if v["power_state"] == "Halted"
              and not v["is_a_template"] and not v["is_a_snapshot"])
    uuid = rpc("VM.get_uuid", vm)
    rpc("VM.add_tags", vm, "seen-by-api")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answers = [gateway.get(f"/rest/v0/vms/{uuid}").json()["tags"] for _ in range(4)]
        if all("seen-by-api" in tags for tags in answers):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("tag not visible in every worker")
    rpc("VM.remove_tags", vm, "seen-by-api")


def test_basic_header_with_colon_password_and_unicode(gateway):
    creds = base64.b64encode("nobody@example.com:pa:ss:wörd".encode()).decode()
    response = _anonymous(gateway, headers={"Authorization": f"Basic {creds}"})
    assert response.status_code == 401
