"""Collections: a name -> the cache snapshot (or the store) -> filter -> limit -> objects."""
import contextlib
import itertools
import logging
import threading
from collections import OrderedDict

from .. import filter as live_filter
from ..errors import BadRequest, NotFound
from ..filter.table import Table, select
from ..objects import COLLECTIONS
from .auth import public_user
from .ordering import SortOrder
from . import scopes
from .scopes import ScopeService
from .tasks import concerns

log = logging.getLogger(__name__)

#: Collections that do not come from the pools (``tasks``: xorest's task log).
LOCAL_COLLECTIONS = ("servers", "users", "audit", "tasks")
VM_COLLECTIONS = ("vms", "vm-snapshots", "vm-templates", "vm-controllers")


class Selections:
    """Recent selections of pool collections (filter, scope, order), each kept with the
    state it was computed from: scripts list the same collections with the same filters
    again and again, by pages or with other limits; until the collection changes, the
    filter is not evaluated again.  A collection changes as a new dict in the cache's
    snapshot, so the state is compared by identity (and held, so its identity is not
    reused)."""

    def __init__(self, size=64):
        self.size = size
        self._items = OrderedDict()  # key -> (state, matches)
        self._lock = threading.Lock()

    def get(self, key, state):
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] is not state:
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key, state, matches):
        with self._lock:
            self._items[key] = (state, matches)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class Tables:
    """The filter :class:`~xorest.filter.table.Table` of each pool collection's current
    state: the columns filters read serve every later filter.  A collection changes as a
    new dict in the cache's snapshot (compared by identity, and held); when the same ids
    are there, only some objects replaced, the previous table is patched at those rows."""

    #: Beyond this share of replaced objects, a table is read afresh.
    PATCH_SHARE = 4

    def __init__(self):
        self._items = {}  # name -> (state, table)
        self._lock = threading.Lock()

    def get(self, name, objects):
        with self._lock:
            item = self._items.get(name)
        if item is not None and item[0] is objects:
            return item[1]
        rows = list(objects.values())
        table = None
        if item is not None and len(item[0]) == len(objects) and list(item[0]) == list(objects):
            # same ids, so the same (id) order: find the objects replaced
            changed = [row for row, (was, now) in enumerate(zip(item[1].objects, rows)) if was is not now]
            if len(changed) * self.PATCH_SHARE <= len(rows):
                table = item[1].updated(rows, changed)
        if table is None:
            table = Table(rows)
        with self._lock:
            self._items[name] = (objects, table)
        return table


@contextlib.contextmanager
def _evaluating(config, costly):
    """Evaluate filters within the regex budget; what goes wrong is the client's 400."""
    try:
        with live_filter.evaluation_budget(config.regex_timeout):
            yield
    except live_filter.RegexTimeout as exc:
        raise BadRequest(f"{exc}: {costly}") from None
    except RecursionError:
        raise BadRequest("the filter is nested too deeply for these objects") from None


