"""A pool's first load once its records are in: mapped by two processes, handed over in parts.

:class:`FirstLoad` keeps the records of each answer of the load and maps them in stages,
VMs first (:func:`first_stage`), on a large pool in the loader and a forked copy of it
that share the work chunk by chunk (:meth:`FirstLoad.map`).  The objects of each chunk go
to the workers as a part (:func:`encode_objects`), which they put together without
sorting (:func:`decode_objects`).  Used by the loader's process, :mod:`.poolload`.
"""
import itertools
import logging
import marshal
import operator
import os
import pickle
import traceback

from ..xapi import codec
from ..xapi.prefetch import as_helper_of, read_frame, write_frame

log = logging.getLogger(__name__)

#: Pools of fewer records are mapped by one process: a second one costs more than it saves.
PARALLEL_FROM_RECORDS = 20_000


def first_stage(cls, record):
    """Whether a record is mapped and handed over in the load's first stage, before the
    others: the VMs' own (not snapshots, templates or control domains).  VMs are what
    clients ask for first, and on a 10k-VM pool 40% of the mapping's work: the workers
    have them about a second before the rest, whose mapping yields the processors to
    them meanwhile."""
    return cls == "VM" and not (record.get("is_a_snapshot") or record.get("is_a_template")
                                or record.get("is_control_domain"))


class FirstLoad:
    """A whole pool's records, from one or more ``event.from`` answers with an empty token
    (:meth:`add`), then mapped (:meth:`map`).

    The token to follow the pool from is the first answer's: what changed between the
    answers comes again as events after it, which apply over what was loaded.
    """

    def __init__(self):
        # imported here, not with the module: the loader asks for the first part before
        # importing what decodes and maps it (the pool builds it meanwhile)
        from ..xapi.eventdecode import EventDecoder
        from .mapping import PoolMapper, kept_fields

        self.mapper = PoolMapper()
        self.token = None
        self.count = 0
        self._decoder = EventDecoder(kept_fields())
        self._chunks = ({}, {})  # per stage, first digit of the uuid -> refs (see chunks())

    def add(self, answer):
        """Load the records of one answer: its JSON (decoded here, only the fields mapping
        reads) or the result an XML-RPC pool gave, decoded already.

        :raises XapiError: the answer is an XAPI error.
        """
        if isinstance(answer, bytes):
            answer = codec.json_response(answer, self._decoder)
        self.mapper.load_records(answer["events"])
        # sorted into chunks now, while the pool builds the next part, not after the last
        _sort_into(self._chunks, {event["ref"] for event in answer["events"]}, self.mapper.records)
        if self.token is None:
            self.token = answer["token"]
        self.count += len(answer["events"])

    def map(self):
        """Yield ``(parts, mapped, last)`` for each stage of the load (the records of
        :func:`first_stage`, then the others'): each part's objects, encoded by
        :func:`encode_objects`, and ``[(ref, id)]`` of every object of the stage.

        A large pool is mapped by two processes when there is a second core: this one
        forks, and both take chunks of the records (:meth:`chunks`) from a shared
        queue until none is left, so neither waits long for the other however the machine
        shares its cores between them (halves fixed in advance left one idle for 0.3 s).
        A chunk the copy took but did not deliver is mapped here.  Call it with no other
        thread running.
        """
        mapper = self.mapper
        parallel = (os.cpu_count() or 1) >= 2 and len(mapper.records) >= PARALLEL_FROM_RECORDS
        stages = [chunks for chunks in self.chunks() if chunks] or [[]]
        for number, chunks in enumerate(stages):
            if parallel:
                parts, mapped = self._map_in_two(chunks)
            else:
                upserts, mapped = mapper.map_records([ref for chunk in chunks for ref in chunk])
                parts = [encode_objects(upserts)]
                del upserts
            yield parts, mapped, number == len(stages) - 1

    def _map_in_two(self, chunks):
        """``(parts, mapped)`` of ``chunks``, mapped here and in a forked copy."""
        mapper = self.mapper
        queue = _chunk_queue(len(chunks))
        theirs = os.memfd_create("xorest-mapped", os.MFD_CLOEXEC)  # read once the copy is gone: it never blocks
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the copy: map what it takes, write it down, leave without running anything of the parent's
            status = 1
            try:
                as_helper_of(parent)
                with os.fdopen(theirs, "wb") as out:
                    for index in _taken(queue):
                        upserts, mapped = mapper.map_records(chunks[index])
                        write_frame(out, pickled((index, mapped)))
                        write_frame(out, encode_objects(upserts))
                        del upserts
                status = 0
            except BaseException:  # said on the loader's standard error, which the daemon logs
                traceback.print_exc()
            finally:
                os._exit(status)
        done = {}
        try:
            for index in _taken(queue):
                upserts, mapped = mapper.map_records(chunks[index])
                done[index] = (encode_objects(upserts), mapped)
                del upserts
        finally:
            os.close(queue)
            os.waitpid(pid, 0)
        with os.fdopen(theirs, "rb") as stream:
            stream.seek(0)
            while (head := read_frame(stream)) is not None and (part := read_frame(stream)) is not None:
                index, mapped = pickle.loads(head)
                done[index] = (part, mapped)
        missing = [index for index in range(len(chunks)) if index not in done]
        if missing:
            log.warning("mapping in a second process failed; mapping %d of its chunks here", len(missing))
            for index in missing:
                upserts, mapped = mapper.map_records(chunks[index])
                done[index] = (encode_objects(upserts), mapped)
        return ([done[index][0] for index in range(len(chunks))],
                [pair for index in range(len(chunks)) for pair in done[index][1]])

    def chunks(self):
        """The refs of the records of each stage (:func:`first_stage`'s, then the
        others'), in chunks by the first digit of their uuid (the id of most objects): each
        chunk's objects are an id range of their own, so the workers put the chunks'
        objects together in id order without sorting them (:func:`decode_objects`)."""
        if sum(len(refs) for stage in self._chunks for refs in stage.values()) != len(self.mapper.records):
            self._chunks = ({}, {})  # never, as parts are classes
            _sort_into(self._chunks, self.mapper.records, self.mapper.records)
        return [[stage[digit] for digit in sorted(stage)] for stage in self._chunks]


