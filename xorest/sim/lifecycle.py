"""Which operation an object allows now, with XAPI's error when it does not.

Each class has a ``*_error(db, ref, op)`` returning ``None`` or ``(code, params)``,
checked in XAPI's order (``xapi_vm_lifecycle.ml``, ``xapi_host_helpers.ml``,
``xapi_sr_operations.ml``, ``xapi_vdi.ml``, ``xapi_vbd_helpers.ml``): explicit blocks,
then the power state, then the operations in progress, then the kind of object.
``allowed_operations`` is derived from the same checks, so what a client reads is what
a call would get.  Every function here runs under the database lock.
"""
from .rpc import XapiFailure
from .state import NULL_REF

ALL_STATES = ("Halted", "Paused", "Suspended", "Running")

#: VM operation -> the power states it needs (``allowed_power_states``).
VM_STATES = {
    "start": ("Halted",), "start_on": ("Halted",), "provision": ("Halted",),
    "make_into_template": ("Halted",), "changing_static_range": ("Halted",),
    "changing_VCPUs": ("Halted",), "changing_memory_limits": ("Halted",), "changing_NVRAM": ("Halted",),
    "changing_shadow_memory": ("Halted",), "create_vtpm": ("Halted",),
    "unpause": ("Paused",), "resume": ("Suspended",), "resume_on": ("Suspended",),
    "clean_reboot": ("Running",), "clean_shutdown": ("Running",), "pause": ("Running",),
    "pool_migrate": ("Running",), "suspend": ("Running",), "changing_VCPUs_live": ("Running",),
    "changing_memory_live": ("Running",), "send_sysrq": ("Running",), "send_trigger": ("Running",),
    "changing_dynamic_range": ("Halted", "Running"),
    "destroy": ("Halted", "Suspended"), "export": ("Halted", "Suspended"),
    "hard_reboot": ("Paused", "Running"),
    "checkpoint": ("Paused", "Suspended", "Running"), "shutdown": ("Paused", "Suspended", "Running"),
    "hard_shutdown": ("Paused", "Suspended", "Running"),
    "migrate_send": ("Halted", "Suspended", "Running"),
    "snapshot": ALL_STATES, "revert": ALL_STATES, "metadata_export": ALL_STATES,
    "power_state_reset": ALL_STATES,
}
#: What XAPI lists in ``allowed_operations`` (it leaves internal ones out).
VM_LISTED = ("snapshot", "clone", "copy", "revert", "checkpoint", "provision", "start", "start_on",
             "pause", "unpause", "clean_shutdown", "clean_reboot", "hard_shutdown", "hard_reboot",
             "suspend", "resume", "resume_on", "pool_migrate", "migrate_send", "changing_dynamic_range",
             "changing_static_range", "changing_VCPUs_live", "changing_NVRAM", "make_into_template",
             "export", "metadata_export", "destroy")
_TEMPLATE_OPS = {"changing_dynamic_range", "changing_static_range", "changing_memory_limits",
                 "changing_shadow_memory", "changing_VCPUs", "changing_NVRAM", "clone", "copy", "export",
                 "metadata_export", "provision"}
_SNAPSHOT_OPS = {"revert", "clone", "copy", "export", "destroy", "hard_shutdown", "metadata_export"}
_CONTROL_DOMAIN_OPS = {"data_source_op", "changing_memory_live", "awaiting_memory_live", "metadata_export",
                       "changing_dynamic_range", "changing_memory_limits", "changing_static_range", "start",
                       "start_on", "changing_VCPUs", "destroy"}


def _vm_states(record, op):
    if op in ("clone", "copy"):
        return ("Halted", "Suspended") if record["is_a_snapshot"] else ("Halted",)
    return VM_STATES.get(op, ALL_STATES)


def _concurrent(op, current):
    """XAPI's ``is_allowed_concurrently``: the few operations that may overlap."""
    for group in ({"clone", "copy", "export"}, {"snapshot", "checkpoint"}):
        if op in group and all(o in group for o in current):
            return True
    if op == "hard_shutdown":
        return "hard_shutdown" not in current
    if op == "hard_reboot":
        return not {"hard_shutdown", "hard_reboot"} & set(current)
    return list(current) == ["migrate_send"] and op in ("metadata_export", "clean_shutdown", "clean_reboot")


