"""Pool connections: servers from the store, one watcher each, records mapped into the cache.

Watchers start lazily in the serving process (after gunicorn forks, never before) and a
reconciler thread follows the store, so ``xorest server add/remove`` takes effect in a
running server without a restart.  Under ``xorest serve``, one process of the instance
(the pools daemon, :mod:`.poold`) watches and maps the pools, and its workers' caches are
fed from it (:mod:`.feed`): their connections only make calls.
"""
import logging
import os
import threading
import time

from .. import memory
from ..errors import NotFound, Unavailable
from ..xapi import XapiClient, XapiError, XapiUnreachable, Watcher
from ..xapi.watcher import token_key
from . import poolload
from .mapping import PoolMapper

log = logging.getLogger(__name__)

#: The entry of the store's pool writes that changes when servers are added, removed,
#: connected or disconnected (other processes then reconcile before they read).
SERVERS_CHANGED = "servers"


class PoolConnection:
    """One configured server: its XAPI clients, watcher and the records it maps.

    :param isolated_load: load the whole pool in a process of its own (:mod:`.poolload`)
        and take only what is kept: the hundreds of MiB a load decodes and drops are then
        another process's, not left scattered through this one's heap.
    """

    def __init__(self, server, cache, config, isolated_load=False):
        self.server = server
        self.key = server["id"]
        self.cache = cache
        self.mapper = PoolMapper()  # only the watcher thread changes it, under ``lock``
        self.lock = threading.RLock()  # a batch being applied, or the objects being read whole
        self.config = config
        self.isolated_load = isolated_load
        # Set when the connection is stopped: nothing of it reaches the cache after that
        # (a load or a batch still under way is dropped), and a load's process is killed.
        self.stopped = threading.Event()
        self.watcher = self._watcher()
        self.rpc = self._client()  # for request threads; the watcher's client blocks in event.from

    @property
    def records(self):
        """``ref -> (class, record)`` of the pool (the sweep reads them)."""
        return self.mapper.records

    @property
    def pool_uuid(self):
        return self.mapper.pool_uuid

    def _watcher(self):
        return Watcher(self._client(), self.on_batch, event_timeout=self.config.event_timeout,
                       max_delay=self.config.reconnect_max_delay, name=self.key[:8],
                       on_applied=self._applied,
                       load=self._load_isolated if self.isolated_load else None)

    def _applied(self, token):
        if not self.stopped.is_set():  # a stopped watcher's last event.from may still return
            self.cache.applied(self.key, token)

    def _client(self):
        server, config = self.server, self.config
        return XapiClient(server["url"], server["username"], server["password"],
                          ca_file=server.get("ca_file") or None, insecure=bool(server.get("insecure")),
                          timeout=(config.xapi_connect_timeout, config.xapi_read_timeout),
                          members=self.member_addresses)

    def member_addresses(self):
        """The pool's hosts' addresses, from the watched records (transfer redirects may
        lead there, nowhere else)."""
        return {record.get("address") for cls, record in list(self.records.values())
                if cls == "host" and record.get("address")}

    def start(self):
        self.watcher.start()
        return self

    def stop(self):
        """Stop following the pool: its objects leave the cache now, and nothing of it
        reaches the cache after.  Logging out of the pool and ending the watcher go on in
        threads, returned: a pool that no longer answers would hold whoever removed or
        disconnected it for each logout's timeout (10 s for a removal before)."""
        self.stopped.set()
        with self.lock:  # after any batch being published: the pool's removal comes last
            self.cache.remove_pool(self.key)
        # the watcher's thread is not waited for: whatever it still gets is dropped (stopped)
        return self._closing(lambda: self.watcher.stop(timeout=0), self.rpc.close)

    def _closing(self, *closes):
        """Run ``closes`` (each logs out of the pool) side by side, each in a thread of its
        own: against a pool that does not answer, each waits for its timeout."""
        def close(step):
            try:
                step()
            except Exception:  # a goodbye to a pool is never worth more than a line
                log.exception("closing the connection to %s failed", self.server["url"])
        threads = [threading.Thread(target=close, args=(step,), name=f"pool-close-{self.key[:8]}", daemon=True)
                   for step in closes]
        for thread in threads:
            thread.start()
        return threads

    def status(self):
        return self.watcher.status.to_dict()

    def pool_ref(self):
        return next((ref for ref, (cls, _) in list(self.records.items()) if cls == "pool"), None)

    def barrier(self, timeout):
        """Make sure this process's cache shows every change made so far through this pool:
        an event is injected on the pool object and waited for (XAPI delivers events in
        order).  Returns the event's token (for other processes to wait for), or ``None``
        when the wait was cut short."""
        ref = self.pool_ref()
        if ref is None:
            return None
        try:
            token = self.rpc.call("event.inject", "pool", ref)
        except (XapiError, XapiUnreachable) as exc:
            log.warning("pool %s: cannot inject an event to wait for (%s)", self.pool_uuid, exc)
            return None
        if not self.watcher.wait_past(token, timeout):
            log.warning("pool %s: its events are %g s late; reads may not show the last change yet",
                        self.pool_uuid, timeout)
        return token

    def on_batch(self, events, reset):
        """Apply XAPI events to the records, and what they map to to the cache."""
        with self.lock:
            if self.stopped.is_set():
                return
            upserts, deletes = self.mapper.apply(events, reset)
            self.cache.apply(self.key, upserts, deletes, reset)
        if reset:
            memory.settle_after_load()

    def _load_isolated(self, client):
        """The watcher's first load, done by a process of its own (:mod:`.poolload`):
        returns ``(token, objects loaded)``.  The workers get the objects as soon as they
        are mapped; the pool's lock is held from then until the mapper's state matches
        them, so a worker joining meanwhile waits for both."""
        held = False

        def publish(message):  # each stage of the load; the lock is taken at the first
            nonlocal held
            if not held:
                self.lock.acquire()
                held = True
            if not self.stopped.is_set():
                self.cache.publish(message)

        try:
            state, token, count = poolload.load(self.server, self.config, self.key, publish, cancelled=self.stopped)
            if not held:
                self.lock.acquire()
                held = True
            self.mapper = PoolMapper.from_state(state)
        finally:
            if held:
                self.lock.release()
        memory.settle_after_load()
        return token, count

    def current_objects(self):
        """``(id -> (collection, object), token)``: every object of the pool mapped from its
        records as they are now, and the ``event.from`` token they hold (what a process
        joining the pools daemon starts from)."""
        with self.lock:
            return self.mapper.current_objects(), self.watcher.token


