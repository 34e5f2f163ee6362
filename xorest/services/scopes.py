"""Token scopes: the pools, and the VMs by live filter, a token may see and act on.

A scope is part of a token.  Everything a request reads goes through
:class:`~.collections.CollectionService`, which asks :func:`allows` about every object:
out of scope is absent (not listed; a 404 by id).  What depends on a VM is in scope with
it: its snapshots, VBDs, disks, VIFs, and the messages, alarms and tasks about them.
Under a VM filter, objects that are not a VM's (hosts, SRs, networks, pools...) are out of
scope; under a pools scope, whatever belongs to those pools is in.  The request's own
filter is applied apart from the scope's, each parsed (never joined as text).
"""
import contextlib
import contextvars
import json
import threading
from collections import OrderedDict

from .. import filter as live_filter
from ..errors import BadRequest
from ..objects import TYPE_TO_COLLECTION

_current = contextvars.ContextVar("xorest_scope", default=None)

#: Collections that exist outside the pools: never visible to a scoped token but servers'.
_LOCAL = ("users", "audit")


class Scope:
    """What a token may see: ``pools`` (uuids; empty: any) and ``filters`` (live filters
    over VMs, all of which must match; empty: any VM)."""

    def __init__(self, pools=(), filters=()):
        self.pools = frozenset(pools)
        self.filters = tuple(filters)
        self.nodes = tuple(live_filter.parse(text) for text in self.filters)
        self.key = (tuple(sorted(self.pools)), self.filters)

    def __bool__(self):
        return bool(self.pools or self.filters)

    def to_dict(self):
        """The scope as clients see it (``{"pools": [...], "filter": "..."}``)."""
        body = {}
        if self.pools:
            body["pools"] = sorted(self.pools)
        if self.filters:
            body["filter"] = " ".join(f"({text})" for text in self.filters) if len(self.filters) > 1 \
                else self.filters[0]
        return body

    def to_json(self):
        return json.dumps({"pools": sorted(self.pools), "filters": list(self.filters)}) if self else None

    @classmethod
    def from_json(cls, text):
        if not text:
            return UNSCOPED
        data = json.loads(text)
        return cls(data.get("pools") or (), data.get("filters") or ())

    @classmethod
    def requested(cls, data):
        """A scope from a request (``{"pools": [uuid...], "filter": "..."}``); 400 if invalid."""
        if data is None:
            return UNSCOPED
        if not isinstance(data, dict) or set(data) - {"pools", "filter"}:
            raise BadRequest('scope must be an object with "pools" (a list of pool uuids) and/or "filter"',
                             parameter="scope")
        pools = data.get("pools") or []
        if not isinstance(pools, list) or not all(isinstance(p, str) and p for p in pools):
            raise BadRequest("scope.pools must be a list of pool uuids", parameter="scope.pools")
        text = data.get("filter")
        if text is not None and not isinstance(text, str):
            raise BadRequest("scope.filter must be a live filter (a string)", parameter="scope.filter")
        if text:
            live_filter.parse(text)  # a FilterError (400) with its position
        return cls(pools, [text] if text else [])

    def within(self, bound):
        """This scope, narrowed to ``bound`` (a token made by a scoped token can see no more)."""
        if not bound:
            return self
        pools = (self.pools & bound.pools) if (self.pools and bound.pools) else (self.pools or bound.pools)
        if self.pools and bound.pools and not pools:
            raise BadRequest("the scope's pools are outside the creating token's scope", parameter="scope.pools")
        return Scope(pools, bound.filters + tuple(f for f in self.filters if f not in bound.filters))


UNSCOPED = Scope()


def use(scope):
    """Make ``scope`` the current request's (``None``: unscoped)."""
    _current.set(scope if scope else None)


def current():
    """The current request's scope, or ``None``."""
    return _current.get()


