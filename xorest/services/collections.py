"""Collections: a name -> the cache snapshot (or the store) -> filter -> limit -> objects."""
import itertools
import logging

from .. import filter as live_filter
from ..errors import BadRequest, NotFound
from ..objects import COLLECTIONS
from .auth import public_user
from .ordering import SortOrder

log = logging.getLogger(__name__)

#: Collections that do not come from the pools.
LOCAL_COLLECTIONS = ("servers", "users")


class CollectionService:
    """Reads collections for the API.

    :param cache: the :class:`~xorest.cache.ObjectCache`.
    :param pools: the :class:`~xorest.services.pools.PoolService` (servers' status).
    :param store: the store (servers, users).
    """

    def __init__(self, cache, pools, store, config):
        self.cache = cache
        self.pools = pools
        self.store = store
        self.config = config

    @staticmethod
    def names():
        return sorted([*COLLECTIONS, *LOCAL_COLLECTIONS])

    def _objects(self, name):
        if name in COLLECTIONS:
            return self.cache.snapshot().collection(name)
        if name == "servers":
            statuses = self.pools.statuses()
            return {s["id"]: self._server(s, statuses.get(s["id"]))
                    for s in sorted(self.store.list_servers(), key=lambda s: s["id"])}
        if name == "users":
            return {u["id"]: public_user(u) for u in sorted(self.store.list_users(), key=lambda u: u["id"])}
        raise NotFound(f"no such collection {name}")

    @staticmethod
    def _server(row, status):
        status = status or {"status": "disconnected", "error": "not started in this process"}
        return {"id": row["id"], "type": "server", "host": row["url"], "username": row["username"],
                "label": row["label"], "allowUnauthorized": row["insecure"],
                "caFile": row["ca_file"], **status}

    def generation(self, name):
        """A number that changes whenever the pools' objects change; ``None`` for the
        collections read from the store (they are not cached)."""
        return self.cache.snapshot().generation if name in COLLECTIONS else None

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
        order = SortOrder(sort)
        candidates = list(self._objects(name).values())  # in id order
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
            obj = self.cache.snapshot().find(name, key)
        else:
            obj = self._objects(name).get(key)
        if obj is None:
            raise NotFound(f"no such {COLLECTIONS.get(name, name.rstrip('s'))} {key}",
                           id=key, type=COLLECTIONS.get(name, name))
        return obj
