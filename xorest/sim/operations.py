"""State changes of VMs and disks, applied under the database lock: power, copies, destroy.

These are the effects; the XAPI calls that check, claim, take time and then apply them
are in :mod:`.vmops` (and the churn of a busy pool applies them directly).
"""
import random

from . import lifecycle
from .rpc import XapiFailure
from .state import NULL_REF, now

#: Power operation -> the state it leads to (preconditions: :mod:`.lifecycle`).
POWER_TARGETS = {"start": "Running", "start_on": "Running", "clean_shutdown": "Halted", "shutdown": "Halted",
                 "hard_shutdown": "Halted", "clean_reboot": "Running", "hard_reboot": "Running",
                 "suspend": "Suspended", "resume": "Running", "resume_on": "Running", "pause": "Paused",
                 "unpause": "Running"}


def reachable_srs(db, vm):
    """The SRs a VM's disks are on (a host must see all of them to run it)."""
    srs = set()
    for vbd in db.record("VM", vm)["VBDs"]:
        vdi = db.tables["VBD"][vbd]["VDI"]
        if vdi in db.tables["VDI"]:
            srs.add(db.tables["VDI"][vdi]["SR"])
    return srs


def host_sees(db, host, sr):
    return any(db.tables["PBD"][p]["host"] == host and db.tables["PBD"][p]["currently_attached"]
               for p in db.record("SR", sr)["PBDs"])


def boot_error(db, vm, host):
    """Why ``vm`` cannot run on ``host`` (``assert_can_boot_here``), or ``None``."""
    record = db.record("host", host)
    if not lifecycle.host_live(db, host):
        return "HOST_OFFLINE", [host]
    if not record["enabled"]:
        return "HOST_DISABLED", [host]
    for sr in sorted(reachable_srs(db, vm)):
        if not host_sees(db, host, sr):
            return "VM_REQUIRES_SR", [vm, sr]
    return None


def choose_host(db, vm, exclude=()):
    """Where XAPI would start ``vm``: its affinity host if it can, else the least loaded one."""
    affinity = db.record("VM", vm)["affinity"]
    if affinity in db.tables["host"] and affinity not in exclude and boot_error(db, vm, affinity) is None:
        return affinity
    fits = [h for h in db.tables["host"] if h not in exclude and boot_error(db, vm, h) is None]
    if not fits:
        raise XapiFailure("NO_HOSTS_AVAILABLE")
    return min(fits, key=lambda h: (len(db.tables["host"][h]["resident_VMs"]), h))


def change_power(db, vm, operation, host=None, paused=False):
    """Apply a power operation (its preconditions were checked when it was claimed;
    one that no longer holds, such as a VM halted meanwhile, fails as XAPI would)."""
    record = db.record("VM", vm)
    states = lifecycle.VM_STATES.get(operation, lifecycle.ALL_STATES)
    if record["power_state"] not in states:
        raise XapiFailure("VM_BAD_POWER_STATE", vm, ", ".join(s.lower() for s in states),
                          record["power_state"].lower())
    target = "Paused" if paused and operation in ("start", "start_on", "resume", "resume_on") \
        else POWER_TARGETS[operation]
    live = target in ("Running", "Paused")
    changes = {"power_state": target}
    if live and record["resident_on"] == NULL_REF:
        changes["resident_on"] = host or choose_host(db, vm)
        changes["domid"] = max(1, record["domid"])
    elif not live:
        changes.update(resident_on=NULL_REF, domid=-1)
    db.update("VM", vm, **changes)
    if record["metrics"] in db.tables["VM_metrics"]:
        metrics = {"memory_actual": record["memory_dynamic_max"] if live else 0,
                   "VCPUs_number": record["VCPUs_at_startup"] if live else 0}
        if operation in ("start", "start_on", "clean_reboot", "hard_reboot", "resume", "resume_on"):
            metrics["start_time"] = now()
        db.update("VM_metrics", record["metrics"], **metrics)
    for field, cls in (("VBDs", "VBD"), ("VIFs", "VIF")):
        for device in record[field]:
            if db.tables[cls][device]["currently_attached"] != live:
                db.update(cls, device, currently_attached=live)
    lifecycle.refresh_vm(db, vm)
    return ""