def in_progress(cls, ref, current):
    """``OTHER_OPERATION_IN_PROGRESS [class; ref; op; task]`` (several: ``{a,b}``)."""
    if len(current) == 1:
        (task, op), = current.items()
    else:
        task, op = "{" + ",".join(current) + "}", "{" + ",".join(current.values()) + "}"
    return "OTHER_OPERATION_IN_PROGRESS", [cls, ref, op, task]


def vm_error(db, ref, op):
    """``xapi_vm_lifecycle.check_operation_error``, the parts a simulated VM has."""
    record = db.record("VM", ref)
    state, current = record["power_state"], record["current_operations"]
    if op in record["blocked_operations"]:
        return "OPERATION_BLOCKED", [ref, record["blocked_operations"][op]]
    states = _vm_states(record, op)
    if state not in states:
        return "VM_BAD_POWER_STATE", [ref, ", ".join(s.lower() for s in states), state.lower()]
    if current and not _concurrent(op, current.values()):
        return in_progress("VM", ref, current)
    if record["is_a_template"] and not record["is_a_snapshot"]:
        default = record["is_default_template"] or record["other_config"].get("default_template") == "true"
        if op not in _TEMPLATE_OPS and not (op in ("destroy", "migrate_send") and not default):
            return "VM_IS_TEMPLATE", [ref, op]
    if record["is_a_snapshot"] and op not in _SNAPSHOT_OPS:
        return "VM_IS_SNAPSHOT", [ref, op]
    if op == "provision" and not record["is_a_template"]:
        return "ONLY_PROVISION_TEMPLATE", []
    if op == "revert" and not record["is_a_snapshot"]:
        return "ONLY_REVERT_SNAPSHOT", []
    if record["is_control_domain"]:
        if op == "destroy" and record["domid"] == 0:
            return "OPERATION_NOT_ALLOWED", ["This operation is not allowed on dom0"]
        if op not in _CONTROL_DOMAIN_OPS:
            return "OPERATION_NOT_ALLOWED", ["This operation is not allowed on a control domain"]
    return None


HOST_LISTED = ("provision", "evacuate", "shutdown", "reboot", "power_on", "vm_start", "vm_resume",
               "vm_migrate", "apply_updates", "enable")
_CREATING, _REMOVING = ("provision", "vm_resume", "vm_migrate"), ("evacuate", "reboot", "shutdown")


def host_live(db, ref):
    metrics = db.record("host", ref)["metrics"]
    return metrics in db.tables["host_metrics"] and db.tables["host_metrics"][metrics]["live"]


def host_error(db, ref, op):
    """``xapi_host_helpers.valid_operations``: what runs on a host excludes its opposite."""
    record = db.record("host", ref)
    current = record["current_operations"]
    for task, running in current.items():
        if (op in _CREATING and running in _REMOVING) or (op in _REMOVING and running in _CREATING):
            return "OTHER_OPERATION_IN_PROGRESS", ["host", ref, running, task]
        excluded = {"reboot": ("shutdown", "apply_updates"), "shutdown": ("reboot", "apply_updates"),
                    "apply_updates": ("reboot", "shutdown", "enable"), "provision": ("provision",),
                    "evacuate": ("evacuate",)}.get(running, ())
        if op in excluded:
            return "OTHER_OPERATION_IN_PROGRESS", ["host", ref, running, task]
    live = host_live(db, ref)
    if op == "power_on":
        if live:
            return "HOST_IS_LIVE", [ref]
        if record["power_on_mode"] == "":
            return "HOST_POWER_ON_MODE_DISABLED", []
        return None
    if not live:
        return "HOST_OFFLINE", [ref]
    if record["enabled"] and op in ("reboot", "shutdown", "apply_updates"):
        return "HOST_NOT_DISABLED", []
    return None


