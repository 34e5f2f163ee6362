"""The simulated pool's records, read over HTTP as any client reads them: every datamodel
field, references consistent both ways, a real pool's variety and counts, xorest's mapper
fed with them, determinism from the seed."""
import os
import random

import pytest

from xorest import objects
from xorest.sim import datamodel
from xorest.sim.disks import DiskStore
from xorest.sim.population import PoolBuilder
from xorest.sim.state import Database

from .conftest import PYTHON, ServerProcess, free_port
from .golden import map_pool
from .test_sim import JsonRpc

CLASSES = datamodel.SERVED_CLASSES
NULL = "OpaqueRef:NULL"

# (class, field holding one ref) -> (class, field holding the refs back), written out here
# from the datamodel's descriptions rather than taken from the simulator's own table
ONE_TO_MANY = [
    ("VBD", "VM", "VM", "VBDs"), ("VBD", "VDI", "VDI", "VBDs"), ("VDI", "SR", "SR", "VDIs"),
    ("PBD", "SR", "SR", "PBDs"), ("PBD", "host", "host", "PBDs"), ("VIF", "VM", "VM", "VIFs"),
    ("VIF", "network", "network", "VIFs"), ("PIF", "host", "host", "PIFs"), ("PIF", "network", "network", "PIFs"),
    ("VM", "resident_on", "host", "resident_VMs"), ("VM", "snapshot_of", "VM", "snapshots"),
    ("VDI", "snapshot_of", "VDI", "snapshots"), ("host_cpu", "host", "host", "host_CPUs"),
    ("console", "VM", "VM", "consoles"), ("task", "subtask_of", "task", "subtasks"),
    ("VM", "parent", "VM", "children"), ("PCI", "host", "host", "PCIs"), ("PGPU", "host", "host", "PGPUs"),
    ("PGPU", "GPU_group", "GPU_group", "PGPUs"), ("VGPU", "VM", "VM", "VGPUs"),
    ("VGPU", "GPU_group", "GPU_group", "VGPUs"), ("VGPU", "type", "VGPU_type", "VGPUs"),
    ("VGPU", "resident_on", "PGPU", "resident_VGPUs"), ("VTPM", "VM", "VM", "VTPMs"),
    ("Certificate", "host", "host", "certificates"), ("Bond", "master", "PIF", "bond_master_of"),
    ("PIF", "bond_slave_of", "Bond", "slaves"), ("VLAN", "tagged_PIF", "PIF", "VLAN_slave_of"),
    ("host_patch", "host", "host", "patches"), ("host_patch", "pool_patch", "pool_patch", "host_patches"),
]
ONE_TO_ONE = [("VLAN", "untagged_PIF", "PIF", "VLAN_master_of"), ("host", "control_domain", None, None)]
MANY_TO_MANY = [
    ("pool_update", "hosts", "host", "updates"),
    ("PGPU", "supported_VGPU_types", "VGPU_type", "supported_on_PGPUs"),
    ("PGPU", "enabled_VGPU_types", "VGPU_type", "enabled_on_PGPUs"),
    ("GPU_group", "supported_VGPU_types", "VGPU_type", "supported_on_GPU_groups"),
    ("GPU_group", "enabled_VGPU_types", "VGPU_type", "enabled_on_GPU_groups"),
]


def read_pool(url):
    rpc = JsonRpc(url)
    return {cls: rpc(f"{cls}.get_all_records") for cls in CLASSES}, rpc


def start_full_sim(tmp_path, *args):
    """``xorest sim`` with every kind of record a real pool has (``XOREST_SIM_INTERNALS``)."""
    port = free_port()
    env = {**os.environ, "XOREST_SIM_INTERNALS": "1"}
    proc = ServerProcess([PYTHON, "-m", "xorest", "sim", "--listen", f"127.0.0.1:{port}", *args],
                         str(tmp_path / "sim-full.log"), env=env, ready_line=r"listening on (\S+)")
    proc.url = proc.match.group(1)
    return proc


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    sim = start_full_sim(tmp_path_factory.mktemp("population"), "--vms", "120", "--seed", "4", "--hosts", "4")
    try:
        records, _ = read_pool(sim.url)
    finally:
        sim.stop()
    return records