def _copy_vdi(db, disks, vdi, *, snapshot, label=None, track=True, sr=None):
    source = db.record("VDI", vdi)
    fields = {k: source[k] for k in ("name_description", "virtual_size", "physical_utilisation",
                                     "type", "sharable", "read_only", "managed", "SR", "sm_config",
                                     "other_config", "tags")}
    fields["name_label"] = label or source["name_label"]
    if sr not in (None, "", NULL_REF):
        fields["SR"] = sr
    if snapshot:
        fields.update(is_a_snapshot=True, snapshot_of=vdi, snapshot_time=now())
    new = db.create("VDI", fields, track=track)
    disks.copy(vdi, new)
    if track:
        lifecycle.refresh(db, "VDI", new)
    return new


def copy_vdi(db, disks, vdi, sr=None):
    """``VDI.copy``: a full copy, on ``sr`` (default: the same SR)."""
    return _copy_vdi(db, disks, vdi, snapshot=False, sr=sr)


def _copy_vm(db, disks, vm, label, *, snapshot, track=True, sr=None, skip_vdis=()):
    source = db.record("VM", vm)
    skip = {"uuid", "VBDs", "VIFs", "consoles", "snapshots", "children", "resident_on",
            "metrics", "guest_metrics", "current_operations", "crash_dumps", "VTPMs", "VUSBs",
            "attached_PCIs", "VGPUs", "snapshot_of", "is_a_snapshot", "snapshot_time",
            "parent", "power_state", "domid", "is_control_domain", "is_default_template",
            "allowed_operations", "snapshot_info"}
    fields = {k: v for k, v in source.items() if k not in skip}
    fields["name_label"] = label
    # A copy of a default template is the user's own (xapi_vm_clone.ml drops the key).
    fields["other_config"] = {k: v for k, v in source["other_config"].items() if k != "default_template"}
    fields["metrics"] = db.create("VM_metrics", {"install_time": now()}, track=track)
    if snapshot:
        # Real snapshots are templates too (xapi_vm_clone.ml).
        fields.update(is_a_snapshot=True, is_a_template=True, snapshot_of=vm, snapshot_time=now(),
                      power_state="Halted", snapshot_info={"power-state-at-snapshot": source["power_state"]})
    else:
        fields.update(power_state="Halted", parent=vm if source["is_a_snapshot"] else NULL_REF)
    new = db.create("VM", fields, track=track)
    for vbd in source["VBDs"]:
        vbd_rec = db.record("VBD", vbd)
        vdi = vbd_rec["VDI"]
        if vdi in skip_vdis:
            continue
        if vdi != NULL_REF and vbd_rec["type"] == "Disk":
            vdi = _copy_vdi(db, disks, vdi, snapshot=snapshot, track=track, sr=sr)
        db.create("VBD", {k: vbd_rec[k] for k in ("type", "mode", "userdevice", "bootable", "empty",
                                                  "unpluggable")}
                  | {"VM": new, "VDI": vdi}, track=track)
    for vif in source["VIFs"]:
        vif_rec = db.record("VIF", vif)
        # XAPI keeps the MAC addresses of snapshots only: a clone or a copy gets new ones
        mac = vif_rec["MAC"] if snapshot else "02:" + ":".join(f"{db.rng.randrange(256):02x}" for _ in range(5))
        db.create("VIF", {k: vif_rec[k] for k in ("device", "MTU", "network", "locking_mode")}
                  | {"VM": new, "MAC": mac, "MAC_autogenerated": not snapshot}, track=track)
    if track:
        lifecycle.refresh_vm(db, new)
    return new


def snapshot_vm(db, disks, vm, label, track=True, ignore_vdis=()):
    """VM.snapshot: a template-like copy whose disks are VDI snapshots."""
    return _copy_vm(db, disks, vm, label, snapshot=True, track=track, skip_vdis=set(ignore_vdis))


