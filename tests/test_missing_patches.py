"""Missing patches of hosts and pools (``GET /hosts|pools/<id>/missing_patches``) through
gunicorn against the simulator's updater plugin: the lists agree with the plugin's answers,
a pool's is its hosts' merged, and the plugin's failures are clear errors.  Then the reading
of the plugin's answer and the retries of a busy plugin, without processes."""
import json

import pytest
import requests

from xorest.errors import Conflict, UpstreamError
from xorest.services import patches
from xorest.xapi import XapiError

from .conftest import Gateway, sim_admin, start_sim
from .test_sim import JsonRpc

NOWHERE = "00000000-0000-0000-0000-000000000000"
PACKAGE = {"name": "openssh", "version": "7.4p1", "release": "23.3.2.xcpng8.3", "description": "An SSH server",
           "changelog": {"date": 1742212800, "author": "Someone <someone@example.org> - 7.4p1-23.3.2",
                         "description": "- Fix a CVE"},
           "url": "http://www.openssh.com/", "size": 429044, "license": "BSD"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("patches")
    sim = start_sim(tmp, "--seed", "8", "--vms", "6", "--hosts", "3", name="patches-sim")
    gw = Gateway(tmp, sim.url, name="patches-gw")
    gw.sim, gw.rpc = sim, JsonRpc(sim.url)
    yield gw
    gw.stop()
    sim.stop()


@pytest.fixture
def plugin(stack):
    """The simulator's updater plugin, as the seed made it again after the test."""
    yield lambda body: sim_admin(stack.sim.url, "updates", body)
    sim_admin(stack.sim.url, "updates", {"reset": True})


def _check_update(gw, host_uuid):
    """The plugin's answer, asked straight from the pool."""
    ref = gw.rpc("host.get_by_uuid", host_uuid)
    return json.loads(gw.rpc("host.call_plugin", ref, "updater.py", "check_update", {}))


def _hosts(gw):
    return gw.get("/rest/v0/hosts?fields=id,uuid,$pool,power_state,rebootRequired").json()


def test_a_host_s_missing_patches_are_its_plugin_s_answer(stack):
    gw = stack
    hosts = _hosts(gw)
    assert len(hosts) == 3
    lists = {}
    for host in hosts:
        answer = gw.get(f"/rest/v0/hosts/{host['id']}/missing_patches")
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
        lists[host["id"]] = answer.json()
        assert lists[host["id"]] == _check_update(gw, host["uuid"])
    assert any(lists.values())  # the seed leaves updates pending
    for host in hosts:  # a host patched since it booted waits for its reboot, not for packages
        assert (lists[host["id"]] == []) == host["rebootRequired"], host


def test_a_pool_s_missing_patches_merge_its_hosts(stack, plugin):
    gw = stack
    hosts = sorted(_hosts(gw), key=lambda h: h["id"])
    pool = hosts[0]["$pool"]
    seeded = gw.get(f"/rest/v0/pools/{pool}/missing_patches").json()
    names = [package["name"] for package in seeded]
    assert len(names) == len(set(names))  # one entry per package
    assert set(names) == {p["name"] for host in hosts for p in _check_update(gw, host["uuid"])}
    # one host waits for a package the others do not have, another for an older build of one they share
    first, second = hosts[0], hosts[1]
    plugin({"host": first["uuid"], "updates": [PACKAGE]})
    older = dict(seeded[0], release="0.1")
    plugin({"host": second["uuid"], "updates": [older]})
    assert gw.get(f"/rest/v0/hosts/{first['id']}/missing_patches").json() == [PACKAGE]
    merged = gw.get(f"/rest/v0/pools/{pool}/missing_patches").json()
    expected = {}
    for host in hosts:  # in host id order, the last host's entry at its first place
        for package in _check_update(gw, host["uuid"]):
            expected[package["name"]] = package
    assert merged == list(expected.values())
    assert PACKAGE in merged and {p["name"] for p in merged} == set(names) | {"openssh"}


def test_plugin_failures_are_clear_errors(stack, plugin):
    gw = stack
    hosts = sorted(_hosts(gw), key=lambda h: h["id"])
    host, pool = hosts[0], hosts[0]["$pool"]
    plugin({"host": host["uuid"], "error": "Cannot retrieve repository metadata (repomd.xml) for xcp-ng-base"})
    for path in (f"/rest/v0/hosts/{host['id']}/missing_patches", f"/rest/v0/pools/{pool}/missing_patches"):
        failed = gw.get(path)
        assert failed.status_code == 502, failed.text
        body = failed.json()
        assert "repomd.xml" in body["error"] and host["id"] in body["error"]
        assert body["data"]["code"] == "-1" and body["data"]["host"] == host["id"]
        assert "Traceback" not in failed.text  # the plugin's backtrace stays in the pool
    # the others still answer
    assert gw.get(f"/rest/v0/hosts/{hosts[1]['id']}/missing_patches").status_code == 200


def test_a_busy_plugin_is_asked_again_then_refused(stack, plugin):
    gw = stack
    host = sorted(_hosts(gw), key=lambda h: h["id"])[0]
    plugin({"host": host["uuid"], "busy": "update"})
    busy = gw.get(f"/rest/v0/hosts/{host['id']}/missing_patches")
    assert busy.status_code == 409 and "busy" in busy.json()["error"]
    assert busy.json()["data"]["code"] == "-1"
    plugin({"host": host["uuid"], "busy": ""})
    assert gw.get(f"/rest/v0/hosts/{host['id']}/missing_patches").status_code == 200


def test_unknown_and_out_of_scope_objects(stack):
    gw = stack
    for collection in ("hosts", "pools"):
        missing = gw.get(f"/rest/v0/{collection}/{NOWHERE}/missing_patches")
        assert missing.status_code == 404 and missing.json()["error"].startswith("no such")
    assert gw.get(f"/rest/v0/vms/{NOWHERE}/missing_patches").status_code == 404  # hosts and pools only
    made = requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", timeout=10,
                         json={"scope": {"filter": "power_state:Running"}}, cookies={"authenticationToken": gw.token})
    assert made.status_code == 201
    cookies = {"authenticationToken": made.json()["token"]["id"]}
    host = _hosts(gw)[0]
    assert gw.get(f"/rest/v0/hosts/{host['id']}/missing_patches", cookies=cookies).status_code == 404
    assert gw.get(f"/rest/v0/pools/{host['$pool']}/missing_patches", cookies=cookies).status_code == 404