def _ref_fields(model, cls):
    for name, field in model.classes[cls].fields.items():
        if field.type.endswith(" ref"):
            yield name, "one"
        elif field.type.endswith(" ref set"):
            yield name, "set"


def test_every_class_has_records_with_every_datamodel_field(pool):
    model = datamodel.load()
    for cls in CLASSES:
        if cls == "task":
            continue  # a pool's task table may be empty; the simulator's holds two finished ones
        assert pool[cls], f"no {cls} records"
        for record in pool[cls].values():
            assert set(record) == set(model.classes[cls].fields), cls


def test_references_exist_and_agree_both_ways(pool):
    model = datamodel.load()
    where = {ref: cls for cls, table in pool.items() for ref in table}
    for cls in CLASSES:
        for ref, record in pool[cls].items():
            for name, kind in _ref_fields(model, cls):
                targets = [record[name]] if kind == "one" else record[name]
                for target in targets:
                    assert target == NULL or target in where, (cls, name, target)  # no dangling refs
    for cls, field, other, back in ONE_TO_MANY:
        for ref, record in pool[cls].items():
            target = record[field]
            if target != NULL:
                assert ref in pool[other][target][back], (cls, field, ref)
        for ref, record in pool[other].items():
            for source in record[back]:
                assert pool[cls][source][field] == ref, (other, back, ref)
    for cls, field, other, back in MANY_TO_MANY:
        pairs = {(ref, t) for ref, r in pool[cls].items() for t in r[field]}
        assert pairs == {(s, ref) for ref, r in pool[other].items() for s in r[back]}, (cls, field)
    for vlan_ref, vlan in pool["VLAN"].items():
        assert pool["PIF"][vlan["untagged_PIF"]]["VLAN_master_of"] == vlan_ref
        assert pool["PIF"][vlan["untagged_PIF"]]["VLAN"] == vlan["tag"]
    for pif_ref, pif in pool["PIF"].items():
        if pif["VLAN_master_of"] != NULL:
            assert pool["VLAN"][pif["VLAN_master_of"]]["untagged_PIF"] == pif_ref
    for host_ref, host in pool["host"].items():
        dom0 = pool["VM"][host["control_domain"]]
        assert dom0["is_control_domain"] and dom0["resident_on"] == host_ref
    for vm in pool["VM"].values():
        assert vm["metrics"] in pool["VM_metrics"]  # every VM has its metrics
        assert vm["guest_metrics"] == NULL or vm["guest_metrics"] in pool["VM_guest_metrics"]
    by_uuid = {v["uuid"]: v for v in pool["VDI"].values()}
    for vdi in pool["VDI"].values():
        parent = vdi["sm_config"].get("vhd-parent")
        assert parent is None or parent in by_uuid  # VHD chains end in the pool
    metrics_owners = [vm["metrics"] for vm in pool["VM"].values()]
    assert len(metrics_owners) == len(set(metrics_owners)) == len(pool["VM_metrics"])


def test_counts_are_a_real_pools(pool):
    hosts = len(pool["host"])
    assert len(pool["host_cpu"]) == hosts * 16  # one per logical CPU, as cpu_info says
    assert all(int(h["cpu_info"]["cpu_count"]) == len(h["host_CPUs"]) for h in pool["host"].values())
    assert len(pool["PIF"]) == hosts * 7 == len(pool["PIF_metrics"])  # 4 NICs, a bond, 2 VLANs
    assert len(pool["Bond"]) == hosts and len(pool["VLAN"]) == hosts * 2
    assert len(pool["Certificate"]) == hosts * 2
    assert len(pool["host_patch"]) == hosts
    user_vms = [v for v in pool["VM"].values() if not (v["is_a_template"] or v["is_control_domain"])]
    assert len(user_vms) == 120
    for vm in user_vms:
        kinds = [pool["VBD"][b]["type"] for b in vm["VBDs"]]
        assert kinds.count("CD") == 1 and 1 <= kinds.count("Disk") <= 3
    live = [v for v in pool["VM"].values() if v["power_state"] in ("Running", "Paused")]
    assert len(pool["console"]) == len(live) + hosts  # one per running VM, and dom0's text console
    assert all(len(v["consoles"]) >= 1 for v in live)
    assert len(pool["VM_guest_metrics"]) < len(live) + 10
    assert not any(v["guest_metrics"] != NULL for v in user_vms if v["power_state"] == "Halted")
    templates = [v for v in pool["VM"].values() if v["is_default_template"]]
    assert len(templates) >= 15 and all(v["other_config"]["default_template"] == "true" for v in templates)
    assert len(pool["SM"]) >= 10


