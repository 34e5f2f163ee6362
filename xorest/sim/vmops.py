"""XAPI's VM calls: checked and claimed at once, applied when their time is spent.

Every function takes the :class:`~xorest.sim.runner.Operation` and the call's arguments
(after the session), as the datamodel declares them.
"""
from . import lifecycle, operations
from .rpc import XapiFailure
from .runner import nested
from .state import NULL_REF

MiB = 1 << 20


def _power(operation, needs_host=False):
    """A power call: ``VM.<operation>(vm, ...)``; ``start``/``resume`` choose a host."""
    def call(op, vm, *args):
        with op.locked() as db:
            lifecycle.assert_valid(db, "VM", vm, operation)
            host = operations.choose_host(db, vm) if needs_host else None
            op.claim("VM", vm, operation)
            if host is not None:
                op.claim("host", host, "vm_start" if operation == "start" else "vm_resume")
        op.work()
        paused = bool(args and args[0] is True)
        with op.locked() as db:
            return operations.change_power(db, vm, operation, host, paused=paused)
    call.__name__ = operation
    return call


def _power_on(operation):
    """``VM.start_on``/``VM.resume_on``: the host must be able to run the VM."""
    def call(op, vm, host, paused, _force):
        with op.locked() as db:
            lifecycle.assert_valid(db, "VM", vm, operation)
            db.record("host", host)
            refused = operations.boot_error(db, vm, host)
            if refused is not None:
                raise XapiFailure(refused[0], *refused[1])
            op.claim("VM", vm, operation)
            op.claim("host", host, "vm_start" if operation == "start_on" else "vm_resume")
        op.work()
        with op.locked() as db:
            return operations.change_power(db, vm, operation, host, paused=paused is True)
    call.__name__ = operation
    return call


def _copying(operation):
    """``VM.clone``/``VM.copy``/``VM.snapshot``: a new VM; the source stays usable."""
    def call(op, vm, label, extra=None):
        with op.locked() as db:
            lifecycle.assert_valid(db, "VM", vm, operation)
            if operation == "copy" and extra not in (None, "", NULL_REF):
                db.record("SR", extra)
            op.claim("VM", vm, operation)
        op.work()
        with op.locked() as db:
            if operation == "snapshot":
                return operations.snapshot_vm(db, op.api.disks, vm, label, ignore_vdis=extra or ())
            return operations.clone_vm(db, op.api.disks, vm, label, sr=extra if operation == "copy" else None)
    call.__name__ = operation
    return call


def revert(op, snapshot):
    """``VM.revert``: claims the snapshot and its VM (which is halted first if needed)."""
    with op.locked() as db:
        snap = lifecycle.assert_valid(db, "VM", snapshot, "revert")
        vm = snap["snapshot_of"]
        if vm not in db.tables["VM"]:
            raise XapiFailure("VM_REVERT_FAILED", snapshot, "the VM of this snapshot is gone")
        current = db.tables["VM"][vm]["current_operations"]
        if current:
            code, params = lifecycle.in_progress("VM", vm, current)
            raise XapiFailure(code, *params)
        op.claim("VM", snapshot, "revert")
        op.claim("VM", vm, "reverting")
    op.work()
    with op.locked() as db:
        operations.revert_vm(db, op.api.disks, snapshot)
    return ""


def destroy(op, vm):
    with op.locked() as db:
        lifecycle.assert_valid(db, "VM", vm, "destroy")
        op.claim("VM", vm, "destroy")
    op.work()
    with op.locked() as db:
        return operations.destroy_vm(db, op.api.disks, vm)


