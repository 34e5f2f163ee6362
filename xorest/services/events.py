"""Event streams (``GET /rest/v0/events``): subscriptions, and what changed for each.

A stream is served by one worker thread, but its subscriptions are kept in the store:
a ``POST .../subscriptions`` may reach any worker or instance, and the stream's worker
reads them as it goes.  Changes come from the cache's changelog, compared with what the
stream last saw, so each is an ``add``, an ``update`` or a ``remove`` (an object leaving a
subscription's filter or the token's scope is a ``remove``; entering it, an ``add``).
"""
import json
import time
import uuid

from .. import filter as live_filter
from ..cache import CHANGELOG_BATCHES
from ..errors import BadRequest, NotFound
from ..objects import TYPE_TO_COLLECTION

#: Xen Orchestra's subscription names (its object types) -> xorest collections.
SUBSCRIBABLE = {**TYPE_TO_COLLECTION, "alarm": "alarms"}
#: A stream not seen by its worker for this long is gone (its process died).
STALE_SECONDS = 300


class FellBehind(Exception):
    """The stream's client did not keep up: changes it missed are no longer known."""


class EventService:
    """Streams' registry and changes.

    :param store: where streams and subscriptions are kept (shared by workers, instances).
    :param cache: the :class:`~xorest.cache.ObjectCache` (its changelog).
    :param collections: the :class:`~.collections.CollectionService` (scopes).
    """

    def __init__(self, store, cache, collections):
        self.store = store
        self.cache = cache
        self.collections = collections

    def open(self, user):
        """A new stream for ``user``; returns its id."""
        stream_id = str(uuid.uuid4())
        now = time.time()
        self.store.prune_event_streams(now - STALE_SECONDS)
        self.store.add_event_stream(stream_id, user["id"], now)
        return stream_id

    def close(self, stream_id):
        self.store.remove_event_stream(stream_id)

    def touch(self, stream_id):
        """The stream is alive (its worker says so now and then)."""
        self.store.touch_event_stream(stream_id, time.time())

    def _stream_of(self, stream_id, user):
        stream = self.store.get_event_stream(stream_id)
        if stream is None or stream["user_id"] != user["id"]:
            raise NotFound(f"no such event stream {stream_id}", id=stream_id, type="event")
        return stream

    def subscribe(self, stream_id, user, collection, fields="*", filter_text=None):
        """Subscribe stream ``stream_id`` (``user``'s) to a collection (an XO type, as
        Xen Orchestra names them: ``VM``, ``host``, ``alarm``...); returns its id."""
        self._stream_of(stream_id, user)
        if collection not in SUBSCRIBABLE:
            raise BadRequest(f"cannot subscribe to {collection!r}: use one of {', '.join(sorted(SUBSCRIBABLE))}",
                             parameter="collection")
        if fields != "*" and not (isinstance(fields, list) and all(isinstance(f, str) and f for f in fields)):
            raise BadRequest('fields must be "*" or a list of field names', parameter="fields")
        if filter_text:
            live_filter.parse(filter_text)  # a FilterError (400) with its position
        self.store.set_subscription(stream_id, collection, json.dumps(fields), filter_text or None)
        return collection

    def unsubscribe(self, stream_id, user, collection):
        self._stream_of(stream_id, user)
        if not self.store.remove_subscription(stream_id, collection):
            raise NotFound(f"no subscription to {collection} on this stream", id=collection, type="subscription")

    def subscriptions(self, stream_id):
        """``{collection name: (XO type, fields, filter node or None)}`` of a stream."""
        result = {}
        for row in self.store.list_subscriptions(stream_id):
            node = live_filter.parse(row["filter"]) if row["filter"] else None
            result[SUBSCRIBABLE[row["collection"]]] = (row["collection"], json.loads(row["fields"]), node)
        return result

    def changes(self, since, previous, subscriptions):
        """``(snapshot, [(event, XO type, fields, object)])``: what changed in the
        subscribed collections between ``previous`` (the snapshot the client last saw, at
        generation ``since``) and now, as the request's scope allows it.

        :raises FellBehind: the changelog no longer reaches back to ``since``.
        """
        found = self.cache.changes_since(since)
        if found is None:
            raise FellBehind(f"the client fell behind by more than {CHANGELOG_BATCHES} batches of changes")
        snapshot, changed, removed = found
        scopes = self.collections.scopes
        events = []
        for key, name in [*changed.items(), *removed.items()]:
            if name not in subscriptions:
                continue
            xo_type, fields, node = subscriptions[name]
            before = previous.collection(name).get(key)
            after = snapshot.collection(name).get(key)
            was = before is not None and scopes.allows(name, before, previous) and (node is None or node.match(before))
            now = after is not None and scopes.allows(name, after, snapshot) and (node is None or node.match(after))
            if now:
                events.append(("update" if was else "add", xo_type, fields, after, before if was else None))
            elif was:
                events.append(("remove", xo_type, fields, before, None))
        return snapshot, events
