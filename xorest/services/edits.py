"""``PATCH /<collection>/<id>`` and tags: settings changed as Xen Orchestra changes them.

VMs take Xen Orchestra's ``UpdateVmRequestBody`` (see :mod:`.vmedit`), disks their
names and a larger size, VIFs their locking and allowed addresses, rate limit and
checksumming.  Other objects take names and tags, as Xen Orchestra's first REST API
did.  The answer comes once the change is in this process's cache and noted for the
others: the next read shows it.
"""
from ..errors import Unprocessable
from .context import Context
from .vmedit import edit_vm

#: REST collection -> XAPI class (for names and tags).
XAPI_CLASS = {"vms": "VM", "vm-snapshots": "VM", "vm-templates": "VM", "vm-controllers": "VM", "vdis": "VDI",
              "vdi-snapshots": "VDI", "srs": "SR", "pools": "pool", "networks": "network", "hosts": "host",
              "vifs": "VIF"}
#: Collections with tags (``PUT``/``DELETE /<collection>/<id>/tags/<tag>``).
TAGGED = ("vms", "vm-snapshots", "vm-templates", "vm-controllers", "vdis", "vdi-snapshots", "srs", "pools",
          "networks", "hosts")


def _names(ctx, obj, body):
    cls = XAPI_CLASS[obj["_collection"]]
    for field in ("name_label", "name_description"):
        if body.get(field) is not None:
            ctx.call(f"{cls}.set_{field}", obj["_xapiRef"], body[field])
    if body.get("tags") is not None:
        ctx.call(f"{cls}.set_tags", obj["_xapiRef"], list(body["tags"]))


def _vdi(ctx, vdi, body):
    _names(ctx, vdi, body)
    if body.get("size") is not None:
        if body["size"] < vdi["size"]:
            raise Unprocessable(f"cannot set new size ({body['size']}) below the current size ({vdi['size']})",
                                parameter="size")
        if body["size"] != vdi["size"]:
            ctx.run("VDI.resize", vdi["_xapiRef"], str(int(body["size"])))


def _vif(ctx, vif, body):
    ref = vif["_xapiRef"]
    for key, field in (("allowedIpv4Addresses", "ipv4_allowed"), ("allowedIpv6Addresses", "ipv6_allowed")):
        if body.get(key) is not None:
            ctx.call(f"VIF.set_{field}", ref, list(body[key]))
            if body[key] and body.get("lockingMode", vif.get("lockingMode")) != "locked":
                ctx.call("VIF.set_locking_mode", ref, "locked")  # addresses only apply when locked
    if body.get("lockingMode") is not None:
        ctx.call("VIF.set_locking_mode", ref, body["lockingMode"])
    if "rateLimit" in body:  # in kB/s; null removes it
        limit = body["rateLimit"]
        ctx.call("VIF.set_qos_algorithm_type", ref, "" if limit is None else "ratelimit")
        ctx.map_entry("VIF", ref, "qos_algorithm_params", "kbps", None if limit is None else int(limit))
    if "txChecksumming" in body:
        value = body["txChecksumming"]
        ctx.map_entry("VIF", ref, "other_config", "ethtool-tx", None if value is None else str(value).lower())


EDITORS = {"vms": lambda ctx, vm, body: edit_vm(ctx, vm, body), "vdis": _vdi, "vifs": _vif,
           **{name: _names for name in ("vm-snapshots", "vm-templates", "vdi-snapshots", "srs", "pools",
                                        "networks", "hosts")}}


class EditService:
    """Changes objects' settings and tags."""

    def __init__(self, collections, pools, store):
        self.collections, self.pools, self.store = collections, pools, store

    @staticmethod
    def edited():
        return tuple(EDITORS)

    def _context(self, collection, key):
        obj = self.collections.get(collection, key)
        return Context(self.collections, self.pools, self.store, obj), dict(obj, _collection=collection)

    def update(self, collection, key, body):
        """Apply the validated ``body`` to the object (404 if unknown)."""
        ctx, obj = self._context(collection, key)
        try:
            EDITORS[collection](ctx, obj, body)
        finally:
            ctx.settle()

    def tag(self, collection, key, tag, present=True):
        """Add (``present``) or remove a tag (XAPI's ``add_tags``/``remove_tags``)."""
        ctx, obj = self._context(collection, key)
        try:
            ctx.call(f"{XAPI_CLASS[collection]}.{'add_tags' if present else 'remove_tags'}", obj["_xapiRef"], tag)
        finally:
            ctx.settle()