def clone_vm(db, disks, vm, label, sr=None):
    """VM.clone and VM.copy: a halted VM with its own copies of the disks."""
    return _copy_vm(db, disks, vm, label, snapshot=False, sr=sr)


def revert_vm(db, disks, snapshot):
    """VM.revert: the VM becomes what the snapshot holds (halted, its disks replaced by
    copies of the snapshot's disks, its settings back); returns the VM."""
    snap = db.record("VM", snapshot)
    vm = snap["snapshot_of"]
    record = db.record("VM", vm)
    if record["power_state"] != "Halted":
        change_power(db, vm, "hard_shutdown")
    for vbd in list(record["VBDs"]):
        vdi = db.tables["VBD"][vbd]["VDI"]
        db.destroy("VBD", vbd)
        if vdi in db.tables["VDI"] and db.tables["VDI"][vdi]["type"] != "iso" and not db.tables["VDI"][vdi]["VBDs"]:
            destroy_vdi(db, disks, vdi)
    for vbd in snap["VBDs"]:
        vbd_rec = db.record("VBD", vbd)
        vdi = vbd_rec["VDI"]
        if vdi != NULL_REF and vbd_rec["type"] == "Disk":
            vdi = _copy_vdi(db, disks, vdi, snapshot=False)
        db.create("VBD", {k: vbd_rec[k] for k in ("type", "mode", "userdevice", "bootable", "empty",
                                                  "unpluggable")} | {"VM": vm, "VDI": vdi})
    kept = ("memory_static_max", "memory_static_min", "memory_dynamic_max", "memory_dynamic_min",
            "VCPUs_max", "VCPUs_at_startup", "VCPUs_params", "platform", "HVM_boot_params", "PV_args")
    db.update("VM", vm, **{k: snap[k] for k in kept})
    lifecycle.refresh_vm(db, vm)
    return vm


def destroy_vm(db, disks, vm):
    """VM.destroy: the VM, its VBDs, VIFs and metrics; disks stay, as in XAPI."""
    record = db.record("VM", vm)
    for vbd in record["VBDs"]:
        vdi = db.tables["VBD"][vbd]["VDI"]
        db.destroy("VBD", vbd)
        lifecycle.refresh(db, "VDI", vdi)
    for vif in record["VIFs"]:
        db.destroy("VIF", vif)
    for snap in record["snapshots"]:
        db.update("VM", snap, snapshot_of=NULL_REF)
    for child in ("metrics", "guest_metrics"):
        ref = record[child]
        cls = "VM_metrics" if child == "metrics" else "VM_guest_metrics"
        if ref in db.tables[cls]:
            db.destroy(cls, ref)
    db.destroy("VM", vm)
    return ""


VDI_CREATE_FIELDS = ("name_label", "name_description", "SR", "virtual_size", "type", "sharable", "read_only",
                     "other_config", "sm_config", "tags", "xenstore_data")


def create_vdi(db, disks, record):
    """``VDI.create``: a new, empty disk on an SR, from a record of the settable fields."""
    if not isinstance(record, dict):
        raise XapiFailure("FIELD_TYPE_ERROR", "record")
    missing = [f for f in ("SR", "virtual_size", "type", "sharable", "read_only", "other_config")
               if f not in record]
    if missing:
        raise XapiFailure("FIELD_TYPE_ERROR", missing[0])
    if record["SR"] not in db.tables["SR"]:
        raise XapiFailure("HANDLE_INVALID", "SR", record["SR"])
    size = max(0, int(record["virtual_size"]))
    fields = {k: record[k] for k in VDI_CREATE_FIELDS if k in record}
    fields.update(virtual_size=size, physical_utilisation=0, managed=True)
    vdi = db.create("VDI", fields)
    disks.create_empty(vdi, size)
    lifecycle.refresh(db, "VDI", vdi)
    return vdi


def snapshot_vdi(db, disks, vdi):
    return _copy_vdi(db, disks, vdi, snapshot=True)


def clone_vdi(db, disks, vdi):
    return _copy_vdi(db, disks, vdi, snapshot=False)