class CollectionService:
    """Reads collections for the API.

    :param cache: the :class:`~xorest.cache.ObjectCache`.
    :param pools: the :class:`~xorest.services.pools.PoolService` (servers' status).
    :param store: the store (servers, users, the audit trail).
    :param tasks: the :class:`~xorest.services.tasks.TaskService` (the ``tasks`` collection).

    Every object read here is checked against the current request's token scope
    (:mod:`.scopes`): what is out of scope is never listed and never found.
    """

    def __init__(self, cache, pools, store, config, tasks=None):
        self.cache = cache
        self.pools = pools
        self.store = store
        self.config = config
        self.tasks = tasks
        self.scopes = ScopeService()
        self.selections = Selections()
        self.tables = Tables()

    @staticmethod
    def names():
        return sorted([*COLLECTIONS, *LOCAL_COLLECTIONS])

    def _objects(self, name, snapshot):
        if name in COLLECTIONS:
            return snapshot.collection(name)
        if name == "tasks" and self.tasks is not None:
            return self.tasks.tasks()
        if name == "servers":
            self.pools.catch_up()  # servers another process just added or disconnected
            statuses = self.pools.statuses()
            return {s["id"]: self._server(s, statuses.get(s["id"]))
                    for s in sorted(self.store.list_servers(), key=lambda s: s["id"])}
        if name == "users":
            return {u["id"]: public_user(u) for u in sorted(self.store.list_users(), key=lambda u: u["id"])}
        if name == "audit":
            return {str(e["id"]): _audit_entry(e) for e in self.store.list_audit()}
        raise NotFound(f"no such collection {name}")

    @staticmethod
    def _server(row, status):
        if not row["enabled"]:
            status = {"status": "disconnected", "error": None}
        status = status or {"status": "disconnected", "error": "not started in this process"}
        return {"id": row["id"], "type": "server", "host": row["url"], "username": row["username"],
                "label": row["label"], "allowUnauthorized": row["insecure"], "enabled": row["enabled"],
                "readOnly": False, "caFile": row["ca_file"], **status}

    def _task(self, key):
        try:
            return self.tasks.get(key)
        except NotFound:
            return None

    def _snapshot(self):
        """The cache's snapshot, once it shows what was just written through a pool (by
        any process)."""
        self.pools.catch_up()
        return self.cache.snapshot()

    def generation(self, name):
        """A number that changes whenever the pools' objects change; ``None`` for the
        collections read from the store (they are not cached)."""
        if name not in COLLECTIONS:
            return None
        return self._snapshot().generation

    def select(self, name, filter_text=None, limit=None, sort=None, after=None, within=None):
        """One page of the matching objects of a collection (references, not copies).

        Order: the ``sort`` fields (``"name_label,-memory.size"``), then id.  ``after`` is
        the cursor of a previous page; ``limit`` caps the page; ``within`` (a predicate)
        keeps only the objects of a sub-collection.

        :returns: ``(objects, cursor)``; ``cursor`` resumes after this page when it was
            cut at ``limit``, else ``None``.
        :raises FilterError: invalid filter (400 with its position).
        :raises BadRequest: invalid sort or cursor, or a regex over its time budget.
        :raises NotFound: unknown collection.
        """
        snapshot = self._snapshot()
        if within is None and name in COLLECTIONS:
            order = SortOrder(sort)
            return self._page(self._matches(name, snapshot, filter_text, order), order, limit, after)
        candidates = [obj for obj in self._objects(name, snapshot).values() if within is None or within(obj)]
        return self.select_objects(name, candidates, filter_text, limit, sort, after, snapshot)

    def _matches(self, name, snapshot, filter_text, order):
        """Every object of a pool collection the token's scope and ``filter_text`` let
        through, in ``order``: computed once per state of the collection (see
        :class:`Selections`), then only paged."""
        scope = scopes.current()
        objects = snapshot.collection(name)
        # an unscoped listing depends on its collection only; a scope may read others
        state = objects if scope is None else snapshot
        key = (name, scopes.cache_key(), filter_text or "", order.text)
        found = self.selections.get(key, state)
        if found is None:
            table = self.tables.get(name, objects)
            rows = None if scope is None else self._in_scope(name, table.objects, snapshot)
            node = live_filter.parse(filter_text) if filter_text else None
            if node is not None:
                with _evaluating(self.config, "simplify the regular expression"):
                    rows = select(node, table, rows)
            found = list(table.objects) if rows is None else [table.objects[row] for row in rows]
            if order:
                found = order.sort(found)
            self.selections.put(key, state, found)
        return found

    def _in_scope(self, name, candidates, snapshot):
        """The positions of the candidates the token's scope lets through."""
        with _evaluating(self.config, "the token's scope filter is too costly"):
            return [i for i, obj in enumerate(candidates) if self.scopes.allows(name, obj, snapshot)]

    @staticmethod
    def _page(matches, order, limit, after):
        candidates = order.after(matches, after)
        if limit is None or len(candidates) <= limit:
            return candidates, None
        page = candidates[:limit]
        return page, order.cursor(page[-1]) if page else None

    def select_objects(self, name, candidates, filter_text=None, limit=None, sort=None, after=None, snapshot=None):
        """:meth:`select` over ``candidates`` of collection ``name`` (in id order), e.g. an
        object's tasks; the token's scope applies as it does to the whole collection."""
        order = SortOrder(sort)
        snapshot = snapshot or self._snapshot()
        candidates = [candidates[i] for i in self._in_scope(name, candidates, snapshot)]  # scopes hold filters
        if not order:
            candidates = order.after(candidates, after)  # before filtering: a bisection on ids
        node = live_filter.parse(filter_text) if filter_text else None
        # Without a sort, the first limit+1 matches are enough to know whether more follow.
        wanted = None if (order or limit is None) else limit + 1
        if node is not None:
            with _evaluating(self.config, "simplify the regular expression"):
                candidates = list(itertools.islice(filter(node.match, candidates), wanted))
        if order:
            candidates = order.after(order.sort(candidates), after)
        if limit is None or len(candidates) <= limit:
            return candidates, None
        page = candidates[:limit]
        return page, order.cursor(page[-1]) if page else None

    def related(self, name, key, sub):
        """A sub-collection of object ``key`` of collection ``name``: ``(collection, predicate)``.

        ``messages``, ``alarms`` and ``tasks`` are those about the object, ``vdis`` the disks a VM
        (snapshot, template, controller) has through its VBDs, as Xen Orchestra lists them.

        :raises NotFound: no such object, or no such sub-collection for it.
        """
        obj = self.get(name, key)
        uuid = obj.get("uuid", obj["id"])
        if sub == "messages":
            return "messages", lambda message: message.get("$object") == uuid
        if sub == "alarms":
            return "alarms", lambda alarm: (alarm.get("object") or {}).get("uuid") == uuid
        if sub == "tasks":  # xorest's task log: the tasks about this object
            return "tasks", lambda task: concerns(task, obj["id"])
        if sub == "vdis" and name in VM_COLLECTIONS:
            vbds = self.cache.snapshot().collection("vbds")
            disks = {vbds[vbd].get("VDI") for vbd in obj.get("$VBDs") or () if vbd in vbds}
            return ("vdi-snapshots" if name == "vm-snapshots" else "vdis"), lambda vdi: vdi["id"] in disks
        raise NotFound(f"{name} have no {sub}", collection=name)

    def get(self, name, key):
        """One object by id (or XAPI opaque ref)."""
        snapshot = self._snapshot() if name in COLLECTIONS else self.cache.snapshot()
        if name in COLLECTIONS:
            obj = snapshot.find(name, key)
        elif name == "tasks" and self.tasks is not None:
            obj = self._task(key)
        else:
            obj = self._objects(name, snapshot).get(key)
        if obj is not None and not self.scopes.allows(name, obj, snapshot):
            obj = None  # out of scope is indistinguishable from absent
        if obj is None:
            raise NotFound(f"no such {COLLECTIONS.get(name, name.rstrip('s'))} {key}",
                           id=key, type=COLLECTIONS.get(name, name))
        return obj


def _audit_entry(row):
    entry = {"id": str(row["id"]), "type": "audit", **{k: v for k, v in row.items() if k != "id"}}
    entry["time"] = int(row["at"] * 1000)
    return entry