def test_variety(pool):
    vms = pool["VM"]
    user = {r: v for r, v in vms.items() if not (v["is_a_template"] or v["is_control_domain"] or v["is_a_snapshot"])}
    firmwares = {v["HVM_boot_params"].get("firmware") for v in user.values()}
    assert {"uefi", "bios"} <= firmwares
    secure = {v["platform"].get("secureboot") for v in user.values() if v["HVM_boot_params"].get("firmware") == "uefi"}
    assert {"true", "false"} <= secure
    assert pool["VTPM"] and all(vms[t["VM"]]["platform"].get("vtpm") == "true" for t in pool["VTPM"].values())
    assert any(g["currently_attached"] and g["resident_on"] != NULL for g in pool["VGPU"].values())
    assert {p["is_system_display_device"] for p in pool["PGPU"].values()} == {True, False}
    assert {p["class_name"] for p in pool["PCI"].values()} >= {"Ethernet controller", "VGA compatible controller",
                                                              "3D controller"}
    assert {c["type"] for c in pool["Certificate"].values()} == {"host", "host_internal"}
    # halted VMs that never started: start_time at the epoch, as XAPI gives it
    halted = [pool["VM_metrics"][v["metrics"]] for v in user.values() if v["power_state"] == "Halted"]
    assert any(m["start_time"] == "19700101T00:00:00Z" for m in halted)
    suspended = [v for v in user.values() if v["power_state"] == "Suspended"]
    for vm in suspended:
        assert pool["VDI"][vm["suspend_VDI"]]["type"] == "suspend" and vm["suspend_SR"] != NULL
    # VHD chains: a snapshot's parent is a hidden base copy on its disk's chain
    snapshots = [v for v in pool["VDI"].values() if v["is_a_snapshot"]]
    assert snapshots
    base = {v["uuid"]: v for v in pool["VDI"].values() if not v["managed"]}
    for snap in snapshots:
        if snap["type"] == "user":
            parent, chain = snap["sm_config"]["vhd-parent"], []
            link = pool["VDI"][snap["snapshot_of"]]["sm_config"].get("vhd-parent")
            while link is not None:
                chain.append(link)
                link = base[link]["sm_config"].get("vhd-parent")
            assert parent in base and parent in chain
    templates = [v for v in vms.values() if v["is_default_template"]]
    assert any("<provision><disk" in v["other_config"]["disks"] for v in templates)
    assert any(v["other_config"]["disks"] == "" for v in templates)
    for host in pool["host"].values():
        assert host["software_version"]["product_brand"] == "XCP-ng"
        assert host["iscsi_iqn"] == host["other_config"]["iscsi_iqn"] and host["license_server"]
        assert "iommu" in host["chipset_info"] and host["license_params"]["sku_type"] == "xcp-ng"
    pool_record = next(iter(pool["pool"].values()))
    if pool_record["ha_enabled"]:
        statefile = pool["VDI"][pool_record["ha_statefiles"][0]]
        assert statefile["type"] == "ha_statefile" and pool_record["ha_cluster_stack"] == "xhad"
    bonded = {p["network"] for p in pool["PIF"].values() if p["bond_master_of"]}
    assert len(bonded) == 1 and all(len(b["slaves"]) == 2 for b in pool["Bond"].values())


def test_guest_networks_are_written_as_guest_agents_write_them(pool):
    seen = set()
    for vm in pool["VM"].values():
        if vm["guest_metrics"] == NULL:
            continue
        guest = pool["VM_guest_metrics"][vm["guest_metrics"]]
        networks = guest["networks"]
        devices = {pool["VIF"][v]["device"] for v in vm["VIFs"]}
        for key, value in networks.items():
            device, _, kind = key.partition("/")
            assert device in devices, key  # only the VM's own interfaces
            assert kind == "ip" or kind.startswith(("ipv4/", "ipv6/")), key
            if kind == "ip":
                assert networks[f"{device}/ipv4/0"] == value  # the old key is an alias of the first address
                seen.add("old")
            elif kind.startswith("ipv6/"):
                assert ":" in value
                seen.add("ipv6")
        version = guest["PV_drivers_version"]
        assert version["major"] and version["minor"]
        seen.add("build" if "build" in version else "no-build")
    assert seen == {"old", "ipv6", "build", "no-build"}