def pool_migrate(op, vm, host, _options):
    """``VM.pool_migrate``: live, within the pool; the disks must be reachable there."""
    with op.locked() as db:
        lifecycle.assert_valid(db, "VM", vm, "pool_migrate")
        db.record("host", host)
        refused = operations.boot_error(db, vm, host)
        if refused is not None:
            raise XapiFailure(refused[0], *refused[1])
        op.claim("VM", vm, "pool_migrate")
        op.claim("host", host, "vm_migrate")
    op.work("VM.pool_migrate")
    with op.locked() as db:
        if db.record("VM", vm)["power_state"] != "Running":
            raise XapiFailure("VM_BAD_POWER_STATE", vm, "running", db.tables["VM"][vm]["power_state"].lower())
        db.update("VM", vm, resident_on=host)
        lifecycle.refresh_vm(db, vm)
    return ""


def migrate(op, vm, host, share=1.0):
    """A migration as a step of a host's evacuation (its own task in XAPI)."""
    return nested(op, "VM.pool_migrate", pool_migrate, vm, host, {}, share=share)


def provision(op, vm):
    """``VM.provision`` of a VM cloned from a template: it becomes a plain VM."""
    with op.locked() as db:
        lifecycle.assert_valid(db, "VM", vm, "provision")
        op.claim("VM", vm, "provision")
    op.work()
    with op.locked() as db:
        db.update("VM", vm, is_a_template=False)
        lifecycle.refresh_vm(db, vm)
    return ""


def set_memory_limits(op, vm, static_min, static_max, dynamic_min, dynamic_max):
    """``VM.set_memory_limits``: a halted VM only, in XAPI's order of the four values."""
    values = [int(v) for v in (static_min, dynamic_min, dynamic_max, static_max)]
    with op.locked() as db:
        lifecycle.assert_valid(db, "VM", vm, "changing_memory_limits")
        _check_memory_order(*values)
        db.update("VM", vm, memory_static_min=values[0], memory_dynamic_min=values[1],
                  memory_dynamic_max=values[2], memory_static_max=values[3])
    return ""


def set_memory_dynamic_range(op, vm, dynamic_min, dynamic_max):
    """``VM.set_memory_dynamic_range``: halted or running, within the static range."""
    with op.locked() as db:
        record = lifecycle.assert_valid(db, "VM", vm, "changing_dynamic_range")
        _check_memory_order(record["memory_static_min"], int(dynamic_min), int(dynamic_max),
                            record["memory_static_max"])
        op.claim("VM", vm, "changing_dynamic_range")
    op.work()
    with op.locked() as db:
        db.update("VM", vm, memory_dynamic_min=int(dynamic_min), memory_dynamic_max=int(dynamic_max))
        metrics = db.tables["VM"][vm]["metrics"]
        if db.tables["VM"][vm]["power_state"] == "Running" and metrics in db.tables["VM_metrics"]:
            db.update("VM_metrics", metrics, memory_actual=int(dynamic_max))
    return ""


def _check_memory_order(static_min, dynamic_min, dynamic_max, static_max):
    if not static_min <= dynamic_min <= dynamic_max <= static_max:
        raise XapiFailure("MEMORY_CONSTRAINT_VIOLATION",
                          "Memory limits must satisfy: static_min <= dynamic_min <= dynamic_max <= static_max")


def _halted_setter(field, op_name):
    """A setter XAPI allows on halted VMs only (the VM must be restarted to change it)."""
    def call(op, vm, value):
        with op.locked() as db:
            record = lifecycle.assert_valid(db, "VM", vm, op_name)
            value = int(value)
            if field == "memory_static_max":
                _check_memory_order(record["memory_static_min"], record["memory_dynamic_min"],
                                    record["memory_dynamic_max"], value)
            if field == "VCPUs_max" and value < record["VCPUs_at_startup"]:
                raise XapiFailure("VALUE_NOT_SUPPORTED", "VCPUs_max", str(value),
                                  "VCPUs_max must be at least VCPUs_at_startup")
            db.update("VM", vm, **{field: value})
        return ""
    return call


def set_vcpus_at_startup(op, vm, value):
    with op.locked() as db:
        record = db.record("VM", vm)
        value = int(value)
        if not 1 <= value <= record["VCPUs_max"]:
            raise XapiFailure("VALUE_NOT_SUPPORTED", "VCPUs_at_startup", str(value),
                              "VCPUs_at_startup must be between 1 and VCPUs_max")
        db.update("VM", vm, VCPUs_at_startup=value)
    return ""


