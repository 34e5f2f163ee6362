"""Alarms through gunicorn, as Xen Orchestra serves them (``/rest/v0/alarms`` and an object's
``/alarms``), from the ALARM messages of a simulated pool: its past ones (``xorest sim``
builds a pool perfmon has watched for a while) and one raised while xorest runs."""
import time

import pytest

from .conftest import Gateway, sim_admin, start_sim
from .test_sim import JsonRpc

#: Xen Orchestra's alarm (``UnbrandedXoAlarm`` of its OpenAPI document): every key required.
ALARM_KEYS = {"$pool", "$poolId", "_xapiRef", "uuid", "id", "type", "name", "time", "body", "object", "href"}
#: What xorest adds (README, "Collections and their fields").
ADDED_KEYS = {"priority", "url"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alarms")
    sim = start_sim(tmp, "--seed", "3", "--vms", "40", name="alarms-sim")
    gw = Gateway(tmp, sim.url, name="alarms-gw", workers=2)
    gw.sim, gw.rpc = sim, JsonRpc(sim.url)
    yield gw
    gw.stop()
    sim.stop()


def _check_shape(alarm, pool):
    assert set(alarm) == ALARM_KEYS | ADDED_KEYS, set(alarm) ^ (ALARM_KEYS | ADDED_KEYS)
    assert alarm["priority"] == 3
    assert alarm["type"] == "message" and alarm["name"] == "ALARM" and alarm["$pool"] == pool
    assert alarm["href"] == f"/rest/v0/alarms/{alarm['id']}" and alarm["id"] == alarm["uuid"]
    assert isinstance(alarm["time"], int) and alarm["time"] % 1000 == 0  # milliseconds, as XO
    assert set(alarm["body"]) == {"name", "value"}
    assert set(alarm["object"]) == {"type", "uuid", "href"}


def test_a_default_pool_has_perfmon_settings_and_past_alarms(stack):
    pool = stack.get("/rest/v0/pools").json()[0].rsplit("/", 1)[1]
    watched = [vm for vm in stack.get("/rest/v0/vms?fields=id,other").json()
               if "perfmon" in vm.get("other", {})]
    assert watched and all("<variable>" in vm["other"]["perfmon"] for vm in watched)
    past = stack.get("/rest/v0/alarms?fields=*").json()
    assert past
    for alarm in past:
        _check_shape(alarm, pool)
        assert alarm["body"]["name"] == "cpu_usage" and float(alarm["body"]["value"]) > 90
        assert alarm["object"]["type"] == "VM" and alarm["object"]["uuid"] in {vm["id"] for vm in watched}
        assert alarm["object"]["href"] == f"/rest/v0/vms/{alarm['object']['uuid']}"


def test_an_alarm_raised_now_is_listed_with_its_vm(stack):
    pool = stack.get("/rest/v0/pools").json()[0].rsplit("/", 1)[1]
    vm = stack.get("/rest/v0/vms?fields=id&filter=power_state:Running").json()[0]["id"]
    before = stack.get(f"/rest/v0/vms/{vm}/alarms").json()
    raised = sim_admin(stack.sim.url, "alarm", {"uuid": vm, "variable": "cpu_usage", "value": 0.97})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # every worker's cache has it once its events came
        answers = [stack.get(f"/rest/v0/vms/{vm}/alarms?fields=*").json() for _ in range(4)]
        if all(len(answer) == len(before) + 1 for answer in answers):
            break
        time.sleep(0.2)
    [alarm] = [a for a in answers[0] if a["_xapiRef"] == raised["ref"]]
    _check_shape(alarm, pool)
    assert alarm["body"] == {"name": "cpu_usage", "value": "97.0"}
    assert alarm["object"] == {"type": "VM", "uuid": vm, "href": f"/rest/v0/vms/{vm}"}
    listed = stack.get(f"/rest/v0/alarms/{alarm['id']}").json()
    assert listed == alarm
    assert alarm["id"] in {a["id"] for a in stack.get("/rest/v0/alarms?fields=id&filter=body:name:cpu_usage").json()}
    # another VM's alarms do not list it
    other = stack.get("/rest/v0/vms?fields=id&filter=power_state:Running").json()[1]["id"]
    assert alarm["id"] not in {a["id"] for a in stack.get(f"/rest/v0/vms/{other}/alarms?fields=id").json()}
