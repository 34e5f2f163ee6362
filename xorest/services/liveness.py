"""Which xorest processes and machines are alive: the owners that marks and tasks name.

What a process makes for a while (a task in the log, a snapshot or a task in a pool) is
marked with it, as ``host:pid:time``.  On its own machine, a process is gone once its id
is free, exiting, or given to a younger process.  Another machine's processes cannot be
seen from here: each machine says it is alive in the store every
:data:`HEARTBEAT_SECONDS` (:class:`Heartbeat`), and one silent for :data:`HOST_SILENCE`
is taken as gone, with every process it ran.
"""
import logging
import os
import socket
import threading
import time

log = logging.getLogger(__name__)

#: Seconds between two notes of this machine in the store.
HEARTBEAT_SECONDS = 10.0
#: A machine that has not said it is alive for this long is gone (several missed notes:
#: a slow store or clocks a few seconds apart do not make a machine gone).
HOST_SILENCE = 60.0
#: ``PF_EXITING`` in ``/proc/<pid>/stat``'s flags: the process is past the point of no return.
_PF_EXITING = 0x4


def owner_mark():
    """This process, as marks name it."""
    return f"{socket.gethostname()}:{os.getpid()}:{int(time.time())}"


def owner_is_gone(mark, hosts_alive=None):
    """Whether ``mark`` names a process of this machine that no longer exists, or (given
    ``hosts_alive``, a function giving ``{host: seen_at}`` from the store, called only for
    another machine's mark) a process of a machine silent for :data:`HOST_SILENCE`.  A
    machine that never said it is alive is not judged.

    A process id may have been given to another process since (containers restart their
    ids from 1): a process that started after the mark was written is not its owner.
    """
    host, _, rest = (mark or "").partition(":")
    pid, _, written = rest.partition(":")
    if host != socket.gethostname():
        seen_at = hosts_alive().get(host) if hosts_alive is not None else None
        return seen_at is not None and time.time() - seen_at > HOST_SILENCE
    if not pid.isdigit():
        return False
    return not _alive(int(pid), int(written) if written.isdigit() else None)


def _alive(pid, marked_at=None):
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    state, started, flags = _process_state(pid)
    # a killed process closes its files (the feed's socket: its worker "left") before it
    # is a zombie; it is exiting from its first step on, and gone for good
    if state == b"Z" or flags & _PF_EXITING:
        return False
    # marks are written after their process started, to the second: a later start is another process
    return started is None or marked_at is None or started <= marked_at + 1


def _read_stat(pid):
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return fh.read()


def _process_state(pid):
    """``(state letter, start time, flags)`` of process ``pid`` from ``/proc``
    (``(None, None, 0)`` where unknown): state ``Z`` for a process that exited but was not
    reaped yet."""
    try:
        fields = _read_stat(pid).rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
        with open("/proc/stat", "rb") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith(b"btime "))
        # fields 3, 22 and 9 of proc(5)
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK"), int(fields[6])
    except (OSError, ValueError, IndexError, StopIteration):
        return None, None, 0


class Heartbeat:
    """Notes this machine as alive in the store every :data:`HEARTBEAT_SECONDS` (one
    thread per instance: its pools daemon's, or the process that sweeps)."""

    def __init__(self, store, interval=HEARTBEAT_SECONDS):
        self.store, self.interval = store, interval
        self._thread = None
        self._stop = threading.Event()

    def start(self):
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
            self._thread.start()
        return self

    def stop(self):
        self._stop.set()

    def _run(self):
        host = socket.gethostname()
        while True:
            try:
                self.store.note_host_alive(host, time.time())
            except Exception as exc:  # a store away for a while: the next note may pass
                log.warning("cannot note this machine as alive in the store: %s", exc)
            if self._stop.wait(self.interval):
                return
