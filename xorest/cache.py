"""The in-memory object cache: batch-atomic updates, consistent lock-free snapshots for readers.

Writers (one watcher thread per pool) call :meth:`ObjectCache.apply` with a whole batch;
it builds new dicts for the collections the batch touches and swaps in a new immutable
:class:`Snapshot`.  A request takes ``cache.snapshot()`` once and reads only that, so it
never sees half a batch and never copies the cache.
"""
import operator
import threading
from collections import deque

#: Batches remembered for :meth:`ObjectCache.changes_since` (clients further behind resync).
CHANGELOG_BATCHES = 4096
_ID = operator.itemgetter(0)


class Snapshot:
    """One consistent state of every collection; never mutated after creation."""

    __slots__ = ("collections", "generation")

    def __init__(self, collections, generation):
        self.collections = collections
        self.generation = generation

    def collection(self, name):
        """``id -> object`` of a collection, in id order."""
        return self.collections.get(name, {})

    def find(self, name, key):
        """An object by id, or by XAPI opaque ref; ``None`` when absent."""
        objects = self.collections.get(name, {})
        obj = objects.get(key)
        if obj is None and key.startswith("OpaqueRef:"):
            obj = next((o for o in objects.values() if o.get("_xapiRef") == key), None)
        return obj


class ObjectCache:
    """All pools' objects, by collection name."""

    def __init__(self):
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._snapshot = Snapshot({}, 0)
        self._owned = {}  # pool key -> {id: collection name}
        self._log = deque(maxlen=CHANGELOG_BATCHES)  # (generation, {id: name} changed, {id: name} removed)
        # pool key -> a load in stages under way: None when its earlier stages are in (a new
        # pool's), or the collections held back until its last stage (a reload's)
        self._staged = {}

    def snapshot(self):
        """The current state; cheap, consistent, safe to read without locks."""
        return self._snapshot

    def apply(self, pool_key, upserts, deletes=(), reset=False):
        """Apply one batch from one pool atomically.

        :param upserts: ``id -> (collection, object)``.
        :param deletes: ids to remove.
        :param reset: the batch is the pool's complete state; drop every other object of it.
        """
        with self._lock:
            if reset:  # the pool's whole state: a load in stages under way is superseded
                self._staged.pop(pool_key, None)
            current = self._snapshot.collections
            owned = self._owned.setdefault(pool_key, {})
            fresh = {}

            def writable(name):
                if name not in fresh:
                    fresh[name] = dict(current.get(name, {}))
                return fresh[name]

            gone = set(deletes)
            if reset:
                gone |= set(owned) - set(upserts)
            removed = {}
            for key in gone:
                name = owned.pop(key, None)
                if name is not None:
                    writable(name).pop(key, None)
                    removed[key] = name
            grown = set()
            for key, (name, obj) in upserts.items():
                previous = owned.get(key)
                if previous is not None and previous != name:
                    writable(previous).pop(key, None)
                objects = writable(name)
                if key not in objects:
                    grown.add(name)
                objects[key] = obj
                owned[key] = name
            for name in grown:  # new ids go to their place: collections stay in id order
                # (nearly sorted input: the sort runs in about linear time)
                fresh[name] = dict(sorted(fresh[name].items(), key=lambda item: item[0]))
            if fresh or reset:
                generation = self._snapshot.generation + 1
                self._snapshot = Snapshot({**current, **fresh}, generation)
                self._log.append((generation, {key: name for key, (name, _) in upserts.items()}, removed))
                self._changed.notify_all()

    def load_pool(self, pool_key, collections, final=True):
        """A pool's whole state at once, as :meth:`apply` with ``reset`` does it, quicker
        for a pool that has no objects yet (its first load: 100k objects are taken in a
        few ms instead of a quarter of a second).

        A load may come in stages (``final`` false for all but the last), each adding
        collections to the earlier ones': a new pool's stages are readable as each comes
        in (its VMs before the rest); a reload's replace the old objects with the last
        stage, all at once, so nothing of the pool disappears meanwhile.

        :param collections: ``collection -> {id: object}``, each in id order.
        """
        with self._lock:
            if pool_key in self._staged:
                held = self._staged.pop(pool_key)
            else:
                held = None if not self._owned.get(pool_key) else {}
            if held is None:  # a new pool: each stage is readable at once
                self._add_objects(pool_key, collections)
                if not final:
                    self._staged[pool_key] = None
                return
            for name, objects in collections.items():
                held[name] = {**held[name], **objects} if name in held else objects
            if not final:
                self._staged[pool_key] = held
                return
        upserts = {key: (name, obj) for name, objects in held.items() for key, obj in objects.items()}
        self.apply(pool_key, upserts, (), reset=True)

    def abandon_load(self, pool_key):
        """A load in stages ended before its last one: what it held back is dropped, and a
        new pool's objects it brought are removed."""
        with self._lock:
            if pool_key not in self._staged:
                return
            held = self._staged.pop(pool_key)
        if held is None:
            self.remove_pool(pool_key)

    def _add_objects(self, pool_key, collections):
        """Objects of a pool that does not have them yet, merged in without a batch's
        general bookkeeping."""
        current = self._snapshot.collections
        owned, fresh = self._owned.setdefault(pool_key, {}), {}
        added = {}
        for name, objects in collections.items():
            added.update(dict.fromkeys(objects, name))
            others = current.get(name)
            fresh[name] = dict(sorted({**others, **objects}.items(), key=_ID)) if others else dict(objects)
        owned.update(added)
        generation = self._snapshot.generation + 1
        self._snapshot = Snapshot({**current, **fresh}, generation)
        self._log.append((generation, added, {}))
        self._changed.notify_all()

    def applied(self, pool_key, token):
        """A pool's batches reached XAPI's event ``token`` (nothing to do here; a cache
        that feeds other processes passes it on)."""

    def pool_keys(self):
        """The pools that have objects here."""
        with self._lock:
            return set(self._owned)

    def remove_pool(self, pool_key):
        """Forget every object of a pool (its server was removed)."""
        self.apply(pool_key, {}, (), reset=True)
        with self._lock:
            self._owned.pop(pool_key, None)

    def changes_since(self, generation):
        """What changed after ``generation``: ``(snapshot, {id: collection} changed or
        added, {id: collection} removed)``, or ``None`` when it is too far behind (then
        everything should be read again)."""
        with self._lock:
            snapshot = self._snapshot
            if generation == snapshot.generation:
                return snapshot, {}, {}
            if not self._log or self._log[0][0] > generation + 1:
                return None
            changed, removed = {}, {}
            for number, upserted, deleted in self._log:
                if number > generation:
                    for key, name in upserted.items():
                        changed[key] = name
                        removed.pop(key, None)
                    for key, name in deleted.items():
                        removed[key] = name
                        changed.pop(key, None)
            return snapshot, changed, removed

    def wait_for(self, predicate, timeout):
        """Block until ``predicate(snapshot)`` is true or ``timeout`` passes; returns the result."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self._snapshot), timeout)