_HEX_DIGITS = frozenset("0123456789abcdef")


def _sort_into(stages, refs, records):
    # at most 17 chunks a stage whatever a pool calls uuids: anything but a lowercase hex
    # digit first goes to one chunk of its own (its objects are sorted in with the others)
    for ref in refs:
        item = records.get(ref)
        if item is not None:
            uuid = item[1].get("uuid")
            digit = uuid[:1] if isinstance(uuid, str) else ""
            stage = stages[0] if first_stage(*item) else stages[1]
            stage.setdefault(digit if digit in _HEX_DIGITS else "", []).append(ref)


def _chunk_queue(count):
    """A pipe's read end holding ``count`` chunk numbers, one byte each: a read of one byte
    takes one, atomically, whichever process reads it."""
    reader, writer = os.pipe()
    os.write(writer, bytes(range(count)))  # fewer than 256, far below a pipe's buffer
    os.close(writer)
    return reader


def _taken(queue):
    """The chunk numbers this process takes from ``queue`` until it is empty."""
    while number := os.read(queue, 1):
        yield number[0]


def pickled(value):
    """``value`` pickled for another xorest process."""
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


_ID = operator.itemgetter(0)


def encode_objects(upserts):
    """Part of a pool's objects (``id -> (collection, object)``) as the workers take it
    (:func:`decode_objects`): ``collection -> {id: object}``, each in id order, in
    marshal's format.  Objects are plain data: marshal keeps shared strings shared as pickle
    does, writes them as fast or faster and reads them back 15-30% faster (0.24-0.34 s
    instead of 0.28-0.48 for a 10k-VM pool, in the worker, where the first answer waits).
    Only processes of the same Python read it.  Grouped and sorted here, in the loader's
    two processes, they are taken by a worker's cache without a pass over every object
    (:meth:`~xorest.cache.ObjectCache.load_pool`)."""
    grouped = {}
    for key, (collection, obj) in upserts.items():
        grouped.setdefault(collection, {})[key] = obj
    return marshal.dumps({name: dict(sorted(objects.items(), key=_ID)) for name, objects in grouped.items()})


def decode_objects(parts):
    """The objects of every part (:func:`encode_objects`): ``collection -> {id: object}``,
    each in id order."""
    runs = {}
    for part in parts:
        for name, objects in marshal.loads(part).items():
            runs.setdefault(name, []).append(objects)
    return {name: _merged(found) for name, found in runs.items()}


def _merged(runs):
    """Runs of ``id -> object``, each in id order, as one: put one after the other when
    each starts after the previous one ends (parts are id ranges: :meth:`FirstLoad.chunks`),
    else sorted together."""
    if len(runs) == 1:
        return runs[0]
    if all(next(reversed(before)) < next(iter(after)) for before, after in zip(runs, runs[1:])):
        merged = {}
        for run in runs:
            merged.update(run)
        return merged
    return dict(sorted(itertools.chain.from_iterable(run.items() for run in runs), key=_ID))
