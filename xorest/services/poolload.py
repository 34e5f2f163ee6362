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
import pickle
import struct
import subprocess
import sys
import tempfile
import threading

from .. import memory
from ..xapi import XapiClient, XapiError, XapiUnreachable
from ..xapi.watcher import WATCHED_CLASSES
from .mapping import PoolMapper

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">Q")
#: A whole pool's first load, mapping included, must end within this.
LOAD_TIMEOUT = 900


def load(server, config, key, on_objects):
    """Load and map the pool of ``server`` in a child process.

    :param on_objects: called with the pickled reset batch for the feed as soon as it
        arrives (before the mapping's state).
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
                objects = _read_frame(child.stdout)
                if objects is not None:
                    on_objects(objects)
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
    upserts, _ = mapper.apply(result["events"], True)
    header = {"token": result["token"], "count": len(result["events"])}
    del result
    _write(stdout, json.dumps(header).encode())
    _write(stdout, pickle.dumps(("batch", spec["key"], upserts, (), True), protocol=pickle.HIGHEST_PROTOCOL))
    stdout.flush()  # the workers start on the objects while the state is pickled
    del upserts
    state = memory.share_strings(mapper.state())  # the daemon keeps it: a third smaller
    del mapper
    _write(stdout, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    stdout.flush()
    return 0
