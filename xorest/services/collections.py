"""Collections: a name -> the cache snapshot (or the store) -> filter -> limit -> objects."""
import itertools
import logging

from .. import filter as live_filter
from ..errors import BadRequest, NotFound
from ..objects import COLLECTIONS
from .auth import public_user
from .ordering import SortOrder

log = logging.getLogger(__name__)

#: Collections that do not come from the pools (``tasks``: xorest's task log).
LOCAL_COLLECTIONS = ("servers", "users", "tasks")


class CollectionService:
    """Reads collections for the API.

    :param cache: the :class:`~xorest.cache.ObjectCache`.
    :param pools: the :class:`~xorest.services.pools.PoolService` (servers' status).
    :param store: the store (servers, users).
    :param tasks: the :class:`~xorest.services.tasks.TaskService` (the ``tasks`` collection).
    """

    def __init__(self, cache, pools, store, config, tasks=None):
        self.cache = cache
        self.pools = pools
        self.store = store
        self.config = config
        self.tasks = tasks

    @staticmethod
    def names():
        return sorted([*COLLECTIONS, *LOCAL_COLLECTIONS])

    def _objects(self, name):
        if name in COLLECTIONS:
            self.pools.catch_up()  # what was just written through a pool, by any process
            return self.cache.snapshot().collection(name)
        if name == "tasks" and self.tasks is not None:
            return self.tasks.tasks()
        if name == "servers":
            self.pools.catch_up()  # servers another process just added or disconnected
            statuses = self.pools.statuses()
            return {s["id"]: self._server(s, statuses.get(s["id"]))
                    for s in sorted(self.store.list_servers(), key=lambda s: s["id"])}
        if name == "users":
            return {u["id"]: public_user(u) for u in sorted(self.store.list_users(), key=lambda u: u["id"])}
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

    def generation(self, name):
        """A number that changes whenever the pools' objects change; ``None`` for the
        collections read from the store (they are not cached)."""
        if name not in COLLECTIONS:
            return None
        self.pools.catch_up()
        return self.cache.snapshot().generation

    def select(self, name, filter_text=None, limit=None, sort=None, after=None):
        """One page of the matching objects of a collection (references, not copies).

        Order: the ``sort`` fields (``"name_label,-memory.size"``), then id.  ``after`` is
        the cursor of a previous page; ``limit`` caps the page.

        :returns: ``(objects, cursor)``; ``cursor`` resumes after this page when it was
            cut at ``limit``, else ``None``.
        :raises FilterError: invalid filter (400 with its position).
        :raises BadRequest: invalid sort or cursor, or a regex over its time budget.
        :raises NotFound: unknown collection.
        """
        return self.select_objects(list(self._objects(name).values()), filter_text, limit, sort, after)

    def select_objects(self, candidates, filter_text=None, limit=None, sort=None, after=None):
        """:meth:`select` over ``candidates`` (objects in id order), e.g. an object's tasks."""
        order = SortOrder(sort)
        if not order:
            candidates = order.after(candidates, after)  # before filtering: a bisection on ids
        node = live_filter.parse(filter_text) if filter_text else None
        # Without a sort, the first limit+1 matches are enough to know whether more follow.
        wanted = None if (order or limit is None) else limit + 1
        if node is not None:
            try:
                with live_filter.evaluation_budget(self.config.regex_timeout):
                    candidates = list(itertools.islice(filter(node.match, candidates), wanted))
            except live_filter.RegexTimeout as exc:
                raise BadRequest(f"{exc}: simplify the regular expression") from None
            except RecursionError:
                raise BadRequest("the filter is nested too deeply for these objects") from None
        if order:
            candidates = order.after(order.sort(candidates), after)
        if limit is None or len(candidates) <= limit:
            return candidates, None
        page = candidates[:limit]
        return page, order.cursor(page[-1]) if page else None

    def get(self, name, key):
        """One object by id (or XAPI opaque ref)."""
        if name in COLLECTIONS:
            self.pools.catch_up()
            obj = self.cache.snapshot().find(name, key)
        elif name == "tasks" and self.tasks is not None:
            obj = self._task(key)
        else:
            obj = self._objects(name).get(key)
        if obj is None:
            raise NotFound(f"no such {COLLECTIONS.get(name, name.rstrip('s'))} {key}",
                           id=key, type=COLLECTIONS.get(name, name))
        return obj