# the plugin's answer, and a busy plugin, without processes ---------------------------------------

@pytest.mark.parametrize("text", ["not json", '{"error": "yum is locked"}', '{"packages": []}', "[1, 2]",
                                  '[{"version": "1"}]', None])
def test_answers_that_are_not_a_list_of_packages(text):
    with pytest.raises(UpstreamError) as raised:
        patches.read_answer(text, "h1")
    assert raised.value.data == {"host": "h1"}


class _Host:
    """A pool connection whose plugin answers from a list, one item per call."""

    def __init__(self, answers):
        self.answers, self.calls = list(answers), 0
        self.rpc = self

    def call(self, method, *args):
        assert (method, args[1:]) == ("host.call_plugin", ("updater.py", "check_update", {}))
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class _Services:
    def __init__(self, conn):
        self.conn = conn

    def get(self, collection, key):
        return {"id": key, "_xapiRef": "OpaqueRef:h", "productBrand": "XCP-ng", "$pool": "p"}

    def connection_for(self, obj):
        return self.conn


def _busy():
    return XapiError("-1", ["The updater plugin is busy (current operation: update)", "", "Traceback..."])


def test_a_busy_plugin_is_retried_a_bounded_number_of_times():
    waits = []
    conn = _Host([_busy(), _busy(), json.dumps([PACKAGE])])
    service = patches.PatchService(_Services(conn), _Services(conn), sleep=waits.append)
    assert service.missing_patches("hosts", "h1") == [PACKAGE]
    assert conn.calls == 3 and waits == [patches.BUSY_DELAY] * 2
    always = _Host([_busy()] * patches.BUSY_TRIES)
    service = patches.PatchService(_Services(always), _Services(always), sleep=waits.append)
    with pytest.raises(Conflict) as raised:
        service.missing_patches("hosts", "h1")
    assert always.calls == patches.BUSY_TRIES and raised.value.data["params"] == [_busy().params[0]]
    other = _Host([XapiError("HOST_OFFLINE", ["OpaqueRef:h"])])
    with pytest.raises(Conflict):  # a host that does not run: the pool's refusal, at once
        patches.PatchService(_Services(other), _Services(other), sleep=waits.append).missing_patches("hosts", "h1")
    assert other.calls == 1