class FedPoolConnection(PoolConnection):
    """A configured server as a worker of a ``xorest serve`` instance sees it: the pools
    daemon watches it and feeds this process's cache (:mod:`.feed`); this process only
    makes calls (actions, transfers) with its own XAPI client."""

    def __init__(self, server, cache, config, feed):
        self.feed = feed
        super().__init__(server, cache, config)

    def _watcher(self):
        return self.feed.watcher(self.key)

    @property
    def pool_uuid(self):
        return self.watcher.pool_uuid

    def _pool(self):
        return next((p for p in self.cache.snapshot().collection("pools").values()
                     if p["id"] == self.pool_uuid), None)

    def member_addresses(self):
        """The pool's hosts' addresses, from its host objects."""
        return {host.get("address") for host in self.cache.snapshot().collection("hosts").values()
                if host.get("$pool") == self.pool_uuid and host.get("address")}

    def pool_ref(self):
        pool = self._pool()
        return pool.get("_xapiRef") if pool else None

    def stop(self):
        # the pool's objects stay until the daemon says it is gone
        return self._closing(self.rpc.close)

    def on_batch(self, events, reset):
        raise RuntimeError("a worker's pools are fed by the pools daemon")


class PoolService:
    """All pool connections of this process.

    :param store: the store holding the servers.
    :param cache: the :class:`~xorest.cache.ObjectCache` to fill.
    """

    RECONCILE_SECONDS = 2.0

    def __init__(self, store, cache, config, feed=None, isolated_loads=False):
        self.store = store
        self.cache = cache
        self.config = config
        self.feed = feed  # a FeedClient: the pools are watched by this instance's pools daemon
        self.isolated_loads = isolated_loads  # first loads in processes of their own (the daemon)
        self._connections = {}
        self._lock = threading.Lock()
        self._reconciling = threading.Lock()  # the reconciler thread and requests (connect, add...)
        self._pid = None
        self._stop = threading.Event()
        self._initial, self._initial_done, self._started_at = [], False, 0.0
        self._servers_seen = None  # the SERVERS_CHANGED value this process reconciled for

    def connections(self):
        return list(self._connections.values())

    def ensure_started(self):
        """Start watchers in this process if not yet done (cheap; call on every request).

        :returns: ``True`` when this call started them.
        """
        if self._pid == os.getpid():
            return False
        with self._lock:
            if self._pid == os.getpid():
                return False
            self._connections = {}  # inherited from a parent process: not ours
            self._pid = os.getpid()
            if self.feed is not None:
                self.feed.start()
            self.reconcile()
            self._initial = list(self._connections.values())
            self._initial_done, self._started_at = False, time.monotonic()
            threading.Thread(target=self._reconcile_loop, name="pool-reconciler", daemon=True).start()
            return True

    def _reconcile_loop(self):
        while not self._stop.wait(self.RECONCILE_SECONDS):
            try:
                self.reconcile()
            except Exception:
                log.exception("reconciling servers failed")

    def reconcile(self):
        """Connect servers added to the store, disconnect removed or changed ones."""
        with self._reconciling:
            self._reconcile()

    def _reconcile(self):
        wanted = {s["id"]: s for s in self.store.list_servers(with_secrets=True) if s["enabled"]}
        for key in list(self._connections):
            conn = self._connections[key]
            if key not in wanted or wanted[key]["updated_at"] != conn.server["updated_at"]:
                log.info("server %s removed or changed, disconnecting", key)
                self._connections.pop(key).stop()
        for key, server in wanted.items():
            if key not in self._connections:
                log.info("connecting server %s (%s)", key, server["url"])
                if self.feed is None:
                    self._connections[key] = PoolConnection(server, self.cache, self.config,
                                                            self.isolated_loads).start()
                else:
                    self._connections[key] = FedPoolConnection(server, self.cache, self.config, self.feed)

    #: How long stopping the service waits for its connections to log out of their pools.
    CLOSE_WAIT = 10.0

    def stop(self):
        self._stop.set()
        closing = [thread for conn in list(self._connections.values()) for thread in conn.stop()]
        self._connections = {}
        deadline = time.monotonic() + self.CLOSE_WAIT
        for thread in closing:  # sessions left open would pile up on the pools at each restart
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.feed is not None:
            self.feed.stop()

    def statuses(self):
        """``server id -> status dict`` for the servers collection."""
        return {key: conn.status() | {"poolId": conn.pool_uuid}
                for key, conn in self._connections.items()}

    def connection_by_key(self, key):
        """The connection of the server ``key`` in this process, or ``None``."""
        return self._connections.get(key)

    def settle(self, connections):
        """After writes through ``connections``: wait until this process's cache shows
        them, and tell the other processes (through the store) to wait for them too
        before they answer a read.  Returns whether every wait completed in time."""
        complete = True
        for conn in connections:
            token = conn.barrier(self.config.sync_wait)
            if token is None:
                complete = False
                continue
            noted = self.store.pool_writes().get(conn.key)
            if noted is not None and conn.watcher.loaded_at is not None and conn.watcher.loaded_at > noted[1]:
                # this process reloaded the pool after that write: it is in every later
                # read, and its token may belong to numbers the pool restarted since
                self.store.forget_pool_write(conn.key, noted[0])
            self.store.note_pool_write(conn.key, token)
        return complete

    def servers_changed(self):
        """Servers were added, removed, connected or disconnected here: every process
        reconciles before its next read (instead of within seconds)."""
        self._reconcile_and_wait(time.monotonic() + self.config.sync_wait)
        self.store.note_pool_write(SERVERS_CHANGED, f"{time.time_ns():020d}")
        self._servers_seen = self.store.pool_writes().get(SERVERS_CHANGED, (None,))[0]

    def _reconcile_and_wait(self, deadline):
        """Reconcile now, and wait (until ``deadline``) for the first load of new pools:
        every connection not tried yet, whether this call or the reconciler thread just
        made it."""
        if self.feed is not None:  # the daemon connects them
            self.feed.reconcile(max(0.0, deadline - time.monotonic()))
        self.reconcile()
        for conn in list(self._connections.values()):
            conn.watcher.first_attempt.wait(max(0.0, deadline - time.monotonic()))

    def catch_up(self):
        """Before a read: wait (bounded by ``sync_wait``) until this process's cache shows
        what any process wrote through the pools, and knows the servers any process
        changed.  A pool that is not connected is not waited for: it is served from its
        cache, as always."""
        writes = self.store.pool_writes()
        if not writes:
            return
        deadline = time.monotonic() + self.config.sync_wait
        servers = writes.pop(SERVERS_CHANGED, (None,))[0]
        if servers is not None and servers != self._servers_seen and self._pid is not None:
            self._servers_seen = servers
            self._reconcile_and_wait(deadline)
        for key, (token, written_at) in writes.items():
            conn = self._connections.get(key)
            if conn is None or conn.watcher.status.state != "connected":
                continue
            loaded_at = conn.watcher.loaded_at
            if loaded_at is not None and loaded_at > written_at:
                # a full load started after the write holds it; and if the pool's event
                # numbers went back since (a restarted pool), the old token means nothing
                if conn.watcher.token is not None and token_key(token) > token_key(conn.watcher.token):
                    self.store.forget_pool_write(key, token)
                continue
            if not conn.watcher.wait_past(token, max(0.0, deadline - time.monotonic())):
                log.warning("pool %s: a write is not in this process's cache after %g s", conn.pool_uuid,
                            self.config.sync_wait)

    def connection_for(self, obj):
        """The connection serving an XO object (by its ``$pool``)."""
        for conn in self._connections.values():
            if conn.pool_uuid == obj.get("$pool"):
                if conn.watcher.status.state != "connected":
                    raise Unavailable(f"pool {conn.pool_uuid} is {conn.watcher.status.state}")
                return conn
        raise NotFound(f"no connected pool for {obj.get('id')}")

    def wait_first_attempts(self, timeout):
        """Wait (bounded) until the pools known at start-up finished their first load, or
        failed it: the first requests of a fresh process then see the pools, not empty
        lists.  Pools added later never make requests wait."""
        if self._initial_done:
            return True
        deadline = min(time.monotonic() + timeout, self._started_at + timeout)
        if self.feed is not None and not self.feed.ready.wait(max(0.0, deadline - time.monotonic())):
            return False
        for conn in self._initial:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not conn.watcher.first_attempt.wait(remaining):
                return False
        self._initial_done = True
        return True

    def wait_synced(self, timeout=30.0):
        """Wait until every connection completed its first load (tests, demo)."""
        for conn in list(self._connections.values()):
            if not conn.watcher.synced.wait(timeout):
                return False
        return True
