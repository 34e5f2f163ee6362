"""One pool's records and the objects they map to, kept up to date batch by batch.

:class:`PoolMapper` holds what mapping needs between batches: the records (trimmed to the
fields mappers read), who read what (:class:`~xorest.objects.Dependents`) and which object
each record became.  A batch of XAPI events gives the objects to put in the cache and the
ids to remove from it, exactly as mapping the whole pool again would.
"""
from .. import memory, objects
from ..xapi.watcher import WATCHED_CLASSES
from .sweeper import SWEPT_FIELDS

_REAL_CLASS = {cls.lower(): cls for cls in WATCHED_CLASSES}


def kept_fields():
    """XAPI class -> the fields of its records that are kept (``None``: all of them), for
    a decoder that skips the others (:class:`~xorest.xapi.eventdecode.EventDecoder`)."""
    return {cls: None if objects.RECORD_FIELDS.get(cls) is None
            else objects.RECORD_FIELDS[cls] | frozenset(SWEPT_FIELDS.get(cls, ()))
            for cls in WATCHED_CLASSES}


_KEPT = kept_fields()


def _record_of(cls, snapshot):
    """What is kept of a record: the fields mapping reads, and xorest's own marks (for the
    sweep)."""
    return objects.trim(cls, snapshot, _KEPT.get(cls))


class PoolMapper:
    """The mapping state of one pool (not thread-safe: its owner serialises batches)."""

    def __init__(self):
        self.records = {}  # ref -> (class, record)
        self.dependents = objects.Dependents()  # who read which record while mapped
        self.id_of = {}  # ref -> XO id in the cache
        self.pool_uuid = None

    def state(self):
        """Everything this mapper holds, to hand over to another process (picklable)."""
        return self.records, self.dependents.state(), self.id_of, self.pool_uuid

    def shared_state(self):
        """:meth:`state` with one string object per text throughout: references and uuids
        repeat across records, indexes and ids (a 10k-VM pool's state pickles to 30 MiB
        instead of 46, and takes that much less memory where it is unpickled)."""
        return memory.share_strings(self.state())

    @classmethod
    def from_state(cls, state):
        mapper = cls()
        mapper.records, dependents, mapper.id_of, mapper.pool_uuid = state
        mapper.dependents = objects.Dependents.from_state(dependents)
        return mapper

    def apply(self, events, reset):
        """Apply XAPI events to the records, then map every affected object (its own, and
        those that read it: see :mod:`xorest.objects.dependencies`).

        :param reset: the events are the pool's whole state.
        :returns: ``(upserts, deletes)``: ``id -> (collection, object)`` and the ids gone.
        """
        deps = self.dependents
        if reset:
            self.records = {}
            deps.reset()
        affected, deletes, pool_uuid = set(), set(), self.pool_uuid
        for event in events:
            ref, cls = event["ref"], _REAL_CLASS.get(event["class"], event["class"])
            old = self.records.pop(ref, (None, None))[1]
            new = None
            if event["operation"] != "del":
                new = _record_of(cls, event["snapshot"])
                self.records[ref] = (cls, new)
                if cls == "pool":
                    self.pool_uuid = new["uuid"]
            if not reset:
                affected |= deps.affected(ref, cls, old, new, self.records)
            deps.applied(ref, old, new)
            affected.add(ref)
        if reset or self.pool_uuid != pool_uuid:  # every object carries the pool's uuid
            affected = set(self.records) | affected
        context = objects.Context(self.records, self.pool_uuid, by_uuid=deps.by_uuid)
        upserts = {}
        for ref in affected:
            item = self.records.get(ref)
            obj = objects.to_xo(item[0], ref, item[1], context) if item else None
            collection = objects.collection_of(obj) if obj else None
            if obj is not None or item is None:
                deps.mapped(ref, item[0] if item else None, item[1] if obj else None, context)
            if collection is None:
                old = self.id_of.pop(ref, None)
                if old is not None:
                    deletes.add(old)
                continue
            if self.id_of.get(ref) not in (None, obj["id"]):
                deletes.add(self.id_of[ref])
            self.id_of[ref] = obj["id"]
            upserts[obj["id"]] = (collection, obj)
        if reset:
            self.id_of = {ref: key for ref, key in self.id_of.items() if ref in self.records}
        return upserts, deletes - set(upserts)

    # A whole pool's first load, in steps that can run in several processes ----------------

    def load_records(self, events):
        """Keep the records of a whole pool's events (as ``apply(events, True)`` keeps
        them), nothing mapped yet; on a fresh mapper, called once per part of the pool
        (records of other classes, or later ones).  Then :meth:`map_records` (parts may
        run in forked processes), :meth:`finish_load` and :meth:`shared_state`."""
        for event in events:
            ref, cls = event["ref"], _REAL_CLASS.get(event["class"], event["class"])
            previous, record = self.records.pop(ref, (None, None))[1], None
            if event["operation"] != "del":
                record = _record_of(cls, event["snapshot"])
                self.records[ref] = (cls, record)
                if cls == "pool":
                    self.pool_uuid = record["uuid"]
            self.dependents.applied(ref, previous, record)

    def map_records(self, refs):
        """``(upserts, mapped)``: the objects of records ``refs`` (``id -> (collection,
        object)``) and ``[(ref, id or None)]`` for each record that has an object."""
        context = objects.Context(self.records, self.pool_uuid, by_uuid=self.dependents.by_uuid)
        upserts, mapped = {}, []
        for ref in refs:
            cls, record = self.records[ref]
            obj = objects.to_xo(cls, ref, record, context)
            if obj is None:
                continue
            collection = objects.collection_of(obj)
            mapped.append((ref, obj["id"] if collection is not None else None))
            if collection is not None:
                upserts[obj["id"]] = (collection, obj)
        return upserts, mapped

    def finish_load(self, mapped):
        """What :meth:`apply` would have recorded for the objects ``mapped`` (from every
        part's :meth:`map_records`): who reads which record, and each record's object id."""
        context = objects.Context(self.records, self.pool_uuid, by_uuid=self.dependents.by_uuid)
        for ref, key in mapped:
            cls, record = self.records[ref]
            self.dependents.mapped(ref, cls, record, context)
            if key is not None:
                self.id_of[ref] = key

    def current_objects(self):
        """``id -> (collection, object)``: every object mapped from the records as they are."""
        context = objects.Context(self.records, self.pool_uuid, by_uuid=self.dependents.by_uuid)
        current = {}
        for ref, (cls, record) in self.records.items():
            obj = objects.to_xo(cls, ref, record, context)
            collection = objects.collection_of(obj) if obj else None
            if collection is not None:
                current[obj["id"]] = (collection, obj)
        return current
