"""``POST /vdis``, ``/vbds``, ``/vifs``, ``/networks``, ``/srs`` and ``/servers``: new
objects from Xen Orchestra's bodies; each answers the new object's id."""
import logging

from ..errors import BadRequest, Conflict, NotSupported, Unavailable, Unprocessable, UpstreamError
from .actions.network import create_network
from .actions.storage import create_vbd
from .context import Context
from .upstream import probe_server

log = logging.getLogger(__name__)
NULL = "OpaqueRef:NULL"

#: SR types backed by network storage: an SR of another type is local to its host.
SHARED_SR_TYPES = {"cephfs", "glusterfs", "hba", "lvmofcoe", "lvmohba", "lvmoiscsi", "moosefs", "nfs", "smb"}


class CreationService:
    """Creates objects in the pools (and registers servers)."""

    def __init__(self, collections, pools, store, config):
        self.collections, self.pools, self.store, self.config = collections, pools, store, config

    @staticmethod
    def created():
        return ("vdis", "vbds", "vifs", "networks", "srs", "servers")

    def create(self, collection, body):
        """The new object's id (its collection is ``collection``)."""
        if collection == "servers":
            return self._server(body)
        anchor_of = {"vdis": ("srs", "srId"), "vbds": ("vms", "VM"), "vifs": ("vms", "vmId"),
                     "networks": ("pools", "poolId"), "srs": ("hosts", "hostId")}
        anchor, field = anchor_of[collection]
        obj = self.collections.get(anchor, body[field])
        ctx = Context(self.collections, self.pools, self.store, obj)
        try:
            return getattr(self, "_" + collection)(ctx, obj, body)
        finally:
            ctx.settle()

    @staticmethod
    def _vdis(ctx, sr, body):
        fields = {k: body[k] for k in ("name_label", "name_description", "tags", "type", "read_only", "sharable",
                                        "xenstore_data", "other_config", "sm_config") if body.get(k) is not None}
        ref = ctx.call("VDI.create", {"name_label": "", "name_description": "", "type": "user", "read_only": False,
                                      "sharable": False, "other_config": {}, "sm_config": {}, "tags": [],
                                      "xenstore_data": {}, **fields, "SR": sr["_xapiRef"],
                                      "virtual_size": str(int(body["virtual_size"]))})
        return ctx.field("VDI", ref, "uuid")

    @staticmethod
    def _vbds(ctx, vm, body):
        vdi = ctx.get("vdis", body["VDI"], same_pool=False, parameter="VDI")
        if vdi["$pool"] != vm["$pool"]:
            raise BadRequest("VM and VDI must be in the same pool", parameter="VDI")
        ref = create_vbd(ctx, {**body, "VM": vm["_xapiRef"], "VDI": vdi["_xapiRef"]})
        return ctx.field("VBD", ref, "uuid")

    @staticmethod
    def _vifs(ctx, vm, body):
        network = ctx.get("networks", body["networkId"], same_pool=False, parameter="networkId")
        if network["$pool"] != vm["$pool"]:
            raise BadRequest(f"the VM {vm['id']} and the network {network['id']} are not in the same pool",
                             parameter="networkId")
        device = body.get("device")
        if device is None:
            allowed = ctx.call("VM.get_allowed_VIF_devices", vm["_xapiRef"])
            if not allowed:
                raise Conflict("this VM has no free network device number left")
            device = allowed[0]
        fields = {k: body[k] for k in ("ipv4_allowed", "ipv6_allowed", "locking_mode", "qos_algorithm_type",
                                        "qos_algorithm_params", "other_config") if body.get(k) is not None}
        ref = ctx.call("VIF.create", {"other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {},
                                      **fields, "VM": vm["_xapiRef"], "network": network["_xapiRef"],
                                      "device": str(device), "MAC": body.get("MAC") or "",
                                      "MTU": str(body.get("MTU") or network.get("MTU") or 1500)})
        if body.get("currently_attached", True) and vm.get("power_state") == "Running":
            ctx.run("VIF.plug", ref)
        return ctx.field("VIF", ref, "uuid")

    @staticmethod
    def _networks(ctx, pool, body):
        return create_network(ctx, body)

    @staticmethod
    def _srs(ctx, host, body):
        kind = body["SR_type"]
        if kind == "linstor":
            raise NotSupported("SRs of type linstor (XOSTOR) need Xen Orchestra's licences: not supported")
        config = body["device_config"]
        shared = config.get("legacy_mode") != "true" if kind == "iso" else kind in SHARED_SR_TYPES
        ref = ctx.call("SR.create", host["_xapiRef"], config, str(int(body.get("size") or 0)), body["name_label"],
                       body.get("name_description") or "", kind,
                       "iso" if kind == "iso" else body.get("content_type") or "user", shared,
                       body.get("sm_config") or {})
        try:  # XenCenter's convention: scan such an SR on its own
            ctx.map_entry("SR", ref, "other_config", "auto-scan", "true")
        except Exception as exc:
            log.warning("cannot mark the new SR for auto-scan: %s", exc)
        return ctx.field("SR", ref, "uuid")

    def _server(self, body):
        """Register a pool, tried at once (as ``xorest server add``): a pool that refuses
        the login, or cannot be reached, is not added."""
        for name in ("httpProxy",):
            if body.get(name):
                raise NotSupported(f"{name} is not supported by xorest", parameter=name)
        if body.get("readOnly"):
            raise NotSupported("read-only servers are not supported by xorest", parameter="readOnly")
        url = body["host"] if "://" in body["host"] else "https://" + body["host"]
        if any(s["url"].rstrip("/") == url.rstrip("/") for s in self.store.list_servers()):
            raise Conflict(f"a server is already registered at {url}", host=url)
        insecure = bool(body.get("allowUnauthorized"))
        try:
            probe_server(url, body["username"], body["password"], None, insecure)
        except (Unavailable, UpstreamError) as exc:
            # the address or the credentials the client gave do not make a pool: its request's fault
            raise Unprocessable(f"not added: {exc.message}", parameter="host", **exc.data) from None
        server_id = self.store.add_server(url, body["username"], body["password"], None, insecure,
                                          body.get("label") or "")
        self.pools.servers_changed()
        return server_id
