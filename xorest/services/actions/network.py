"""Networks (created plain, on a VLAN, bonded, or internal; deleted with their VLANs and
bonds) and the VIF actions, as Xen Orchestra does them."""
import contextlib

from ...errors import XorestError
from . import Action

DEFAULT_DESCRIPTION = "Created with xorest"


def create_network(ctx, params):
    """A new network: plain (``pif`` and ``vlan`` absent), on a VLAN of ``pif``, or bonded
    (``pifIds`` and ``bondMode``); ``nbd`` adds that purpose.  Returns its uuid."""
    ref = ctx.call("network.create", {
        "name_label": params["name"], "name_description": params.get("description") or DEFAULT_DESCRIPTION,
        "MTU": str(params.get("mtu") or 1500),
        # not "automatic", or XenCenter adds it to every new VM
        "other_config": {"automatic": "false"}, "tags": []})
    try:
        if params.get("pif"):
            pif = ctx.get("pifs", params["pif"], parameter="pif")
            ctx.call("pool.create_VLAN_from_PIF", pif["_xapiRef"], ref, str(int(params["vlan"])))
        if params.get("pifIds"):
            _bond(ctx, ref, params["pifIds"], params["bondMode"])
        if params.get("nbd"):
            ctx.call("network.add_purpose", ref, "nbd")
    except BaseException:
        with contextlib.suppress(XorestError):
            delete_network_ref(ctx, ref)
        raise
    return ctx.field("network", ref, "uuid")


def _bond(ctx, network_ref, pif_ids, mode):
    """One bond per host, of the PIFs on the networks of ``pif_ids`` on that host."""
    by_host = {}
    snapshot = ctx.collections.cache.snapshot()
    for pif_id in pif_ids:
        pif = ctx.get("pifs", pif_id, parameter="pifIds")
        for member in snapshot.collection("networks").get(pif["$network"], {}).get("PIFs", []):
            record = snapshot.collection("pifs").get(member)
            if record is not None:
                by_host.setdefault(record["$host"], []).append(record["_xapiRef"])
    for members in by_host.values():
        ctx.call("Bond.create", network_ref, sorted(set(members)), "", mode, {})


def delete_network_ref(ctx, ref):
    """Delete a network: its VLANs and bonds first, then the network (``network.destroy``
    refuses while interfaces use it)."""
    pifs = ctx.field("network", ref, "PIFs")
    for pif in pifs:
        vlan = ctx.field("PIF", pif, "VLAN_master_of")
        if vlan != "OpaqueRef:NULL":
            ctx.run("VLAN.destroy", vlan)
    for bond in {b for pif in pifs for b in _safe_bonds(ctx, pif)}:
        ctx.call("Bond.destroy", bond)
    ctx.run("network.destroy", ref)


def _safe_bonds(ctx, pif):
    try:
        return ctx.field("PIF", pif, "bond_master_of")
    except XorestError:
        return []  # gone with its VLAN


def connect_vif(ctx, vif, body):
    """Plug a VIF into its running VM (XAPI's ``VIF.plug``)."""
    ctx.run("VIF.plug", vif["_xapiRef"])


def disconnect_vif(ctx, vif, body):
    """Unplug a VIF (XAPI's ``VIF.unplug_force``)."""
    ctx.run("VIF.unplug_force", vif["_xapiRef"])


ACTIONS = [
    Action("vifs", "connect", "connect VIF", connect_vif, "vm.admin"),
    Action("vifs", "disconnect", "disconnect VIF", disconnect_vif, "vm.admin"),
]