def test_mapper_serves_every_collection(pool):
    records = {ref: (cls, objects.trim(cls, record)) for cls, table in pool.items() for ref, record in table.items()}
    served, other = map_pool(records)
    for collection in objects.COLLECTIONS:
        assert served.get(collection), f"no {collection}"
    assert all(a["body"]["name"] == "cpu_usage" and float(a["body"]["value"]) >= 90 for a in served["alarms"].values())
    host = next(iter(served["hosts"].values()))
    assert host["PCIs"] and host["PGPUs"] and host["certificates"]
    assert any(vm.get("VTPMs") for vm in served["vms"].values())
    assert any(n["isBonded"] for n in served["networks"].values())
    assert any(v.get("chainPhysicalUsage", 0) > v["usage"] for v in served["vdis"].values())
    assert any(h["rebootRequired"] for h in served["hosts"].values())
    assert any(not h["rebootRequired"] for h in served["hosts"].values())
    watched = [v for v in pool["VM"].values() if "perfmon" in v["other_config"]]
    assert watched and all("<variable><name value=" in v["other_config"]["perfmon"] for v in watched)


def _build(seed, now=1_750_000_000, vms=60, **options):
    model = datamodel.load()
    db = Database(model, datamodel.SERVED_CLASSES, random.Random(seed))
    PoolBuilder(db, DiskStore(db, seed), seed, hosts=3, vms=vms, now=now, **options).build()
    return db.tables


def test_alarm_history_in_perfmon_s_format():
    messages = _build(3, vms=200, internals=True)["message"].values()
    alarms = [m for m in messages if m["name"] == "ALARM"]
    assert alarms and all(m["body"].startswith("value: 0.9") and '<name value="cpu_usage"/>' in m["body"]
                          for m in alarms)
    assert not any(m["name"] == "ALARM" for m in _build(3, vms=200)["message"].values())


def test_same_seed_same_pool():
    first, second = _build(9), _build(9)
    assert first == second
    assert _build(10)["VM"] != first["VM"]
    # time moves every timestamp, nothing else
    later = _build(9, now=1_750_000_000 + 86400)
    assert set(later["VM"]) == set(first["VM"])
    assert [v["name_label"] for v in later["VM"].values()] == [v["name_label"] for v in first["VM"].values()]


def test_same_seed_same_pool_over_http(processes):
    first, second = processes.sim("--vms", "20", "--seed", "77"), processes.sim("--vms", "20", "--seed", "77")
    a, b = JsonRpc(first.url)("VM.get_all_records"), JsonRpc(second.url)("VM.get_all_records")
    assert {r: v["uuid"] for r, v in a.items()} == {r: v["uuid"] for r, v in b.items()}


def test_starting_and_stopping_keeps_records_consistent(processes):
    sim = processes.sim("--vms", "30", "--seed", "6")
    records, rpc = read_pool(sim.url)
    halted = next(r for r, v in records["VM"].items() if v["power_state"] == "Halted" and not v["is_a_template"]
                  and not v["is_control_domain"])
    rpc("VM.start", halted, False, False)
    vm = rpc("VM.get_record", halted)
    assert len(vm["consoles"]) == 1 and rpc("console.get_VM", vm["consoles"][0]) == halted
    assert all(rpc("VBD.get_device", vbd).startswith("xvd") for vbd in vm["VBDs"])
    rpc("VM.hard_shutdown", halted)
    vm = rpc("VM.get_record", halted)
    assert vm["consoles"] == [] and vm["guest_metrics"] == NULL
    after, _ = read_pool(sim.url)
    for console in after["console"].values():
        assert console["VM"] in after["VM"]
    # a VM with a vTPM takes it when destroyed
    with_vtpm = next((t["VM"] for t in after["VTPM"].values() if after["VM"][t["VM"]]["power_state"] == "Halted"),
                     None)
    if with_vtpm is not None:
        rpc("VM.destroy", with_vtpm)
        assert all(t["VM"] != with_vtpm for t in rpc("VTPM.get_all_records").values())
