"""``xorest vm start|stop|reboot|snapshot|delete`` against a running xorest, as scripts use them."""
import os
import subprocess

import pytest

from .conftest import PYTHON, ROOT, Gateway, start_sim
from .management import client


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("remote")
    sim = start_sim(tmp, "--vms", "6", "--seed", "2")
    gw = Gateway(tmp, sim.url)
    yield gw, client(gw)
    gw.stop()
    sim.stop()


def xorest(gw, *args, input=None, token=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XOREST_", "XO_"))}
    env.update(XO_URL=gw.url, XO_TOKEN=token or gw.token)
    return subprocess.run([PYTHON, "-m", "xorest", "vm", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          input=input, timeout=120)


def test_a_vm_by_name_through_its_life(stack):
    gw, api = stack
    vm = api.objects("vms", "power_state:Halted")[0]
    assert xorest(gw, "start", vm["name_label"]).returncode == 0
    assert api.one("vms", vm["id"])["power_state"] == "Running"
    assert xorest(gw, "reboot", vm["id"]).returncode == 0
    snapshot = xorest(gw, "snapshot", vm["name_label"], "--name", "nightly")
    assert snapshot.returncode == 0
    assert api.one("vm-snapshots", snapshot.stdout.strip())["name_label"] == "nightly"
    assert xorest(gw, "stop", vm["id"], "--force").returncode == 0
    assert api.one("vms", vm["id"])["power_state"] == "Halted"
    task = xorest(gw, "start", vm["id"], "--no-wait")
    assert task.returncode == 0 and api.wait(task.stdout.strip())["status"] == "success"
    refused = xorest(gw, "delete", vm["id"], input="n\n")
    assert refused.returncode == 1 and api.get(f"/rest/v0/vms/{vm['id']}").status_code == 200
    assert xorest(gw, "delete", vm["id"], "--yes").returncode == 0
    assert api.get(f"/rest/v0/vms/{vm['id']}").status_code == 404


def test_errors_are_one_line_and_exit_1(stack):
    gw, api = stack
    missing = xorest(gw, "start", "no such vm")
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no VM with the id or the name 'no such vm'"
    running = api.objects("vms", "power_state:Running")[0]
    again = xorest(gw, "start", running["id"])
    assert again.returncode == 1 and "VM_BAD_POWER_STATE" in again.stderr and again.stderr.count("\n") == 1
    twin = api.objects("vms", "power_state:Halted")[0]
    api.request("PATCH", f"/rest/v0/vms/{twin['id']}", json={"nameLabel": running["name_label"]})
    ambiguous = xorest(gw, "stop", running["name_label"])
    assert ambiguous.returncode == 1 and "2 VMs are named" in ambiguous.stderr
    assert xorest(gw, "stop", running["id"], token="bad-token").returncode == 1
    nothing = subprocess.run([PYTHON, "-m", "xorest", "vm", "stop", "x"], capture_output=True, text=True, cwd=ROOT,
                             env={k: v for k, v in os.environ.items() if not k.startswith(("XOREST_", "XO_"))})
    assert nothing.returncode == 2 and "--url" in nothing.stderr
