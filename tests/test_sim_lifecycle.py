"""The simulator's operations as XAPI runs them: preconditions, allowed and current
operations, asynchronous tasks that take time and can be cancelled, conflicting calls,
hosts going down and coming back, storage and network changes."""
import threading
import time

import pytest
import requests
import XenAPI

from .conftest import sim_admin
from .test_sim import JsonRpc


def fails(rpc, code, method, *args):
    with pytest.raises(XenAPI.Failure) as info:
        rpc(method, *args)
    assert info.value.details[0] == code, info.value.details
    return info.value.details


def wait_task(rpc, task, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = rpc("task.get_record", task)
        if record["status"] not in ("pending", "cancelling"):
            return record
        time.sleep(0.02)
    raise AssertionError(f"task {task} still {record['status']}")


def records(rpc, cls, **match):
    return {r: v for r, v in rpc(f"{cls}.get_all_records").items() if all(v[k] == w for k, w in match.items())}


@pytest.fixture
def pool(processes):
    sim = processes.sim("--vms", "12", "--seed", "1")
    rpc = JsonRpc(sim.url)
    rpc.sim = sim
    return rpc


def guest(rpc, state, shared=True):
    """A guest VM in ``state`` whose disks are all on shared storage (or all local); a
    halted one is started when none runs."""
    shared_srs = set(records(rpc, "SR", shared=True))
    for wanted in (state, "Halted"):
        for ref, vm in records(rpc, "VM", is_control_domain=False, is_a_template=False,
                               power_state=wanted).items():
            vdis = [rpc("VBD.get_VDI", v) for v in vm["VBDs"] if rpc("VBD.get_type", v) == "Disk"]
            if vdis and all((rpc("VDI.get_SR", d) in shared_srs) == shared for d in vdis):
                if wanted != state and state == "Running":
                    rpc("VM.start", ref, False, False)
                elif wanted != state:
                    continue
                return ref
    raise AssertionError(f"no {state} VM with {'shared' if shared else 'local'} disks")


def test_allowed_operations_follow_the_state(pool):
    vm = guest(pool, "Halted")
    allowed = pool("VM.get_allowed_operations", vm)
    assert {"start", "clone", "copy", "export", "destroy", "snapshot"} <= set(allowed)
    assert not {"clean_shutdown", "pause", "suspend", "unpause"} & set(allowed)
    pool("VM.start", vm, False, False)
    allowed = pool("VM.get_allowed_operations", vm)
    assert {"clean_shutdown", "hard_shutdown", "pause", "suspend", "snapshot", "pool_migrate"} <= set(allowed)
    assert not {"start", "destroy", "clone"} & set(allowed)
    vbd = next(v for v in pool("VM.get_VBDs", vm) if pool("VBD.get_type", v) == "Disk")
    # a disk that is not unpluggable (a boot disk) offers unplug_force only
    unplug = "unplug" if pool("VBD.get_unpluggable", vbd) else "unplug_force"
    assert pool("VBD.get_currently_attached", vbd) and unplug in pool("VBD.get_allowed_operations", vbd)
    vdi = pool("VBD.get_VDI", vbd)
    assert "destroy" not in pool("VDI.get_allowed_operations", vdi)
    fails(pool, "VDI_IN_USE", "VDI.destroy", vdi)
    dom0 = next(iter(records(pool, "VM", is_control_domain=True)))
    assert set(pool("VM.get_allowed_operations", dom0)) <= {"changing_dynamic_range", "metadata_export"}


def test_async_calls_take_time_report_progress_and_block_others(pool):
    sim_admin(pool.sim.url, "timing", {"seconds": {"VM.start": 1.5}})
    vm = guest(pool, "Halted")
    task = pool("Async.VM.start", vm, False, False)
    time.sleep(0.5)
    assert pool("VM.get_power_state", vm) == "Halted"
    assert pool("VM.get_current_operations", vm) == {task: "start"}
    assert 0 < pool("task.get_progress", task) < 1
    assert pool("task.get_allowed_operations", task) == ["cancel"]
    details = fails(pool, "OTHER_OPERATION_IN_PROGRESS", "VM.start", vm, False, False)
    assert details == ["OTHER_OPERATION_IN_PROGRESS", "VM", vm, "start", task]
    fails(pool, "OTHER_OPERATION_IN_PROGRESS", "VM.clone", vm, "meanwhile")
    record = wait_task(pool, task)
    assert record["status"] == "success" and record["progress"] == 1.0
    assert pool("VM.get_power_state", vm) == "Running" and pool("VM.get_current_operations", vm) == {}


def test_of_two_concurrent_calls_one_wins(pool):
    sim_admin(pool.sim.url, "timing", {"seconds": {"VM.clean_shutdown": 0.5}})
    vm = guest(pool, "Running")
    outcomes = []

    def shut():
        try:
            pool("VM.clean_shutdown", vm)
            outcomes.append("done")
        except XenAPI.Failure as exc:
            outcomes.append(exc.details[0])
    threads = [threading.Thread(target=shut) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == ["OTHER_OPERATION_IN_PROGRESS"] * 3 + ["done"]
    # a hard shutdown may overtake a clean one, as in XAPI
    pool("VM.start", vm, False, False)
    task = pool("Async.VM.clean_shutdown", vm)
    time.sleep(0.1)
    pool("VM.hard_shutdown", vm)
    assert wait_task(pool, task)["status"] == "failure"
    assert pool("VM.get_power_state", vm) == "Halted"


def test_cancelling_a_task_leaves_the_object_as_it_was(pool):
    sim_admin(pool.sim.url, "timing", {"seconds": {"VM.snapshot": 5}})
    vm = guest(pool, "Halted")
    before = len(pool("VM.get_snapshots", vm))
    task = pool("Async.VM.snapshot", vm, "never", [])
    time.sleep(0.3)
    pool("task.cancel", task)
    record = wait_task(pool, task, timeout=3)
    assert record["status"] == "cancelled" and record["error_info"] == ["TASK_CANCELLED", task]
    assert len(pool("VM.get_snapshots", vm)) == before and pool("VM.get_current_operations", vm) == {}
    fails(pool, "OPERATION_NOT_ALLOWED", "task.cancel", task)


def test_timing_admin_validates_and_paces(pool):
    url = pool.sim.url
    assert requests.post(f"{url}/_sim/timing", json={"pace": -1}, timeout=5).status_code == 400
    assert requests.post(f"{url}/_sim/timing", json={"speed": 1}, timeout=5).status_code == 400
    assert sim_admin(url, "timing", {"pace": 0, "seconds": {"VM.pause": 0.4}}) == {
        "pace": 0.0, "seconds": {"VM.pause": 0.4}}
    vm = guest(pool, "Running")
    started = time.monotonic()
    pool("VM.pause", vm)
    assert 0.35 < time.monotonic() - started < 3
    assert sim_admin(url, "timing", {"reset": True}) == {"pace": 1.0, "seconds": {}}


def test_templates_snapshots_and_revert(pool):
    template = next(iter(records(pool, "VM", is_default_template=True)))
    fails(pool, "VM_IS_TEMPLATE", "VM.start", template, False, False)
    fails(pool, "VM_IS_TEMPLATE", "VM.destroy", template)
    clone = pool("VM.clone", template, "from template")
    assert pool("VM.get_is_a_template", clone) and not pool("VM.get_is_default_template", clone)
    fails(pool, "ONLY_PROVISION_TEMPLATE", "VM.provision", guest(pool, "Halted"))
    pool("VM.provision", clone)
    assert not pool("VM.get_is_a_template", clone)
    vm = guest(pool, "Running")
    snapshot = pool("VM.snapshot", vm, "before", [])
    assert pool("VM.get_snapshot_info", snapshot) == {"power-state-at-snapshot": "Running"}
    fails(pool, "VM_IS_SNAPSHOT", "VM.start", snapshot, False, False)
    fails(pool, "ONLY_REVERT_SNAPSHOT", "VM.revert", vm)
    old_disks = {pool("VBD.get_VDI", v) for v in pool("VM.get_VBDs", vm)} - {"OpaqueRef:NULL"}
    pool("VM.revert", snapshot)
    assert pool("VM.get_power_state", vm) == "Halted"
    new_disks = {pool("VBD.get_VDI", v) for v in pool("VM.get_VBDs", vm)} - {"OpaqueRef:NULL"}
    assert new_disks and not new_disks & old_disks


def test_migration_evacuation_and_host_reboot(pool):
    vm = guest(pool, "Running")
    host = pool("VM.get_resident_on", vm)
    other = next(h for h in pool("host.get_all") if h != host)
    pool("VM.pool_migrate", vm, other, {})
    assert pool("VM.get_resident_on", vm) == other
    local = guest(pool, "Running", shared=False)
    fails(pool, "VM_REQUIRES_SR", "VM.pool_migrate", local,
          next(h for h in pool("host.get_all") if h != pool("VM.get_resident_on", local)), {})
    # a host with only shared-storage guests can be evacuated
    target = next(h for h in pool("host.get_all")
                  if not pool("host.get_vms_which_prevent_evacuation", h) and h != pool("pool.get_all_records")
                  [pool("pool.get_all")[0]]["master"])
    fails(pool, "HOST_NOT_DISABLED", "host.reboot", target)
    pool("host.disable", target)
    guests = [v for v in pool("host.get_resident_VMs", target) if not pool("VM.get_is_control_domain", v)]
    if guests:
        fails(pool, "HOST_IN_USE", "host.reboot", target)
    pool("host.evacuate", target, "OpaqueRef:NULL", 1)
    assert not [v for v in pool("host.get_resident_VMs", target) if not pool("VM.get_is_control_domain", v)]
    boot_time = pool("host.get_other_config", target)["boot_time"]
    pool("host.reboot", target)
    metrics = pool("host.get_metrics", target)
    deadline = time.monotonic() + 10
    while pool("host_metrics.get_live", metrics) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pool("host_metrics.get_live", metrics) and not pool("host.get_enabled", target)
    fails(pool, "HOST_OFFLINE", "PIF.scan", target)
    while not pool("host_metrics.get_live", metrics) and time.monotonic() < deadline + 10:
        time.sleep(0.05)
    assert pool("host.get_enabled", target) and pool("host.get_current_operations", target) == {}
    assert pool("host.get_other_config", target)["boot_time"] >= boot_time


def test_shutdown_power_on_and_forget(pool):
    master = pool("pool.get_master", pool("pool.get_all")[0])
    host = next(h for h in pool("host.get_all")
                if h != master and not pool("host.get_vms_which_prevent_evacuation", h))
    pool("host.disable", host)
    pool("host.evacuate", host, "OpaqueRef:NULL", 1)
    fails(pool, "HOST_IS_LIVE", "host.destroy", host)
    fails(pool, "HOST_IS_LIVE", "host.power_on", host)
    pool("host.shutdown", host)
    metrics = pool("host.get_metrics", host)
    deadline = time.monotonic() + 10
    while pool("host_metrics.get_live", metrics) and time.monotonic() < deadline:
        time.sleep(0.05)
    fails(pool, "HOST_POWER_ON_MODE_DISABLED", "host.power_on", host)
    pool("host.set_power_on_mode", host, "IPMI", {"power_on_ip": "10.0.0.9"})
    pool("host.power_on", host)
    assert pool("host_metrics.get_live", metrics) and pool("host.get_enabled", host)
    pool("host.disable", host)
    pool("host.shutdown", host)
    while pool("host_metrics.get_live", metrics) and time.monotonic() < deadline + 10:
        time.sleep(0.05)
    pool("host.destroy", host)
    assert host not in pool("host.get_all")


def test_master_reboot_takes_the_api_down(pool):
    sim_admin(pool.sim.url, "timing", {"seconds": {"host.reboot:down": 1.0}})
    master = pool("pool.get_master", pool("pool.get_all")[0])
    for vm in pool("host.get_resident_VMs", master):
        if not pool("VM.get_is_control_domain", vm):
            pool("VM.hard_shutdown", vm)
    pool("host.disable", master)
    pool("host.reboot", master)
    time.sleep(1.3)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(pool.url, json={"method": "session.login_with_password", "params": ["root", "password"]},
                      timeout=2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            fresh = JsonRpc(pool.sim.url)
            break
        except requests.exceptions.ConnectionError:
            time.sleep(0.1)
    fails(pool, "SESSION_INVALID", "host.get_enabled", master)  # the old session ended with the toolstack
    assert fresh("host.get_enabled", master)


def test_storage_operations(pool):
    sr = next(iter(records(pool, "SR", name_label="NFS shared storage")))
    fails(pool, "SR_HAS_PBD", "SR.forget", sr)
    pool("SR.scan", sr)
    host = pool("host.get_all")[0]
    fails(pool, "SR_UNKNOWN_DRIVER", "SR.create", host, {}, "0", "new", "", "zfs-bogus", "user", False, {})
    new = pool("SR.create", host, {"device": "/dev/sdz"}, "1073741824", "new", "", "lvm", "user", False, {})
    assert pool("SR.get_physical_size", new) == 1073741824 and len(pool("SR.get_PBDs", new)) == 1
    vdi = pool("VDI.create", {"SR": new, "virtual_size": "1048576", "type": "user", "sharable": False,
                              "read_only": False, "other_config": {}})
    pbd = pool("SR.get_PBDs", new)[0]
    fails(pool, "SR_HAS_PBD", "SR.destroy", new)
    pool("PBD.unplug", pbd)
    fails(pool, "SR_NOT_EMPTY", "SR.destroy", new)
    pool("PBD.plug", pbd)
    fails(pool, "VDI_TOO_SMALL", "VDI.resize", vdi, "1024")
    pool("VDI.resize", vdi, "2097152")
    assert pool("VDI.get_virtual_size", vdi) == 2097152
    pool("VDI.destroy", vdi)
    pool("PBD.unplug", pbd)
    pool("SR.destroy", new)
    assert new not in pool("SR.get_all")
    assert pool("host.call_plugin", host, "trim", "do_trim", {"sr_uuid": pool("SR.get_uuid", sr)}).startswith("<?xml")
    fails(pool, "XENAPI_MISSING_PLUGIN", "host.call_plugin", host, "nope", "x", {})


def test_disk_and_device_operations(pool):
    vm = guest(pool, "Running")
    vbd = next(v for v in pool("VM.get_VBDs", vm) if pool("VBD.get_type", v) == "Disk")
    vdi = pool("VBD.get_VDI", vbd)
    fails(pool, "DEVICE_ALREADY_ATTACHED", "VBD.plug", vbd)
    if not pool("VBD.get_unpluggable", vbd):  # a boot disk: XAPI refuses to hot-unplug it
        fails(pool, "VBD_NOT_UNPLUGGABLE", "VBD.unplug", vbd)
        pool("VBD.set_unpluggable", vbd, True)
    pool("VBD.unplug", vbd)
    fails(pool, "DEVICE_ALREADY_DETACHED", "VBD.unplug", vbd)
    pool("VBD.plug", vbd)
    # storage motion to an SR the VM's host sees (here: its local storage)
    host = pool("VM.get_resident_on", vm)
    target = next(s for s in records(pool, "SR", type="lvm")
                  if any(pool("PBD.get_host", p) == host for p in pool("SR.get_PBDs", s)))
    moved = pool("VDI.pool_migrate", vdi, target, {})
    assert pool("VBD.get_VDI", vbd) == moved and vdi not in pool("VDI.get_all")
    halted = guest(pool, "Halted")
    disk = pool("VBD.get_VDI", next(v for v in pool("VM.get_VBDs", halted) if pool("VBD.get_type", v) == "Disk"))
    fails(pool, "VDI_NEEDS_VM_FOR_MIGRATE", "VDI.pool_migrate", disk, target, {})
    devices = pool("VM.get_allowed_VBD_devices", vm)
    assert "0" not in devices and "3" not in devices
    new = pool("VBD.create", {"VM": vm, "VDI": disk, "userdevice": devices[0], "bootable": False, "mode": "RO",
                              "type": "Disk", "empty": False, "other_config": {}})
    fails(pool, "DEVICE_ALREADY_EXISTS", "VBD.create", {"VM": vm, "VDI": disk, "userdevice": devices[0],
                                                         "mode": "RO", "type": "Disk"})
    pool("VBD.plug", new)
    fails(pool, "OPERATION_NOT_ALLOWED", "VBD.destroy", new)
    pool("VBD.unplug_force", new)
    pool("VBD.destroy", new)
    network = pool("network.get_all")[0]
    vif = pool("VIF.create", {"VM": vm, "network": network, "device": pool("VM.get_allowed_VIF_devices", vm)[0],
                              "MAC": "", "MTU": "1500", "other_config": {}})
    assert pool("VIF.get_MAC", vif) and not pool("VIF.get_currently_attached", vif)
    pool("VIF.plug", vif)
    fails(pool, "OPERATION_NOT_ALLOWED", "VIF.destroy", vif)
    pool("VIF.unplug_force", vif)
    pool("VIF.destroy", vif)


def test_networks_vlans_and_bonds(pool):
    fails(pool, "NETWORK_CONTAINS_PIF", "network.destroy", pool("network.get_all")[0])
    network = pool("network.create", {"name_label": "vlan 42", "name_description": "", "MTU": "1500",
                                      "other_config": {"automatic": "false"}})
    physical = next(p for p, r in records(pool, "PIF", physical=True).items() if r["device"] == "eth1")
    fails(pool, "VLAN_TAG_INVALID", "pool.create_VLAN_from_PIF", physical, network, "5000")
    pifs = pool("pool.create_VLAN_from_PIF", physical, network, "42")
    assert len(pifs) == len(pool("host.get_all")) and pool("PIF.get_VLAN", pifs[0]) == 42
    fails(pool, "PIF_VLAN_EXISTS", "pool.create_VLAN_from_PIF", physical, network, "42")
    fails(pool, "NETWORK_CONTAINS_PIF", "network.destroy", network)
    for pif in pifs:
        pool("VLAN.destroy", pool("PIF.get_VLAN_master_of", pif))
    pool("network.destroy", network)
    bonded = pool("network.create", {"name_label": "bond", "MTU": "9000", "other_config": {}})
    host = pool("host.get_all")[0]
    members = [p for p, r in records(pool, "PIF", physical=True, host=host).items()
               if r["bond_slave_of"] == "OpaqueRef:NULL"]  # the pool's own bond keeps its NICs
    fails(pool, "PIF_BOND_NEEDS_MORE_MEMBERS", "Bond.create", bonded, members[:1], "", "lacp", {})
    bond = pool("Bond.create", bonded, members, "", "active-backup", {})
    assert sorted(pool("Bond.get_slaves", bond)) == sorted(members)
    master = pool("Bond.get_master", bond)
    assert pool("PIF.get_bond_master_of", master) == [bond] and pool("PIF.get_network", master) == bonded
    fails(pool, "PIF_ALREADY_BONDED", "Bond.create", bonded, members, "", "lacp", {})
    pool("Bond.destroy", bond)
    assert pool("PIF.get_bond_slave_of", members[0]) == "OpaqueRef:NULL"