SR_LISTED = ("scan", "destroy", "forget", "plug", "unplug", "update", "vdi_create", "vdi_destroy",
             "vdi_resize", "vdi_clone", "vdi_snapshot", "vdi_mirror", "pbd_create", "pbd_destroy")


def sr_error(db, ref, op):
    """``xapi_sr_operations.valid_operations``: one operation at a time (plugs may overlap)."""
    record = db.record("SR", ref)
    current = record["current_operations"]
    attached = [p for p in record["PBDs"] if db.record("PBD", p)["currently_attached"]]
    if op in ("destroy", "forget") and attached:
        return "SR_HAS_PBD", [ref]
    if op == "destroy" and not record["PBDs"]:
        return "SR_NO_PBDS", [ref]
    if op == "destroy" and any(db.record("VDI", v)["managed"] for v in record["VDIs"]):
        return "SR_NOT_EMPTY", []
    if current and (op != "plug" or any(o != "plug" for o in current.values())):
        task, running = next((t, o) for t, o in current.items() if o != "plug" or op != "plug")
        return "OTHER_OPERATION_IN_PROGRESS", ["SR", ref, running, task]
    return None


VDI_LISTED = ("clone", "copy", "resize", "resize_online", "snapshot", "mirror", "destroy", "forget",
              "update", "force_unlock", "generate_config", "enable_cbt", "disable_cbt", "data_destroy",
              "list_changed_blocks", "set_on_boot", "blocked")
_VDI_LIVE = {"snapshot", "resize_online", "blocked", "clone", "revert_to", "mirror", "enable_cbt",
             "disable_cbt", "data_destroy"}


def vdi_error(db, ref, op):
    """``xapi_vdi.check_operation_error``: attached disks refuse what would break them."""
    record = db.record("VDI", ref)
    current = record["current_operations"]
    other = next(((t, o) for t, o in current.items() if o != "copy"), None)
    if other:
        return "OTHER_OPERATION_IN_PROGRESS", ["VDI", ref, other[1], other[0]]
    pbds = db.record("SR", record["SR"])["PBDs"] if record["SR"] in db.tables["SR"] else []
    if op == "resize" and not any(db.record("PBD", p)["currently_attached"] for p in pbds):
        return "SR_NO_PBDS", [record["SR"]]
    vbds = [db.record("VBD", v) for v in record["VBDs"]]
    active = [v for v in vbds if v["currently_attached"]]
    if op not in _VDI_LIVE:
        rw_only = op == "copy"
        if any(not rw_only or v["mode"] == "RW" for v in active):
            return "VDI_IN_USE", [ref, op]
    busy = next((v for v in vbds if v["current_operations"]), None)
    if busy is not None and op != "data_destroy":
        task, running = next(iter(busy["current_operations"].items()))
        return "OTHER_OPERATION_IN_PROGRESS", ["VDI", ref, running, task]
    if op == "snapshot" and record["sharable"]:
        return "VDI_IS_SHARABLE", [ref]
    if op == "snapshot" and "copy" in current.values():
        return "OPERATION_NOT_ALLOWED", ["Snapshot operation not allowed during copy."]
    return None


DEVICE_LISTED = {"VBD": ("attach", "eject", "insert", "plug", "unplug", "unplug_force", "pause", "unpause"),
                 "VIF": ("attach", "plug", "unplug")}


def device_error(db, cls, ref, op):
    """``xapi_vbd_helpers``/``xapi_vif_helpers``: plugging needs a running VM, one
    operation at a time, and a device can be unplugged only when allowed."""
    record = db.record(cls, ref)
    if record["current_operations"]:
        task, running = next(iter(record["current_operations"].items()))
        return "OTHER_OPERATION_IN_PROGRESS", [cls, ref, running, task]
    vm = db.tables["VM"].get(record["VM"])
    state = vm["power_state"] if vm else "Halted"
    if op in ("plug", "unplug", "unplug_force") and state != "Running":
        return "VM_BAD_POWER_STATE", [record["VM"], "running", state.lower()]
    if op == "plug" and record["currently_attached"]:
        return "DEVICE_ALREADY_ATTACHED", [ref]
    if op in ("unplug", "unplug_force") and not record["currently_attached"]:
        return "DEVICE_ALREADY_DETACHED", [ref]
    if op == "unplug" and cls == "VBD" and not record["unpluggable"]:
        return "VBD_NOT_UNPLUGGABLE", [ref]
    if cls == "VBD" and op in ("eject", "insert") and record["type"] != "CD":
        return "VBD_NOT_REMOVABLE_MEDIA", [ref]
    return None


