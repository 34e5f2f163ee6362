"""A pool's first load in a process of its own, for the pools daemon.

Loading a pool decodes its whole event list (125 MiB of JSON for 10k VMs) of which a
tenth is kept.  Done in the daemon, what is kept ends up scattered through the heap among
freed pages the allocator cannot give back: the daemon would stay at the load's peak for
good.  :func:`load` runs ``python -m xorest.services.poolload`` instead: it logs in, fetches the records
class group by class group (:func:`load_groups`, asked for by a forked process of its own:
:mod:`~xorest.xapi.prefetch`; each part is decoded while the pool builds the next), keeps
only the fields mapping reads (:mod:`~xorest.xapi.eventdecode`), maps
(:class:`~.mapping.PoolMapper`, in two processes: :class:`~.firstload.FirstLoad`)
and answers the pool's objects in two stages, the VMs' first, then the mapping's state,
pickled.  Each stage goes to the workers as it arrives, so the workers take the VMs while
the child maps the rest, and the rest while it makes the state: the first VM listing
waits for neither.  The child gets the server's credentials on its standard input, never
on its command line.
"""
import gc
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time

from .. import memory
from ..xapi import XapiClient, XapiError, XapiUnreachable
from ..xapi.prefetch import error_of, prefetched, raise_error, read_frame, write_frame
from ..xapi.watcher import WATCHED_CLASSES
from .firstload import FirstLoad, pickled

#: A whole pool's first load, mapping included, must end within this.
LOAD_TIMEOUT = 900


def load(server, config, key, on_objects, cancelled=None):
    """Load and map the pool of ``server`` in a child process.

    :param on_objects: called with the pool's objects as soon as they arrive (before the
        mapping's state), as messages for the feed, one per stage of the load (VMs first):
        ``("load", key, [parts], last)`` (each part made by
        :func:`~.firstload.encode_objects`); the last stage's objects with the earlier
        ones' replace everything the workers had of the pool.  If the load fails after a
        stage, ``("load-abandoned", key)`` follows.
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
            header = read_frame(child.stdout)
            try:
                header = json.loads(header) if header else None
            except ValueError:
                header = None
            if header is not None and header.get("error") is None:
                state = _stages(child.stdout, key, on_objects)
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


def _stages(stream, key, on_objects):
    """Pass each stage of the load the child sends on to ``on_objects`` as it comes, then
    return the mapping's state; ``None`` if the child stopped before (then the workers are
    told to drop the stages they got, unless they got the last one: the pool's objects are
    whole then, only the daemon's own state is missing)."""
    published = False
    while True:
        try:
            stage = json.loads(read_frame(stream) or b"null")
            count, last = int(stage["parts"]), bool(stage["last"])
        except (ValueError, TypeError, KeyError):  # the child stopped (or wrote something else)
            break
        parts = [read_frame(stream) for _ in range(count)]
        if None in parts:
            break
        on_objects(pickled(("load", key, parts, last)))
        published = True
        del parts
        if last:
            return read_frame(stream)
    if published:
        on_objects(pickled(("load-abandoned", key)))
    return None


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


def _undecoded(body):
    # For XapiClient.call: the answer's bytes as its result (decoded later: FirstLoad.add).
    return {"result": body}


def _failed(stdout, exc):
    """Say why the load failed, as the daemon reads it (:func:`load`)."""
    write_frame(stdout, json.dumps({"error": error_of(exc)}).encode())
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
    mapper, mapped = loaded.mapper, []
    write_frame(stdout, json.dumps({"token": loaded.token, "count": loaded.count}).encode())
    for number, (parts, stage_mapped, last) in enumerate(loaded.map()):
        write_frame(stdout, json.dumps({"parts": len(parts), "last": last}).encode())
        for part in parts:
            write_frame(stdout, part)
        stdout.flush()  # the workers take each stage while the next one is mapped
        del parts
        mapped += stage_mapped
        if number == 0:  # what is left yields the processors to the workers taking this stage
            os.nice(10)
    del loaded
    # then the mapping's state, for the daemon only (the workers have every object by now)
    mapper.finish_load(mapped)
    state = mapper.shared_state()
    del mapper
    write_frame(stdout, pickled(state))
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
