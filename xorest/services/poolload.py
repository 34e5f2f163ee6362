"""A pool's first load in a process of its own, for the pools daemon.

Loading a pool decodes its whole event list (125 MiB of JSON and hundreds of MiB of
records for 10k VMs) of which a tenth is kept.  Done in the daemon, what is kept ends up
scattered through the heap among freed pages the allocator cannot give back: the
daemon would stay at the load's peak for good.  :func:`load` runs ``xorest poold-load``
instead: it logs in, loads, maps (:class:`~.mapping.PoolMapper`) and answers the pool's
objects then the mapping's state, pickled.  The objects go to the workers as they arrive,
so the workers unpickle them while the child pickles the state and the daemon unpickles
it: the first answer does not wait for the state.  The child gets the server's
credentials on its standard input, never on its command line.
"""
import json
import logging
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import traceback
import threading

from ..xapi import XapiClient, XapiError, XapiUnreachable
from ..xapi.watcher import WATCHED_CLASSES
from .mapping import PoolMapper

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">Q")
#: A whole pool's first load, mapping included, must end within this.
LOAD_TIMEOUT = 900
#: Pools with fewer records are mapped in one process (a fork costs more than it saves).
PARALLEL_FROM = 20_000


def load(server, config, key, on_objects):
    """Load and map the pool of ``server`` in a child process.

    :param on_objects: called with the pool's objects as soon as they arrive (before the
        mapping's state), as a message for the feed: ``("parts", key, [pickled upserts])``,
        which replaces everything the workers had of the pool.
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
        expired = threading.Event()
        timer = threading.Timer(LOAD_TIMEOUT, lambda: (expired.set(), child.kill()))
        timer.start()
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
                    on_objects(pickle.dumps(("parts", key, parts), protocol=pickle.HIGHEST_PROTOCOL))
                    del parts
                    state = _read_frame(child.stdout)
            child.stdout.close()
            child.wait()
        finally:
            timer.cancel()
            if child.poll() is None:
                child.kill()
                child.wait()
        errors.seek(0)
        failure = errors.read()[-2000:].decode(errors="replace")
    if header is None or (header.get("error") is None and state is None):
        if expired.is_set():
            raise XapiUnreachable(f"loading the pool took more than {LOAD_TIMEOUT} s")
        raise XapiUnreachable(f"loading the pool failed (exit {child.returncode}): {failure[-500:]}")
    error = header.get("error")
    if error is not None:
        if error["kind"] == "xapi":
            raise XapiError.from_description([error["code"], *error["params"]])
        raise XapiUnreachable(error["message"])
    return pickle.loads(state), header["token"], header["count"]


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


def _map_in_parallel(mapper):
    """Map every record, half of them in a forked copy of this process when there is a
    second core: ``([pickled upserts of each part], [(ref, id)] of all)``.  A part that
    fails in the copy is mapped here instead."""
    refs = list(mapper.records)
    if (os.cpu_count() or 1) < 2 or len(refs) < PARALLEL_FROM:
        upserts, mapped = mapper.map_records(refs)
        return [pickle.dumps(upserts, protocol=pickle.HIGHEST_PROTOCOL)], mapped
    theirs, mine = refs[1::2], refs[0::2]
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the copy: map, answer, leave without running anything of the parent's
        status = 1
        try:
            os.close(reader)
            upserts, mapped = mapper.map_records(theirs)
            with os.fdopen(writer, "wb") as out:
                _write(out, pickle.dumps(mapped, protocol=pickle.HIGHEST_PROTOCOL))
                _write(out, pickle.dumps(upserts, protocol=pickle.HIGHEST_PROTOCOL))
            status = 0
        except BaseException:  # said on the loader's standard error, which the daemon logs
            traceback.print_exc()
        finally:
            os._exit(status)
    os.close(writer)
    upserts, mapped = mapper.map_records(mine)
    parts = [pickle.dumps(upserts, protocol=pickle.HIGHEST_PROTOCOL)]
    del upserts
    with os.fdopen(reader, "rb") as stream:
        their_mapped, their_part = _read_frame(stream), _read_frame(stream)
    os.waitpid(pid, 0)
    if their_mapped is None or their_part is None:
        log.warning("mapping in a second process failed; mapping its part here")
        upserts, their_mapped = mapper.map_records(theirs)
        their_part = pickle.dumps(upserts, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        their_mapped = pickle.loads(their_mapped)
    return parts + [their_part], mapped + their_mapped


def main(stdin=None, stdout=None):
    """``xorest poold-load``: the child's side (a spec on stdin, frames on stdout)."""
    stdin, stdout = stdin or sys.stdin.buffer, stdout or sys.stdout.buffer
    spec = json.loads(stdin.read())
    client = XapiClient(spec["url"], spec["username"], spec["password"], ca_file=spec["ca_file"],
                        insecure=spec["insecure"], timeout=tuple(spec["timeout"]))
    try:
        client.login()
        result = client.call("event.from", WATCHED_CLASSES, "", 0.0, timeout=(spec["timeout"][0], 300))
    except XapiError as exc:
        _write(stdout, json.dumps({"error": {"kind": "xapi", "code": exc.code, "params": exc.params}}).encode())
        return 0
    except XapiUnreachable as exc:
        _write(stdout, json.dumps({"error": {"kind": "unreachable", "message": str(exc)}}).encode())
        return 0
    finally:
        client.close()
    mapper = PoolMapper()
    mapper.load_records(result["events"])
    header = {"token": result["token"], "count": len(result["events"])}
    del result
    parts, mapped = _map_in_parallel(mapper)
    _write(stdout, json.dumps({**header, "parts": len(parts)}).encode())
    for part in parts:
        _write(stdout, part)
    stdout.flush()  # the workers start on the objects while the state is made and pickled
    del parts
    mapper.finish_load(mapped)
    state = mapper.state()  # its records share their strings (see PoolMapper.load_records)
    del mapper
    _write(stdout, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    stdout.flush()
    return 0
