"""A pool's first load in a process of its own, for the pools daemon.

Loading a pool decodes its whole event list (125 MiB of JSON for 10k VMs) of which a
tenth is kept.  Done in the daemon, what is kept ends up scattered through the heap among
freed pages the allocator cannot give back: the daemon would stay at the load's peak for
good.  :func:`load` runs ``xorest poold-load`` instead: it logs in, fetches the answer,
decodes only the fields mapping reads (:mod:`~xorest.xapi.eventdecode`), maps
(:class:`~.mapping.PoolMapper`, half the records in a forked copy: :func:`load_and_map`)
and answers the pool's objects, then the mapping's state, pickled.  The objects go to the
workers as they arrive, so the workers take them while the child makes the state and the
daemon reads it: the first answer does not wait for the state.  The child gets the
server's credentials on its standard input, never on its command line.
"""
import gc
import json
import logging
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
from ..xapi.eventdecode import EventDecoder
from ..xapi.watcher import WATCHED_CLASSES
from .mapping import PoolMapper, kept_fields

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">Q")
#: A whole pool's first load, mapping included, must end within this.
LOAD_TIMEOUT = 900
#: Answers of fewer bytes (about 20,000 records) are decoded and mapped by one process:
#: a second one costs more than it saves.
PARALLEL_FROM_BYTES = 24 << 20


def load(server, config, key, on_objects, cancelled=None):
    """Load and map the pool of ``server`` in a child process.

    :param on_objects: called with the pool's objects as soon as they arrive (before the
        mapping's state), as a message for the feed: ``("parts", key, [pickled upserts])``,
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
        child = subprocess.Popen([sys.executable, "-m", "xorest", "poold-load"], stdin=subprocess.PIPE,
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
    error = header.get("error")
    if error is not None:
        if error["kind"] == "xapi":
            raise XapiError.from_description([error["code"], *error["params"]])
        raise XapiUnreachable(error["message"])
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


def _records(answer):
    """``(mapper, token, count)``: the records of an ``event.from`` answer (its JSON, or
    the result an XML-RPC pool gave, decoded already), nothing mapped yet."""
    if isinstance(answer, bytes):
        answer = codec.json_response(answer, EventDecoder(kept_fields()))
    mapper = PoolMapper()
    mapper.load_records(answer["events"])
    return mapper, answer["token"], len(answer["events"])


def _pickled(value):
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def load_and_map(answer):
    """Decode a whole pool's ``event.from`` answer and map every record: ``(mapper,
    token, count, [pickled upserts of each part], [(ref, id)] of all)``.

    A large JSON answer is handled by two processes when there is a second core: this
    one forks before decoding, both decode it (each its own objects: no copy-on-write of
    a decoded heap) and each maps half the records.  A half that fails in the copy is
    mapped here instead.

    :raises XapiError: the answer is an XAPI error.
    """
    if not isinstance(answer, bytes) or (os.cpu_count() or 1) < 2 or len(answer) < PARALLEL_FROM_BYTES:
        mapper, token, count = _records(answer)
        upserts, mapped = mapper.map_records(list(mapper.records))
        return mapper, token, count, [_pickled(upserts)], mapped
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the copy: map its half, answer, leave without running anything of the parent's
        status = 1
        try:
            os.close(reader)
            mapper = _records(answer)[0]
            upserts, mapped = mapper.map_records(list(mapper.records)[1::2])
            with os.fdopen(writer, "wb") as out:
                _write(out, _pickled(mapped))
                _write(out, _pickled(upserts))
            status = 0
        except XapiError:
            status = 0  # the parent reports it
        except BaseException:  # said on the loader's standard error, which the daemon logs
            traceback.print_exc()
        finally:
            os._exit(status)
    os.close(writer)
    with os.fdopen(reader, "rb") as stream:
        try:
            mapper, token, count = _records(answer)
            del answer
            refs = list(mapper.records)
            upserts, mapped = mapper.map_records(refs[0::2])
            parts = [_pickled(upserts)]
            del upserts
            their_mapped, their_part = _read_frame(stream), _read_frame(stream)
        finally:
            stream.close()  # a copy still writing gets EPIPE and leaves
            os.waitpid(pid, 0)
    if their_mapped is None or their_part is None:
        log.warning("mapping in a second process failed; mapping its half here")
        upserts, their_mapped = mapper.map_records(refs[1::2])
        their_part = _pickled(upserts)
    else:
        their_mapped = pickle.loads(their_mapped)
    return mapper, token, count, parts + [their_part], mapped + their_mapped


def _undecoded(body):
    # For XapiClient.call: the answer's bytes as its result (decoded later, see load_and_map).
    return {"result": body}


def _failed(stdout, exc):
    """Say why the load failed, as the daemon reads it (:func:`load`)."""
    if isinstance(exc, XapiError):
        error = {"kind": "xapi", "code": exc.code, "params": exc.params}
    else:
        error = {"kind": "unreachable", "message": str(exc)}
    _write(stdout, json.dumps({"error": error}).encode())
    return 0


def main(stdin=None, stdout=None):
    """``xorest poold-load``: the child's side (a spec on stdin, frames on stdout)."""
    stdin, stdout = stdin or sys.stdin.buffer, stdout or sys.stdout.buffer
    gc.disable()  # a short-lived process building objects that all live: see memory.long_lived_objects
    spec = json.loads(stdin.read())
    client = XapiClient(spec["url"], spec["username"], spec["password"], ca_file=spec["ca_file"],
                        insecure=spec["insecure"], timeout=tuple(spec["timeout"]))
    try:
        client.login()
        answer = client.call("event.from", WATCHED_CLASSES, "", 0.0, timeout=(spec["timeout"][0], 300),
                             decode=_undecoded)
    except (XapiError, XapiUnreachable) as exc:
        return _failed(stdout, exc)
    finally:
        client.close()
    try:
        mapper, token, count, parts, mapped = load_and_map(answer)
    except XapiError as exc:
        return _failed(stdout, exc)
    del answer
    _write(stdout, json.dumps({"token": token, "count": count, "parts": len(parts)}).encode())
    for part in parts:
        _write(stdout, part)
    stdout.flush()  # the workers start on the objects while the state is made and pickled
    del parts
    mapper.finish_load(mapped)
    state = mapper.shared_state()
    del mapper
    _write(stdout, _pickled(state))
    stdout.flush()
    return 0
