"""The pools feed: one process of an instance watches the pools, its workers read them.

The pools daemon (:mod:`.poold`) holds the instance's only XAPI event session per pool,
maps records into objects once, and streams them over a Unix socket to every worker of
the instance: on connection a snapshot of each pool, then each batch as it is applied,
the ``event.from`` token it reached, and the pool's connection state.  A worker applies
what it receives to its own :class:`~xorest.cache.ObjectCache`, so requests read local
memory as before, and a restarted worker gets the pools from the daemon, not from XAPI.

Messages from the daemon are pickled (both ends are the same program, the socket lives
in a directory only this user can enter); a worker's requests are small JSON documents.
Each frame is an 8-byte length and its payload.
"""
import json
import logging
import os
import pickle
import socket
import struct
import threading
from collections import deque

from .. import memory
from ..xapi.watcher import PoolStatus, token_key
from .firstload import decode_objects

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">Q")
#: A worker this far behind (bytes queued for it) is dropped; it reconnects and starts
#: again from a snapshot, instead of the daemon holding an ever-growing backlog.
MAX_BACKLOG = 1 << 30
#: Most bytes a worker's request may have (they are a few words).
MAX_REQUEST = 1 << 16
#: Messages from this size on (pools' objects) are handled with the cyclic collector paused.
_LARGE = 1 << 20


def _send_frame(sock, payload):
    if len(payload) < 65536:
        sock.sendall(_LENGTH.pack(len(payload)) + payload)
    else:  # a snapshot: no copy of it just to prefix its length
        sock.sendall(_LENGTH.pack(len(payload)))
        sock.sendall(payload)


def _recv_exactly(sock, size):
    parts, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 22))
        if not chunk:
            raise ConnectionError("the pools feed closed")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _recv_frame(sock, limit=None):
    (size,) = _LENGTH.unpack(_recv_exactly(sock, _LENGTH.size))
    if limit is not None and size > limit:
        raise ConnectionError(f"a {size}-byte message is too long")
    return _recv_exactly(sock, size)


# --- the daemon's side -------------------------------------------------------------------

class _Subscriber:
    """One connected worker: a queue of frames written by its own thread."""

    def __init__(self, sock, name):
        self.sock, self.name = sock, name
        self.queue, self.queued = deque(), 0
        self.ready = threading.Condition()
        self.closed = False

    def push(self, payload):
        with self.ready:
            if self.closed:
                return
            if self.queued + len(payload) > MAX_BACKLOG:
                log.warning("%s is %d bytes behind the pools; dropping it (it will start again)",
                            self.name, self.queued)
                self._close()
                return
            self.queue.append(payload)
            self.queued += len(payload)
            self.ready.notify()

    def write_loop(self):
        try:
            while True:
                with self.ready:
                    while not self.queue and not self.closed:
                        self.ready.wait()
                    if self.closed:
                        return
                    payload = self.queue.popleft()
                    self.queued -= len(payload)
                _send_frame(self.sock, payload)
        except OSError as exc:
            log.debug("writing to %s failed: %s", self.name, exc)
        finally:
            self.close()

    def close(self):
        with self.ready:
            self._close()

    def _close(self):
        if not self.closed:
            self.closed = True
            self.queue.clear()
            self.ready.notify_all()
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()


