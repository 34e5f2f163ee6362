"""Operations that change state, guarded with XAPI's errors: power, snapshot, clone, destroy."""
import random

from .rpc import XapiFailure
from .state import NULL_REF, now

POWER_TRANSITIONS = {
    # operation: (allowed states, new state, lower-case expected for the error)
    "start": (("Halted",), "Running", "halted"),
    "clean_shutdown": (("Running",), "Halted", "running"),
    "hard_shutdown": (("Running", "Paused", "Suspended"), "Halted", "running, paused, suspended"),
    "shutdown": (("Running",), "Halted", "running"),
    "clean_reboot": (("Running",), "Running", "running"),
    "hard_reboot": (("Running", "Paused"), "Running", "running, paused"),
    "suspend": (("Running",), "Suspended", "running"),
    "resume": (("Suspended",), "Running", "suspended"),
    "pause": (("Running",), "Paused", "running"),
    "unpause": (("Paused",), "Running", "paused"),
}


def _vm_ops_allowed(db, vm):
    record = db.record("VM", vm)
    if record["is_control_domain"]:
        raise XapiFailure("OPERATION_NOT_ALLOWED", "Operations on the control domain are not allowed")
    if record["is_a_template"]:
        raise XapiFailure("VM_IS_TEMPLATE", vm)
    return record


def change_power(db, vm, operation, host=None):
    """Apply a power operation, or raise ``VM_BAD_POWER_STATE`` as XAPI does."""
    allowed, target, expected = POWER_TRANSITIONS[operation]
    record = _vm_ops_allowed(db, vm)
    state = record["power_state"]
    if state not in allowed:
        raise XapiFailure("VM_BAD_POWER_STATE", vm, expected, state.lower())
    if record["current_operations"]:
        task, op = next(iter(record["current_operations"].items()))
        raise XapiFailure("OTHER_OPERATION_IN_PROGRESS", "VM", vm, op, task)
    changes = {"power_state": target}
    live = target in ("Running", "Paused")
    if live:
        changes["resident_on"] = host or (record["affinity"] if record["affinity"] != NULL_REF
                                          else next(iter(db.tables["host"])))
        changes["domid"] = max(1, record["domid"])
    elif target == "Halted" or target == "Suspended":
        changes["resident_on"] = NULL_REF
        changes["domid"] = -1
    db.update("VM", vm, **changes)
    if record["metrics"] in db.tables["VM_metrics"]:
        metrics = {"memory_actual": record["memory_dynamic_max"] if live else 0,
                   "VCPUs_number": record["VCPUs_at_startup"] if live else 0}
        if operation in ("start", "clean_reboot", "hard_reboot", "resume"):
            metrics["start_time"] = now()
        db.update("VM_metrics", record["metrics"], **metrics)
    for vbd in record["VBDs"]:
        db.update("VBD", vbd, currently_attached=live)
    for vif in record["VIFs"]:
        db.update("VIF", vif, currently_attached=live)
    return ""


def _copy_vdi(db, disks, vdi, *, snapshot, label=None, track=True):
    source = db.record("VDI", vdi)
    fields = {k: source[k] for k in ("name_description", "virtual_size", "physical_utilisation",
                                     "type", "sharable", "read_only", "managed", "SR", "sm_config",
                                     "other_config", "tags")}
    fields["name_label"] = label or source["name_label"]
    if snapshot:
        fields.update(is_a_snapshot=True, snapshot_of=vdi, snapshot_time=now())
    new = db.create("VDI", fields, track=track)
    disks.copy(vdi, new)
    return new


def _copy_vm(db, disks, vm, label, *, snapshot, track=True):
    source = db.record("VM", vm)
    skip = {"uuid", "VBDs", "VIFs", "consoles", "snapshots", "children", "resident_on",
            "metrics", "guest_metrics", "current_operations", "crash_dumps", "VTPMs", "VUSBs",
            "attached_PCIs", "VGPUs", "snapshot_of", "is_a_snapshot", "snapshot_time",
            "parent", "power_state", "domid", "is_control_domain", "is_default_template"}
    fields = {k: v for k, v in source.items() if k not in skip}
    fields["name_label"] = label
    fields["metrics"] = db.create("VM_metrics", {"install_time": now()}, track=track)
    if snapshot:
        # Real snapshots are templates too (xapi_vm_clone.ml).
        fields.update(is_a_snapshot=True, is_a_template=True, snapshot_of=vm, snapshot_time=now(),
                      power_state="Halted")
    else:
        fields.update(power_state="Halted", parent=vm if source["is_a_snapshot"] else NULL_REF)
    new = db.create("VM", fields, track=track)
    for vbd in source["VBDs"]:
        vbd_rec = db.record("VBD", vbd)
        vdi = vbd_rec["VDI"]
        if vdi != NULL_REF and vbd_rec["type"] == "Disk":
            vdi = _copy_vdi(db, disks, vdi, snapshot=snapshot, track=track)
        db.create("VBD", {k: vbd_rec[k] for k in ("type", "mode", "userdevice", "bootable", "empty")}
                  | {"VM": new, "VDI": vdi}, track=track)
    for vif in source["VIFs"]:
        vif_rec = db.record("VIF", vif)
        db.create("VIF", {k: vif_rec[k] for k in ("device", "MAC", "MTU", "network", "locking_mode")}
                  | {"VM": new}, track=track)
    return new


def snapshot_vm(db, disks, vm, label, track=True):
    """VM.snapshot: a template-like copy whose disks are VDI snapshots."""
    record = db.record("VM", vm)
    if record["is_control_domain"] or record["is_a_snapshot"]:
        raise XapiFailure("OPERATION_NOT_ALLOWED", "cannot snapshot this VM")
    return _copy_vm(db, disks, vm, label, snapshot=True, track=track)


def clone_vm(db, disks, vm, label):
    """VM.clone and VM.copy: a halted VM with its own copies of the disks."""
    record = db.record("VM", vm)
    if record["power_state"] != "Halted" and not record["is_a_template"]:
        raise XapiFailure("VM_BAD_POWER_STATE", vm, "halted", record["power_state"].lower())
    return _copy_vm(db, disks, vm, label, snapshot=False)


def destroy_vm(db, disks, vm):
    """VM.destroy: the VM, its VBDs, VIFs and metrics; disks stay, as in XAPI."""
    record = db.record("VM", vm)
    if record["is_control_domain"]:
        raise XapiFailure("OPERATION_NOT_ALLOWED", "Cannot destroy the control domain")
    if record["power_state"] != "Halted":
        raise XapiFailure("VM_BAD_POWER_STATE", vm, "halted", record["power_state"].lower())
    if record["current_operations"]:
        task, op = next(iter(record["current_operations"].items()))
        raise XapiFailure("OTHER_OPERATION_IN_PROGRESS", "VM", vm, op, task)
    for vbd in record["VBDs"]:
        db.destroy("VBD", vbd)
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
    return vdi


def snapshot_vdi(db, disks, vdi):
    return _copy_vdi(db, disks, vdi, snapshot=True)


def clone_vdi(db, disks, vdi):
    return _copy_vdi(db, disks, vdi, snapshot=False)


def destroy_vdi(db, disks, vdi):
    record = db.record("VDI", vdi)
    attached = [v for v in record["VBDs"] if db.record("VBD", v)["currently_attached"]]
    if attached:
        raise XapiFailure("VDI_IN_USE", vdi, "destroy")
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
    """One random change, as a busy pool makes them: power, tags, names, snapshots."""
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