def destroy_vdi(db, disks, vdi):
    """``VDI.destroy`` (its checks are :func:`lifecycle.vdi_error`'s): empties the VBDs using it."""
    record = db.record("VDI", vdi)
    for vbd in record["VBDs"]:
        db.update("VBD", vbd, VDI=NULL_REF, empty=True)
    for snap in record["snapshots"]:
        db.update("VDI", snap, snapshot_of=NULL_REF)
    db.destroy("VDI", vdi)
    disks.forget(vdi)
    return ""


CHURN_SNAPSHOTS = 20


def report_guest(db, vm, memory_actual=None, networks=None):
    """What a running VM's balloon driver and guest agent report: only the VM's metrics
    records change (``VM_metrics.memory_actual``, ``VM_guest_metrics.networks``), as on a
    real host, except the first report of a guest, which links its new guest metrics."""
    record = db.record("VM", vm)
    if record["power_state"] not in ("Running", "Paused"):
        raise XapiFailure("VM_BAD_POWER_STATE", vm, "running", record["power_state"].lower())
    if memory_actual is not None and record["metrics"] in db.tables["VM_metrics"]:
        db.update("VM_metrics", record["metrics"], memory_actual=int(memory_actual))
    if networks is not None:
        guest = record["guest_metrics"]
        if guest in db.tables["VM_guest_metrics"]:
            db.update("VM_guest_metrics", guest, networks=dict(networks), last_updated=now())
        else:
            guest = db.create("VM_guest_metrics", {"networks": dict(networks), "last_updated": now()})
            db.update("VM", vm, guest_metrics=guest)


def churn_step(db, disks, rng=random):
    """One random change, as a busy pool makes them: power, tags, names, snapshots.

    Only what a call would be allowed to do, on VMs nothing else is working on (an
    action of a client in progress is never disturbed)."""
    vms = [ref for ref, r in db.tables["VM"].items()
           if not r["is_control_domain"] and not r["is_a_template"] and not r["current_operations"]]
    if not vms:
        return
    vm = rng.choice(vms)
    record = db.tables["VM"][vm]
    action = rng.random()
    try:
        if action < 0.35:
            op = {"Running": "clean_shutdown", "Halted": "start", "Suspended": "resume",
                  "Paused": "unpause"}[record["power_state"]]
            lifecycle.assert_valid(db, "VM", vm, op)
            change_power(db, vm, op)
        elif action < 0.45 and record["power_state"] == "Running":
            # the balloon driver and the guest agent at work
            ip = f"10.{rng.randrange(250)}.{rng.randrange(250)}.{rng.randrange(2, 250)}"
            report_guest(db, vm, memory_actual=record["memory_dynamic_max"] - rng.randrange(0, 64) * 2**20,
                         networks={"0/ip": ip, "0/ipv4/0": ip})
        elif action < 0.6:
            tag = rng.choice(["churn", "hot", "cold", "tier1"])
            tags = record["tags"]
            db.update("VM", vm, tags=[t for t in tags if t != tag] if tag in tags else tags + [tag])
        elif action < 0.8:
            db.update("VM", vm, name_description=f"changed {rng.randrange(10**6)}")
        else:
            snaps = [r for r, s in db.tables["VM"].items()
                     if s["is_a_snapshot"] and not s["current_operations"]
                     and s["name_label"].endswith("churn snapshot")]
            # Keep the population of churn snapshots bounded, so a long churn is a steady
            # state rather than a slow random walk of the pool's size.
            if action < 0.9 and len(snaps) < CHURN_SNAPSHOTS:
                snapshot_vm(db, disks, vm, record["name_label"] + " churn snapshot")
            elif snaps:
                snap = rng.choice(snaps)
                vdis = [db.record("VBD", v)["VDI"] for v in db.record("VM", snap)["VBDs"]]
                destroy_vm(db, disks, snap)
                for vdi in vdis:
                    if vdi in db.tables["VDI"]:
                        destroy_vdi(db, disks, vdi)
    except XapiFailure:
        pass