def set_vcpus_number_live(op, vm, value):
    """``VM.set_VCPUs_number_live``: a running VM, up to ``VCPUs_max``."""
    with op.locked() as db:
        record = lifecycle.assert_valid(db, "VM", vm, "changing_VCPUs_live")
        value = int(value)
        if not 1 <= value <= record["VCPUs_max"]:
            raise XapiFailure("VALUE_NOT_SUPPORTED", "VCPU", str(value), "between 1 and VCPUs_max")
        op.claim("VM", vm, "changing_VCPUs_live")
    op.work()
    with op.locked() as db:
        metrics = db.tables["VM"][vm]["metrics"]
        if metrics in db.tables["VM_metrics"]:
            db.update("VM_metrics", metrics, VCPUs_number=value)
    return ""


def _allowed_devices(field, count):
    def call(op, vm):
        with op.locked() as db:
            record = db.record("VM", vm)
            cls = "VBD" if field == "VBDs" else "VIF"
            key = "userdevice" if cls == "VBD" else "device"
            used = {db.tables[cls][d][key] for d in record[field]}
            return [str(n) for n in range(count) if str(n) not in used]
    return call


def assert_can_boot_here(op, vm, host):
    with op.locked() as db:
        db.record("VM", vm)
        db.record("host", host)
        refused = operations.boot_error(db, vm, host)
        if refused is not None:
            raise XapiFailure(refused[0], *refused[1])
    return ""


def copy_bios_strings(op, vm, host):
    """``VM.copy_bios_strings``: a halted VM takes a host's BIOS strings (once)."""
    with op.locked() as db:
        record = db.record("VM", vm)
        if record["bios_strings"]:
            raise XapiFailure("VM_BIOS_STRINGS_ALREADY_SET")
        lifecycle.assert_valid(db, "VM", vm, "changing_static_range")
        db.update("VM", vm, bios_strings=dict(db.record("host", host)["bios_strings"]))
    return ""


def assert_operation_valid(op, vm, operation):
    with op.locked() as db:
        lifecycle.assert_valid(db, "VM", vm, operation)
    return ""


HANDLERS = {
    ("VM", name): _power(name, needs_host=name in ("start", "resume"))
    for name in ("start", "resume", "clean_shutdown", "shutdown", "hard_shutdown", "clean_reboot",
                 "hard_reboot", "suspend", "pause", "unpause")
} | {
    ("VM", "start_on"): _power_on("start_on"), ("VM", "resume_on"): _power_on("resume_on"),
    ("VM", "snapshot"): _copying("snapshot"), ("VM", "clone"): _copying("clone"), ("VM", "copy"): _copying("copy"),
    ("VM", "revert"): revert, ("VM", "destroy"): destroy, ("VM", "pool_migrate"): pool_migrate,
    ("VM", "provision"): provision, ("VM", "set_memory_limits"): set_memory_limits,
    ("VM", "set_memory_dynamic_range"): set_memory_dynamic_range,
    ("VM", "set_memory_static_max"): _halted_setter("memory_static_max", "changing_static_range"),
    ("VM", "set_VCPUs_max"): _halted_setter("VCPUs_max", "changing_VCPUs"),
    ("VM", "set_VCPUs_at_startup"): set_vcpus_at_startup,
    ("VM", "set_VCPUs_number_live"): set_vcpus_number_live,
    ("VM", "get_allowed_VBD_devices"): _allowed_devices("VBDs", 16),
    ("VM", "get_allowed_VIF_devices"): _allowed_devices("VIFs", 7),
    ("VM", "assert_can_boot_here"): assert_can_boot_here,
    ("VM", "assert_operation_valid"): assert_operation_valid, ("VM", "copy_bios_strings"): copy_bios_strings,
}