@contextlib.contextmanager
def applied(scope):
    """``scope`` is the current one inside the block (work done for a request elsewhere:
    a task in its own thread, a stream's body), the previous one after it."""
    token = _current.set(scope if scope else None)
    try:
        yield
    finally:
        _current.reset(token)


def cache_key():
    """What distinguishes this request's view of the pools (for caches of answers)."""
    scope = _current.get()
    return scope.key if scope else ()


class Visibility:
    """Which objects of one cache snapshot one scope allows, computed as needed."""

    def __init__(self, scope, snapshot):
        self.scope, self.snapshot = scope, snapshot
        self._ids = {}

    def allows(self, name, obj):
        scope = self.scope
        if name in _LOCAL:
            return False
        if name == "servers":
            return bool(scope.pools) and not scope.filters and obj.get("poolId") in scope.pools
        if name == "tasks":  # xorest's task log: visible with the object the task is about
            about = obj.get("properties") or {}
            collection = TYPE_TO_COLLECTION.get(about.get("objectType"))
            target = collection and about.get("objectId") and self.snapshot.find(collection, about["objectId"])
            return bool(target) and self.allows(collection, target)
        if scope.pools and obj.get("$pool") not in scope.pools:
            return False
        if not scope.filters:
            return True
        return obj.get("id") in self.ids(name)

    def ids(self, name):
        """Ids of the visible objects of collection ``name`` under the VM filters."""
        if name not in self._ids:
            self._ids[name] = self._compute(name)
        return self._ids[name]

    def _collection(self, name):
        objects = self.snapshot.collection(name)
        if self.scope.pools:
            return {k: o for k, o in objects.items() if o.get("$pool") in self.scope.pools}
        return objects

    def _compute(self, name):
        scope, get = self.scope, self._collection
        if name == "vms":
            return {k for k, vm in get("vms").items() if all(node.match(vm) for node in scope.nodes)}
        if name == "vm-snapshots":
            vms = self.ids("vms")
            return {k for k, snap in get("vm-snapshots").items() if snap.get("$snapshot_of") in vms}
        owners = self.ids("vms") | self.ids("vm-snapshots")
        if name == "vbds":
            return {k for k, vbd in get("vbds").items() if vbd.get("VM") in owners}
        if name in ("vdis", "vdi-snapshots"):
            vbds = get("vbds")
            disks = {vbds[v].get("VDI") for v in self.ids("vbds")}
            if name == "vdis":
                return {k for k in get("vdis") if k in disks}
            vdis = self.ids("vdis")
            return {k for k, s in get("vdi-snapshots").items() if k in disks or s.get("$snapshot_of") in vdis}
        if name == "vifs":
            return {k for k, vif in get("vifs").items() if vif.get("$VM") in owners}
        about = set().union(*(self.ids(n) for n in ("vms", "vm-snapshots", "vdis", "vdi-snapshots", "vbds", "vifs")))
        if name == "messages":
            return {k for k, m in get("messages").items() if m.get("$object") in about}
        if name == "alarms":
            return {k for k, a in get("alarms").items() if (a.get("object") or {}).get("uuid") in about}
        if name == "xapi-tasks":
            return {k for k, t in get(name).items() if t.get("applies_to") in about}
        return set()  # hosts, SRs, networks, pools, templates...: not a VM's


class ScopeService:
    """:class:`Visibility` of the current request's scope over a snapshot, kept for reuse
    while the pools do not change (scripts poll the same listings)."""

    def __init__(self, size=64):
        self._cache = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def allows(self, name, obj, snapshot):
        """Whether the current request's scope lets it see ``obj`` of collection ``name``."""
        scope = _current.get()
        if not scope:
            return True
        return self.visibility(scope, snapshot).allows(name, obj)

    def visibility(self, scope, snapshot):
        key = (scope.key, snapshot.generation, id(snapshot))
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
        found = Visibility(scope, snapshot)
        with self._lock:
            self._cache[key] = found
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return found
