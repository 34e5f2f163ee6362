"""A pool's first load in a process of its own, for the pools daemon.

Loading a pool decodes its whole event list (125 MiB of JSON for 10k VMs) of which a
tenth is kept.  Done in the daemon, what is kept ends up scattered through the heap among
freed pages the allocator cannot give back: the daemon would stay at the load's peak for
good.  :func:`load` runs ``python -m xorest.services.poolload`` instead: it logs in, fetches the records
class group by class group (:func:`load_groups`, asked for by a forked process of its own:
:mod:`~xorest.xapi.prefetch`; each part is decoded while the pool builds the next), keeps
only the fields mapping reads (:mod:`~xorest.xapi.eventdecode`), maps
(:class:`~.mapping.PoolMapper`, half the records in a forked copy: :class:`FirstLoad`)
and answers the pool's objects, then the mapping's state, pickled.  The objects go to the
workers as they arrive, so the workers take them while the child makes the state and the
daemon reads it: the first answer does not wait for the state.  The child gets the
server's credentials on its standard input, never on its command line.
"""
import gc
import itertools
import json
import logging
import marshal
import operator
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from .. import memory
from ..xapi import XapiClient, XapiError, XapiUnreachable, codec
from ..xapi.prefetch import as_helper_of, error_of, prefetched, raise_error
from ..xapi.watcher import WATCHED_CLASSES

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">Q")
#: A whole pool's first load, mapping included, must end within this.
LOAD_TIMEOUT = 900
#: Pools of fewer records are mapped by one process: a second one costs more than it saves.
PARALLEL_FROM_RECORDS = 20_000


