"""Helpers of the management tests (actions, tasks, edits): a client of the REST API as
scripts use it, and direct looks into the simulated pool."""
import os
import signal
import time

import requests

from .conftest import sim_admin
from .test_sim import JsonRpc


def until(check, what="the condition", timeout=30):
    """Poll ``check()`` until it returns something true (returned), or fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what} never held")


class Client:
    """The REST API of one gateway (any of its workers), authenticated with its token."""

    def __init__(self, url, token):
        self.url, self.token = url, token

    def request(self, method, path, json=None, timeout=60, **params):
        return requests.request(method, self.url + path, json=json, params=params or None, timeout=timeout,
                                cookies={"authenticationToken": self.token})

    def get(self, path, **params):
        return self.request("GET", path, **params)

    def action(self, collection, key, name, body=None, sync=True):
        """``POST .../actions/<name>``; ``sync`` adds ``?sync=true``."""
        params = {"sync": "true"} if sync else {}
        return self.request("POST", f"/rest/v0/{collection}/{key}/actions/{name}", json=body, **params)

    def ok(self, collection, key, name, body=None):
        """A synchronous action that must succeed; returns its JSON answer (or ``None``)."""
        response = self.action(collection, key, name, body)
        assert response.status_code in (200, 201, 204), (name, response.status_code, response.text)
        return response.json() if response.content else None

    def wait(self, task_id, timeout=60):
        """The task once ended (``?wait=true``)."""
        deadline = time.monotonic() + timeout
        while True:
            task = self.get(f"/rest/v0/tasks/{task_id}", wait="true").json()
            if task["status"] != "pending" or time.monotonic() > deadline:
                return task

    def objects(self, collection, filter=None):
        params = {"fields": "*"}
        if filter:
            params["filter"] = filter
        return self.get(f"/rest/v0/{collection}", **params).json()

    def one(self, collection, key):
        response = self.get(f"/rest/v0/{collection}/{key}")
        assert response.status_code == 200, (collection, key, response.status_code, response.text)
        return response.json()

    def until(self, check, timeout=30, what="the condition"):
        """Poll ``check()`` until it returns something true."""
        return until(check, what, timeout)


def client(gw):
    return Client(gw.url, gw.token)


def seconds(sim, **methods):
    """Make these simulated XAPI methods take exactly these seconds (``VM_start=2``)."""
    sim_admin(sim.url, "timing", {"seconds": {name.replace("_", ".", 1): value for name, value in methods.items()}})


def reset_timing(sim):
    from .conftest import TEST_PACE
    sim_admin(sim.url, "timing", {"reset": True, "pace": float(TEST_PACE)})


def xapi(sim):
    return JsonRpc(sim.url)


def guest(api, state, shared=True, exclude=()):
    """A VM in ``state`` whose disks are all on shared (or all on local; ``None``: any)
    storage."""
    srs = {sr["id"]: sr for sr in api.objects("srs")}
    vbds = {vbd["id"]: vbd for vbd in api.objects("vbds")}
    vdis = {vdi["id"]: vdi for vdi in api.objects("vdis")}
    for vm in api.objects("vms", f"power_state:{state}"):
        if vm["id"] in exclude:
            continue
        disks = [vdis[vbds[b]["VDI"]] for b in vm["$VBDs"] if b in vbds and vbds[b].get("VDI") in vdis]
        if disks and (shared is None or all(srs[d["$SR"]]["shared"] == shared for d in disks)):
            return vm
    raise AssertionError(f"no {state} VM with {'shared' if shared else 'local'} disks")


def worker_pids(master_pid):
    """The gunicorn workers of a master process."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) != master_pid:
                        continue
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if b"poold" not in fh.read():  # the instance's pools daemon is no worker
                        pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def kill_workers(master_pid):
    """SIGKILL every worker (the master starts new ones): what an OOM kill does."""
    for pid in worker_pids(master_pid):
        os.kill(pid, signal.SIGKILL)
