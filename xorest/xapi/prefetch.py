"""Several big XAPI calls made one after the other by a forked process, while the caller
works on each answer as it arrives.

A pool's first load comes in parts (see :mod:`xorest.services.poolload`): the caller
decodes one part while the pool builds the next.  Fetched by a thread beside the decoding,
the next part waited for the GIL for as long as each decode lasted (a C call that never
releases it), and so did the request after it: the pool sat idle.  A process of its own
only waits on the pool, asking for the next part as soon as one has arrived; it hands the
answers over through an anonymous file (writing never blocks on the reader) and says where
each one is on a pipe.
"""
import contextlib
import ctypes
import json
import os
import pickle
import signal
import struct
import tempfile
import traceback

from .errors import XapiError, XapiUnreachable

_LENGTH = struct.Struct(">Q")


def read_frame(stream):
    """One length-prefixed frame, or ``None`` at the end of the stream."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def write_frame(out, payload):
    """Write ``payload`` (bytes) as one frame that :func:`read_frame` reads back."""
    out.write(_LENGTH.pack(len(payload)))
    out.write(payload)  # (not joined to its head: parts are tens of MiB)


def error_of(exc):
    """An :class:`XapiError` or :class:`XapiUnreachable` as plain data (:func:`raise_error`
    raises it again in another process)."""
    if isinstance(exc, XapiError):
        return {"kind": "xapi", "code": exc.code, "params": exc.params}
    return {"kind": "unreachable", "message": str(exc)}


def raise_error(error):
    """Raise what :func:`error_of` described."""
    if error["kind"] == "xapi":
        raise XapiError.from_description([error["code"], *error["params"]])
    raise XapiUnreachable(error["message"])


_PR_SET_PDEATHSIG = 1


def as_helper_of(parent):
    """Make a process just forked from ``parent`` (a pid) its helper: killed when it dies
    (a load is cancelled by killing the loader: what it forked must not go on asking the
    pool for records nobody reads; best effort where ``prctl`` is missing), and off its
    standard output (whoever reads that until it closes must not wait for a helper)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


@contextlib.contextmanager
def prefetched(client, calls, decode):
    """Make ``calls`` (``[(method, args, timeout)]``) through ``client``, in order, in a
    forked process; yields an iterator of their answers, in order, each as
    ``client.call(..., decode=decode)`` returns it (JSON-RPC answers are best left
    undecoded: bytes cross over as they are, anything else is pickled).

    Fork with no other thread running.  Leaving the block early kills the process, and it
    dies with the caller's.

    :raises XapiError, XapiUnreachable: (from the iterator) as the call that failed raised it.
    """
    store = _anonymous_file()
    reader, writer = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the fetcher: make the calls, write the answers, leave without running the caller's code
        status = 1
        try:
            as_helper_of(parent)
            os.close(reader)
            client.detach()  # connections of its own: the caller's stay the caller's
            with os.fdopen(writer, "wb", buffering=0) as notices:
                _fetch(client, calls, decode, store, notices)
            status = 0
        except BaseException:  # said on standard error (the loader's, which the pools daemon logs)
            traceback.print_exc()
        finally:
            os._exit(status)
    os.close(writer)
    notices = os.fdopen(reader, "rb")
    try:
        yield _answers(len(calls), store, notices)
    finally:
        notices.close()
        os.close(store)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # done already, or no longer wanted
        os.waitpid(pid, 0)


def _fetch(client, calls, decode, store, notices):
    offset = 0
    for method, args, timeout in calls:
        try:
            answer = client.call(method, *args, timeout=timeout, decode=decode)
        except (XapiError, XapiUnreachable) as exc:
            _notify(notices, {"error": error_of(exc)})
            return
        raw = isinstance(answer, bytes)
        data = memoryview(answer if raw else pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
        del answer
        written = 0
        while written < len(data):
            written += os.pwrite(store, data[written:], offset + written)
        _notify(notices, {"offset": offset, "size": len(data), "raw": raw})
        offset += len(data)


def _notify(notices, notice):
    write_frame(notices, json.dumps(notice).encode())


def _answers(count, store, notices):
    for _ in range(count):
        frame = read_frame(notices)
        if frame is None:
            raise XapiUnreachable("the process fetching from the pool failed (its error is logged)")
        notice = json.loads(frame)
        if "error" in notice:
            raise_error(notice["error"])
        data = _read_at(store, notice["size"], notice["offset"])
        yield data if notice["raw"] else pickle.loads(data)


def _read_at(fd, size, offset):
    chunks, done = [], 0
    while done < size:
        chunk = os.pread(fd, size - done, offset + done)
        if not chunk:
            raise XapiUnreachable("an answer from the pool was cut short")
        chunks.append(chunk)
        done += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _anonymous_file():
    """A file descriptor of a file with no name (in memory where the system allows)."""
    try:
        return os.memfd_create("xorest-prefetch", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        fd, path = tempfile.mkstemp(prefix="xorest-prefetch-")
        os.unlink(path)
        return fd
