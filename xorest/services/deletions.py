"""``DELETE /<collection>/<id>``: what Xen Orchestra's API destroys, and how.

VMs, snapshots and templates go with their disks and snapshots (a running or suspended
VM is powered off first: Xen Orchestra's API forces it); disks, SRs, networks, VBDs
and VIFs as XAPI allows (an attached disk is a 409); servers leave the store.
"""
import contextlib
import logging

from ..errors import Conflict, Forbidden, NotFound, XorestError
from .actions.network import delete_network_ref
from .actions.storage import destroy_vbd, unplug_all
from .context import Context

log = logging.getLogger(__name__)
NULL = "OpaqueRef:NULL"


def destroy_vm(ctx, ref, delete_disks=True):
    """Xen Orchestra's ``VM_destroy``: refused when blocked or a default template;
    powered off when needed; its snapshots and its disks (unless another VM uses them)
    destroyed after it, best effort."""
    record = ctx.call("VM.get_record", ref)
    if "destroy" in record["blocked_operations"]:
        reason = record["blocked_operations"]["destroy"]
        raise Forbidden("destroy is blocked: " + ("protected from accidental deletion" if reason == "true"
                                                  else reason), code="OPERATION_BLOCKED", params=[ref, reason])
    if record["is_default_template"] or record["other_config"].get("default_template") == "true":
        raise Conflict("a default template cannot be deleted", actual=True, expected=False, object=record["uuid"],
                       property="isDefaultTemplate")
    if record["is_a_template"] and not record["is_a_snapshot"]:
        ctx.call("VM.set_is_a_template", ref, False)
    if record["power_state"] != "Halted":
        ctx.run("VM.hard_shutdown", ref)
    disks = [vdi for vdi in (ctx.field("VBD", vbd, "VDI") for vbd in record["VBDs"]
                             if ctx.field("VBD", vbd, "type") == "Disk") if vdi != NULL]
    ctx.run("VM.destroy", ref)
    for snapshot in record["snapshots"]:
        try:
            destroy_vm(ctx, snapshot)
        except XorestError as exc:
            log.warning("VM %s destroyed but not its snapshot %s: %s", record["uuid"], snapshot, exc)
    for vdi in disks if delete_disks else ():
        with contextlib.suppress(XorestError):
            users = [ctx.field("VBD", vbd, "VM") for vbd in ctx.field("VDI", vdi, "VBDs")]
            if any(not ctx.field("VM", vm, "is_control_domain") for vm in users):
                continue  # still a disk of another VM
            destroy_vdi(ctx, vdi)


def destroy_vdi(ctx, ref):
    """``VDI.destroy``; a disk already gone counts as destroyed (as Xen Orchestra)."""
    try:
        ctx.run("VDI.destroy", ref)
    except NotFound:
        pass


def _vm(ctx, obj):
    destroy_vm(ctx, obj["_xapiRef"])


def _sr(ctx, obj):
    unplug_all(ctx, obj)
    ctx.call("SR.destroy", obj["_xapiRef"])


def _vif(ctx, obj):
    if obj.get("attached"):
        ctx.run("VIF.unplug_force", obj["_xapiRef"])
    ctx.run("VIF.destroy", obj["_xapiRef"])


DESTROYERS = {
    "vms": _vm, "vm-snapshots": _vm, "vm-templates": _vm,
    "vdis": lambda ctx, obj: destroy_vdi(ctx, obj["_xapiRef"]),
    "vdi-snapshots": lambda ctx, obj: destroy_vdi(ctx, obj["_xapiRef"]),
    "srs": _sr, "networks": lambda ctx, obj: delete_network_ref(ctx, obj["_xapiRef"]),
    "vbds": lambda ctx, obj: destroy_vbd(ctx, obj["_xapiRef"]), "vifs": _vif,
}


class DeletionService:
    """Deletes objects; a read after the answer no longer shows them."""

    def __init__(self, collections, pools, store):
        self.collections, self.pools, self.store = collections, pools, store

    @staticmethod
    def collections_deleted():
        return (*DESTROYERS, "servers")

    def delete(self, collection, key):
        """Delete the object ``key`` of ``collection`` (404 if unknown)."""
        obj = self.collections.get(collection, key)
        if collection == "servers":
            if not self.store.remove_server(obj["id"]):
                raise NotFound(f"no such server {key}", id=key, type="server")
            self.pools.servers_changed()
            return
        ctx = Context(self.collections, self.pools, self.store, obj)
        try:
            DESTROYERS[collection](ctx, obj)
        finally:
            ctx.settle()