class FeedServer:
    """What the daemon serves: every change of its pools, to every connected worker.

    It stands in for the daemon's pools' cache (:meth:`apply`, :meth:`remove_pool`,
    :meth:`applied` have :class:`~xorest.cache.ObjectCache`'s meaning) but keeps no
    objects: each change is queued for every worker.  A worker joining is registered
    first, then gets each pool's objects mapped afresh from its records, under the pool's
    lock (no batch of that pool is published meanwhile): a batch it received before a
    pool's snapshot is replaced by it, one after it follows it.

    :param path: the Unix socket to listen on.
    :param pools: a function giving the daemon's pool connections (for states and snapshots).
    :param reconcile: a function reconciling the servers with the store now.
    :param on_leave: a function called when a worker's connection ends.
    """

    def __init__(self, path, pools, reconcile, on_leave=None):
        self.path, self.pools, self.reconcile = path, pools, reconcile
        self.on_leave = on_leave  # called when a worker leaves (it may have died midway)
        self._lock = threading.RLock()
        self._subscribers = []
        self._states = {}  # pool key -> the last state sent
        self._stop = threading.Event()
        self._listener = None

    # the cache's interface -------------------------------------------------------------

    def apply(self, pool_key, upserts, deletes=(), reset=False):
        with self._lock:
            self._publish(("batch", pool_key, upserts, tuple(deletes), reset))

    def applied(self, pool_key, token):
        with self._lock:
            self._publish(("token", pool_key, token))

    def publish(self, payload):
        """Queue a message already pickled (a pool's load, made by another process)."""
        with self._lock:
            for subscriber in self._subscribers:
                subscriber.push(payload)
            self._subscribers = [s for s in self._subscribers if not s.closed]

    def remove_pool(self, pool_key):
        with self._lock:
            self._states.pop(pool_key, None)
            self._publish(("gone", pool_key))

    def _publish(self, message):
        if self._subscribers:
            self.publish(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    # pool states ------------------------------------------------------------------------

    @staticmethod
    def state_of(conn):
        """What a worker needs to know of a pool connection besides its objects."""
        watcher = conn.watcher
        return {"server": conn.key, "pool_uuid": conn.pool_uuid, "status": watcher.status.to_dict(),
                "synced": watcher.synced.is_set(), "first_attempt": watcher.first_attempt.is_set(),
                "loaded_at": watcher.loaded_at}

    def publish_states(self):
        """Send the state of each pool that changed since it was last sent."""
        with self._lock:
            for conn in self.pools():
                state = self.state_of(conn)
                if self._states.get(conn.key) != state:
                    self._states[conn.key] = state
                    self._publish(("pool", conn.key, state))

    # serving ------------------------------------------------------------------------------

    def start(self):
        """Listen (the socket is created 0600 in the caller's private directory) and serve."""
        if os.path.exists(self.path):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(self.path)
        finally:
            os.umask(old)
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept_loop, name="feed-accept", daemon=True).start()
        threading.Thread(target=self._state_loop, name="feed-states", daemon=True).start()
        return self

    def stop(self):
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for subscriber in self._subscribers:
                subscriber.close()
            self._subscribers = []

    def _state_loop(self):
        while not self._stop.wait(0.1):
            try:
                self.publish_states()
            except Exception:
                log.exception("publishing the pools' states failed")

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), name="feed-subscriber", daemon=True).start()

    def _serve(self, sock):
        try:
            hello = json.loads(_recv_frame(sock, MAX_REQUEST))
        except (OSError, ConnectionError, ValueError) as exc:
            log.info("a pools feed client failed to introduce itself: %s", exc)
            sock.close()
            return
        subscriber = _Subscriber(sock, f"worker {hello.get('pid')}")
        with self._lock:
            self._subscribers.append(subscriber)
        threading.Thread(target=subscriber.write_loop, name="feed-writer", daemon=True).start()
        for conn in self.pools():  # what the worker starts from, pool by pool
            with conn.lock:
                objects, token = conn.current_objects()
                with self._lock:
                    subscriber.push(pickle.dumps(("pool", conn.key, self.state_of(conn)),
                                                 protocol=pickle.HIGHEST_PROTOCOL))
                    subscriber.push(pickle.dumps(("snapshot", conn.key, objects, token),
                                                 protocol=pickle.HIGHEST_PROTOCOL))
            del objects
        subscriber.push(pickle.dumps(("ready",), protocol=pickle.HIGHEST_PROTOCOL))
        log.info("%s joined the pools feed", subscriber.name)
        self._read_requests(sock, subscriber)

    def _read_requests(self, sock, subscriber):
        """A worker's requests: ``{"reconcile": n}`` (servers changed: reconcile now, then
        answer ``("reconciled", n)`` after every pool's state)."""
        try:
            while not subscriber.closed:
                request = json.loads(_recv_frame(sock, MAX_REQUEST))
                if "reconcile" in request:
                    self.reconcile()
                    self.publish_states()
                    with self._lock:
                        subscriber.push(pickle.dumps(("reconciled", request["reconcile"]),
                                                     protocol=pickle.HIGHEST_PROTOCOL))
        except (OSError, ConnectionError, ValueError):
            pass
        finally:
            subscriber.close()
            log.info("%s left the pools feed", subscriber.name)
            if self.on_leave is not None and not self._stop.is_set():
                self.on_leave()


# --- a worker's side -----------------------------------------------------------------------

class FeedWatcher:
    """A pool as the daemon describes it: what a worker's pool connection reads of its
    watcher (state, first load, token reached), without watching anything itself."""

    def __init__(self):
        self.status = PoolStatus()
        self.synced = threading.Event()
        self.first_attempt = threading.Event()
        self.token = None
        self.loaded_at = None
        self.pool_uuid = None
        self._applied = threading.Condition()

    def start(self):
        return self

    def stop(self, timeout=None):
        pass

    def wait_past(self, token, timeout):
        """As :meth:`~xorest.xapi.watcher.Watcher.wait_past`: until the daemon's batches
        reached past ``token`` in this worker's cache."""
        wanted = token_key(token)
        with self._applied:
            return self._applied.wait_for(lambda: self.token is not None and token_key(self.token) > wanted,
                                          timeout)

    def applied_up_to(self, token):
        with self._applied:
            self.token = token
            self._applied.notify_all()

    def update(self, state):
        status = state["status"]
        self.status.state, self.status.error = status["status"], status["error"]
        self.status.last_event, self.status.connected_since = status["lastEventTime"], status["connectedSince"]
        self.status.attempts = status["failedAttempts"]
        self.loaded_at, self.pool_uuid = state["loaded_at"], state["pool_uuid"]
        (self.synced.set if state["synced"] else self.synced.clear)()
        if state["first_attempt"]:
            self.first_attempt.set()

    def forget(self):
        """The daemon removed the pool: back to the state of a connection not yet tried."""
        self.update({"status": PoolStatus().to_dict(), "loaded_at": None, "pool_uuid": None,
                     "synced": False, "first_attempt": False})
        self.first_attempt.clear()
        with self._applied:
            self.token = None

    def lost(self, reason):
        """The daemon went away: the pool's objects are kept, its state says why."""
        self.status.state, self.status.error = "disconnected", reason
        self.synced.clear()