def load(server, config, key, on_objects, cancelled=None):
    """Load and map the pool of ``server`` in a child process.

    :param on_objects: called with the pool's objects as soon as they arrive (before the
        mapping's state), as a message for the feed: ``("parts", key, [parts])`` (each
        made by :func:`encode_objects`),
        which replaces everything the workers had of the pool.
    :param cancelled: a :class:`threading.Event`; once set, the child is killed and the
        load fails.
    :returns: ``(mapper state, event.from token, count)``.
    :raises XapiError: the pool refused (its code and parameters).
    :raises XapiUnreachable: the pool could not be reached, or the child failed.
    """
    spec = {"url": server["url"], "username": server["username"], "password": server["password"],
            "ca_file": server.get("ca_file") or None, "insecure": bool(server.get("insecure")),
            "timeout": [config.xapi_connect_timeout, config.xapi_read_timeout], "key": key}
    with tempfile.TemporaryFile() as errors:  # a file: a chatty child never blocks on it
        child = subprocess.Popen([sys.executable, "-m", "xorest.services.poolload"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=errors)
        expired, done = threading.Event(), threading.Event()
        threading.Thread(target=_guard, args=(child, cancelled, expired, done), name=f"load-guard-{key[:8]}",
                         daemon=True).start()
        header = state = None
        try:
            try:
                child.stdin.write(json.dumps(spec).encode())
                child.stdin.close()
            except BrokenPipeError:
                pass  # the child died at once: what it said is in errors
            header = _read_frame(child.stdout)
            try:
                header = json.loads(header) if header else None
            except ValueError:
                header = None
            if header is not None and header.get("error") is None:
                parts = [_read_frame(child.stdout) for _ in range(int(header.get("parts", 1)))]
                if parts and None not in parts:
                    on_objects(_pickled(("parts", key, parts)))
                    del parts
                    state = _read_frame(child.stdout)
            child.stdout.close()
            child.wait()
        finally:
            done.set()
            if child.poll() is None:
                child.kill()
                child.wait()
        errors.seek(0)
        failure = errors.read()[-2000:].decode(errors="replace")
    if header is None or (header.get("error") is None and state is None):
        if cancelled is not None and cancelled.is_set():
            raise XapiUnreachable("the connection was stopped while its pool was loading")
        if expired.is_set():
            raise XapiUnreachable(f"loading the pool took more than {LOAD_TIMEOUT} s")
        raise XapiUnreachable(f"loading the pool failed (exit {child.returncode}): {failure[-500:]}")
    if header.get("error") is not None:
        raise_error(header["error"])
    with memory.long_lived_objects():
        state = pickle.loads(state)
    return state, header["token"], header["count"]


def _guard(child, cancelled, expired, done):
    """Kill the loading ``child`` when ``cancelled`` is set or it runs past
    :data:`LOAD_TIMEOUT` (then ``expired`` is set), unless ``done`` first."""
    deadline = time.monotonic() + LOAD_TIMEOUT
    while not done.wait(0.1):
        if time.monotonic() > deadline:
            expired.set()
        if expired.is_set() or (cancelled is not None and cancelled.is_set()):
            child.kill()
            return


def _read_frame(stream):
    """One length-prefixed frame, or ``None`` at the end of the stream."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def _write(out, payload):
    out.write(_LENGTH.pack(len(payload)))
    out.write(payload)


#: The watched classes in the order a first load asks for them, one ``event.from`` per
#: group: the big classes first, so that each part is decoded while the pool builds the
#: next one.  Nothing overlaps the decoding of the last part, nor of the one before beyond
#: the last's fetching: the classes that decode fast for their size (disk attachments,
#: metrics: few fields kept) come last.  10k VMs, decoding / fetching: VMs 0.5 / 1.0 s,
#: VDIs and VIFs 0.5 / 0.7, guest metrics and VBDs 0.2 / 0.6, the rest 0.01 / 0.2; the
#: order before (VBDs with VDIs, VIFs with the metrics) left 0.25-0.4 s of decoding after
#: the last byte.  Classes not named here come in the last group (:func:`load_groups`).
LOAD_ORDER = (("VM",), ("VDI", "VIF"), ("VM_guest_metrics", "VBD"))


def load_groups():
    """The ``event.from`` class lists of a first load, in order; together they are
    :data:`~xorest.xapi.watcher.WATCHED_CLASSES`, each class once."""
    first = [cls for group in LOAD_ORDER for cls in group]
    return [list(group) for group in LOAD_ORDER] + [[cls for cls in WATCHED_CLASSES if cls not in first]]


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
        self._chunks = {}  # first digit of the uuid -> refs (see chunks())

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
        """``([each part's objects, encoded by encode_objects], [(ref, id)] of every object)``.

        A large pool is mapped by two processes when there is a second core: this one
        forks, and both take chunks of the records (:meth:`chunks`) from a shared
        queue until none is left, so neither waits long for the other however the machine
        shares its cores between them (halves fixed in advance left one idle for 0.3 s).
        A chunk the copy took but did not deliver is mapped here.  Call it with no other
        thread running.
        """
        mapper = self.mapper
        if (os.cpu_count() or 1) < 2 or len(mapper.records) < PARALLEL_FROM_RECORDS:
            upserts, mapped = mapper.map_records(list(mapper.records))
            return [encode_objects(upserts)], mapped
        chunks = self.chunks()
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
                        _write(out, _pickled((index, mapped)))
                        _write(out, encode_objects(upserts))
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
            while (head := _read_frame(stream)) is not None and (part := _read_frame(stream)) is not None:
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
        """The refs of the records in chunks by the first digit of their uuid (the id of
        most objects): each chunk's objects are an id range of their own, so the workers put
        the chunks' objects together in id order without sorting them
        (:func:`decode_objects`)."""
        if sum(map(len, self._chunks.values())) != len(self.mapper.records):  # never, as parts are classes
            self._chunks = {}
            _sort_into(self._chunks, self.mapper.records, self.mapper.records)
        return [self._chunks[digit] for digit in sorted(self._chunks)]


_HEX_DIGITS = frozenset("0123456789abcdef")


def _sort_into(chunks, refs, records):
    # at most 17 chunks whatever a pool calls uuids: anything but a lowercase hex digit
    # first goes to one chunk of its own (its objects are sorted in with the others)
    for ref in refs:
        item = records.get(ref)
        if item is not None:
            uuid = item[1].get("uuid")
            digit = uuid[:1] if isinstance(uuid, str) else ""
            chunks.setdefault(digit if digit in _HEX_DIGITS else "", []).append(ref)


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


def _pickled(value):
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


def _undecoded(body):
    # For XapiClient.call: the answer's bytes as its result (decoded later: FirstLoad.add).
    return {"result": body}


def _failed(stdout, exc):
    """Say why the load failed, as the daemon reads it (:func:`load`)."""
    _write(stdout, json.dumps({"error": error_of(exc)}).encode())
    return 0


def main(stdin=None, stdout=None):
    """The loader's side, ``python -m xorest.services.poolload`` (a spec on stdin, frames on
    stdout); started without the CLI, whose imports it does not need."""
    stdin, stdout = stdin or sys.stdin.buffer, stdout or sys.stdout.buffer
    gc.disable()  # a short-lived process building objects that all live: see memory.long_lived_objects
    spec = json.loads(stdin.read())
    client = XapiClient(spec["url"], spec["username"], spec["password"], ca_file=spec["ca_file"],
                        insecure=spec["insecure"], timeout=tuple(spec["timeout"]))
    timeout = (spec["timeout"][0], 300)
    try:
        client.login()
        calls = [("event.from", (classes, "", 0.0), timeout) for classes in load_groups()]
        with prefetched(client, calls, _undecoded) as answers:  # each part decoded while the pool builds the next
            loaded = FirstLoad()
            for answer in answers:
                loaded.add(answer)
                del answer
    except (XapiError, XapiUnreachable) as exc:
        return _failed(stdout, exc)
    finally:
        client.close()
    parts, mapped = loaded.map()
    mapper, header = loaded.mapper, {"token": loaded.token, "count": loaded.count, "parts": len(parts)}
    del loaded
    _write(stdout, json.dumps(header).encode())
    for part in parts:
        _write(stdout, part)
    stdout.flush()  # the workers start on the objects while the state is made and pickled
    del parts
    # the state is not needed for the first answer: the workers taking the objects are
    os.nice(10)
    mapper.finish_load(mapped)
    state = mapper.shared_state()
    del mapper
    _write(stdout, _pickled(state))
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