_ERRORS = {"VM": vm_error, "host": host_error, "SR": sr_error, "VDI": vdi_error,
           "VBD": lambda db, ref, op: device_error(db, "VBD", ref, op),
           "VIF": lambda db, ref, op: device_error(db, "VIF", ref, op)}
_LISTED = {"VM": VM_LISTED, "host": HOST_LISTED, "SR": SR_LISTED, "VDI": VDI_LISTED, **DEVICE_LISTED}


def error(db, cls, ref, op):
    """``None`` when ``op`` is valid on the object now, else ``(code, params)``."""
    return _ERRORS[cls](db, ref, op)


def assert_valid(db, cls, ref, op):
    """Raise XAPI's failure when ``op`` is not valid on the object now; returns its record."""
    found = error(db, cls, ref, op)
    if found is not None:
        raise XapiFailure(found[0], *found[1])
    return db.record(cls, ref)


def refresh(db, cls, ref):
    """Recompute ``allowed_operations`` (written only when it changed: every write is an event)."""
    if cls not in _ERRORS or ref not in db.tables.get(cls, {}):
        return
    allowed = [op for op in _LISTED[cls] if error(db, cls, ref, op) is None]
    if db.tables[cls][ref]["allowed_operations"] != allowed:
        db.update(cls, ref, allowed_operations=allowed)


def refresh_vm(db, vm):
    """A VM and what depends on its state: its devices, its disks, its host."""
    record = db.tables["VM"].get(vm)
    if record is None:
        return
    refresh(db, "VM", vm)
    for vbd in record["VBDs"]:
        refresh(db, "VBD", vbd)
        vdi = db.tables["VBD"][vbd]["VDI"]
        if vdi != NULL_REF:
            refresh(db, "VDI", vdi)
    for vif in record["VIFs"]:
        refresh(db, "VIF", vif)


def claim(db, cls, ref, key, op):
    """Show ``op`` in the object's ``current_operations`` under ``key`` (a task ref)."""
    record = db.record(cls, ref)
    db.update(cls, ref, current_operations={**record["current_operations"], key: op})
    _refresh_around(db, cls, ref)


def release(db, cls, ref, key):
    """Remove ``key`` from the object's ``current_operations`` (if it still exists)."""
    record = db.tables.get(cls, {}).get(ref)
    if record is None or key not in record["current_operations"]:
        return
    db.update(cls, ref, current_operations={k: v for k, v in record["current_operations"].items() if k != key})
    _refresh_around(db, cls, ref)


def _refresh_around(db, cls, ref):
    if cls == "VM":
        refresh_vm(db, ref)
    elif cls in ("VBD", "VIF"):
        refresh(db, cls, ref)
        if cls == "VBD" and db.tables["VBD"][ref]["VDI"] in db.tables["VDI"]:
            refresh(db, "VDI", db.tables["VBD"][ref]["VDI"])
    else:
        refresh(db, cls, ref)


def refresh_all(db):
    """The pool as after a boot: devices of running VMs attached, every ``allowed_operations`` derived."""
    for vm, record in list(db.tables["VM"].items()):
        live = record["power_state"] in ("Running", "Paused")
        for cls, field in (("VBD", "VBDs"), ("VIF", "VIFs")):
            for device in record[field]:
                dev = db.tables[cls][device]
                if dev["currently_attached"] != live:  # an empty CD drive is attached too
                    db.update(cls, device, track=False, currently_attached=live)
    for cls in _ERRORS:
        for ref in list(db.tables[cls]):
            allowed = [op for op in _LISTED[cls] if error(db, cls, ref, op) is None]
            db.update(cls, ref, track=False, allowed_operations=allowed)