class FeedClient:
    """A worker's connection to its instance's pools daemon, kept open (reconnected when
    it drops), applying what it receives to the worker's cache.

    :param path: the daemon's socket.
    :param cache: the worker's :class:`~xorest.cache.ObjectCache`.
    """

    RETRY_SECONDS = 0.2

    def __init__(self, path, cache):
        self.path, self.cache = path, cache
        self._watchers = {}  # pool key -> FeedWatcher
        self._lock = threading.Lock()
        self._sock = None
        self._stop = threading.Event()
        self.ready = threading.Event()  # set once the first snapshots were applied
        self._answers = threading.Condition()
        self._reconciled = 0
        self._asked = 0
        self._sending = threading.Lock()  # request threads ask concurrently

    def watcher(self, key):
        """The :class:`FeedWatcher` of pool connection ``key`` (created on first use)."""
        with self._lock:
            return self._watchers.setdefault(key, FeedWatcher())

    def start(self):
        threading.Thread(target=self._run, name="pools-feed", daemon=True).start()
        return self

    def stop(self):
        self._stop.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def reconcile(self, timeout):
        """Ask the daemon to take the store's servers into account now; ``True`` once it
        did (and this worker has the states that followed), within ``timeout``."""
        with self._answers:
            self._asked += 1
            number = self._asked
        sock = self._sock
        if sock is None:
            return False
        try:
            with self._sending:
                _send_frame(sock, json.dumps({"reconcile": number}).encode())
        except OSError:
            return False
        with self._answers:
            return self._answers.wait_for(lambda: self._reconciled >= number, timeout)

    def _run(self):
        while not self._stop.is_set():
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(self.path)
            except OSError:
                sock.close()
                self._stop.wait(self.RETRY_SECONDS)
                continue
            self._sock = sock
            try:
                _send_frame(sock, json.dumps({"pid": os.getpid()}).encode())
                self._follow(sock)
            except (OSError, ConnectionError, EOFError, pickle.UnpicklingError) as exc:
                if not self._stop.is_set():
                    log.warning("the pools daemon went away (%s); reconnecting", exc)
            finally:
                self._sock = None
                sock.close()
                with self._lock:
                    for watcher in self._watchers.values():
                        watcher.lost("the pools daemon of this instance is not running")
            self._stop.wait(self.RETRY_SECONDS)

    def _follow(self, sock):
        fresh = set()  # pools of this connection: others were removed while it was down
        while True:
            frame = _recv_frame(sock)
            if len(frame) < _LARGE:
                self._handle(pickle.loads(frame), fresh)
                continue
            with memory.long_lived_objects():  # a pool's objects: millions of objects that all live
                message = pickle.loads(frame)
                del frame
                self._handle(message, fresh)
                del message
            memory.give_back()

    def _handle(self, message, fresh):
        """Apply one message of the daemon (``fresh``: the pools it described so far)."""
        kind, key = message[0], (message[1] if len(message) > 1 else None)
        if kind == "batch":
            _, _, upserts, deletes, reset = message
            self.cache.apply(key, upserts, deletes, reset)
        elif kind == "load":  # a stage of a pool's first load, mapped in parts (poolload)
            self.cache.load_pool(key, decode_objects(message[2]), final=message[3])
        elif kind == "load-abandoned":
            self.cache.abandon_load(key)
        elif kind == "token":
            self.watcher(key).applied_up_to(message[2])
        elif kind == "pool":
            fresh.add(key)
            self.watcher(key).update(message[2])
        elif kind == "snapshot":
            _, _, upserts, token = message
            self.cache.apply(key, upserts, (), reset=True)
            if token is not None:
                self.watcher(key).applied_up_to(token)
        elif kind == "gone":
            self.cache.remove_pool(key)
            # kept, not dropped: a connection made here for the same server before this
            # message arrived holds this watcher, and must see the new one's states
            self.watcher(key).forget()
        elif kind == "ready":
            for old in self.cache.pool_keys() - fresh:
                self.cache.remove_pool(old)
            self.ready.set()
        elif kind == "reconciled":
            with self._answers:
                self._reconciled = max(self._reconciled, message[1])
                self._answers.notify_all()
