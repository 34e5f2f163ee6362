"""A pool's first load in a process of its own, for the pools daemon.

Loading a pool decodes its whole event list (125 MiB of JSON and hundreds of MiB of
records for 10k VMs) of which a tenth is kept.  Done in the daemon, what is kept ends up
scattered through the heap among freed pages the allocator cannot give back: the
daemon would stay at the load's peak for good.  :func:`load` runs ``xorest poold-load``
instead: it logs in, loads, maps (:class:`~.mapping.PoolMapper`) and answers the mapping's
state and the pool's objects, pickled; the daemon unpickles the state, packed, and hands
the objects to its workers as they are.  The child gets the server's credentials on its
standard input, never on its command line.
"""
import json
import logging
import pickle
import struct
import subprocess
import sys

from ..xapi import XapiClient, XapiError, XapiUnreachable
from ..xapi.watcher import WATCHED_CLASSES
from .mapping import PoolMapper

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">Q")
#: A whole pool's first load, mapping included, must end within this.
LOAD_TIMEOUT = 900


def load(server, config, key):
    """Load and map the pool of ``server`` in a child process.

    :returns: ``(mapper state, pickled reset batch for the feed, event.from token, count)``.
    :raises XapiError: the pool refused (its code and parameters).
    :raises XapiUnreachable: the pool could not be reached, or the child failed.
    """
    spec = {"url": server["url"], "username": server["username"], "password": server["password"],
            "ca_file": server.get("ca_file") or None, "insecure": bool(server.get("insecure")),
            "timeout": [config.xapi_connect_timeout, config.xapi_read_timeout], "key": key}
    child = subprocess.Popen([sys.executable, "-m", "xorest", "poold-load"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = child.communicate(json.dumps(spec).encode(), timeout=LOAD_TIMEOUT)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise XapiUnreachable(f"loading the pool took more than {LOAD_TIMEOUT} s") from None
    frames = _frames(out)
    if not frames:
        raise XapiUnreachable(f"loading the pool failed (exit {child.returncode}): "
                              f"{err.decode(errors='replace')[-500:]}")
    header = json.loads(frames[0])
    error = header.get("error")
    if error is not None:
        if error["kind"] == "xapi":
            raise XapiError.from_description([error["code"], *error["params"]])
        raise XapiUnreachable(error["message"])
    return pickle.loads(frames[1]), frames[2], header["token"], header["count"]


def _frames(data):
    frames, offset = [], 0
    while offset + _LENGTH.size <= len(data):
        (size,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        frames.append(data[offset:offset + size])
        offset += size
    return frames


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
    _write(stdout, pickle.dumps(mapper.state(), protocol=pickle.HIGHEST_PROTOCOL))
    _write(stdout, pickle.dumps(("batch", spec["key"], upserts, (), True), protocol=pickle.HIGHEST_PROTOCOL))
    stdout.flush()
    return 0
