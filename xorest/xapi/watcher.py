"""Per-pool background thread: initial load, then XAPI's ``event.from`` loop, with resync.

Each batch is handed to ``on_batch(events, reset)`` in one call so the consumer can apply
it atomically.  ``reset=True`` means "this is the complete state": the consumer must drop
whatever the batch does not contain (objects deleted while disconnected).  On any
failure the watcher reports it, waits (exponential backoff with jitter) and resyncs.
"""
import logging
import random
import threading
import time

from .errors import XapiError, XapiUnreachable

log = logging.getLogger(__name__)

#: XAPI classes the gateway follows (metrics classes feed their owners' XO objects; Bond,
#: Certificate, GPU_group, VGPU, VGPU_type, VTPM, pool_update and host_patch records feed
#: fields of other objects).  XAPI ignores the classes it does not have (VTPM before 8.3).
WATCHED_CLASSES = ["pool", "host", "host_metrics", "VM", "VM_metrics", "VM_guest_metrics",
                   "VBD", "VDI", "SR", "PBD", "VIF", "network", "PIF", "PIF_metrics",
                   "task", "message", "SM", "PCI", "PGPU", "GPU_group", "VGPU", "VGPU_type",
                   "VTPM", "Certificate", "Bond", "pool_update", "host_patch"]


def token_key(token):
    """An ``event.from`` token (``"%020d,%020d"``: the database generation first) as a
    comparable tuple; tokens of other shapes compare as text."""
    try:
        return tuple(int(part) for part in str(token).split(","))
    except ValueError:
        return (str(token),)


class PoolStatus:
    """Connection state of one pool, as the ``servers`` collection shows it."""

    def __init__(self):
        self.state = "connecting"
        self.error = None
        self.last_event = None
        self.connected_since = None
        self.attempts = 0

    def to_dict(self):
        return {"status": self.state, "error": self.error, "lastEventTime": self.last_event,
                "connectedSince": self.connected_since, "failedAttempts": self.attempts}


class Watcher:
    """Keeps one pool's objects flowing into ``on_batch``.

    :param client: a :class:`~xorest.xapi.client.XapiClient` used only by this thread.
    :param on_batch: ``callable(events, reset)``; events are XAPI event structs.
    :param event_timeout: seconds ``event.from`` may block.
    :param max_delay: cap of the reconnection backoff.
    :param on_applied: ``callable(token)``, told each ``event.from`` token reached.
    :param load: ``callable(client) -> (token, count)`` doing the first load in place of
        ``event.from`` from the start into ``on_batch`` (its client is logged in).
    """

    def __init__(self, client, on_batch, *, event_timeout=30.0, max_delay=30.0, name="pool", on_applied=None,
                 load=None):
        self.client = client
        self.on_batch = on_batch
        self.on_applied = on_applied  # called with each token reached, after its batch
        self.load = load or self._load
        self.event_timeout = event_timeout
        self.max_delay = max_delay
        self.status = PoolStatus()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watcher-{name}", daemon=True)
        self.synced = threading.Event()  # set after each complete (re)load
        self.first_attempt = threading.Event()  # set once the first load succeeded or failed
        # The event.from token of the last batch applied, and who waits for it to pass
        # a write's token (reads that must see what was just written).
        self.token = None
        self._applied = threading.Condition()
        self.loaded_at = None  # wall-clock time the last full load started (it holds every older write)

    def start(self):
        self._thread.start()
        return self

    def wait_past(self, token, timeout):
        """Wait until a batch at or after ``token`` (from ``event.inject``) was applied;
        ``True`` if it was within ``timeout`` seconds."""
        wanted = token_key(token)
        with self._applied:
            return self._applied.wait_for(lambda: self.token is not None and token_key(self.token) > wanted,
                                          timeout)

    def _applied_up_to(self, token):
        if self.on_applied is not None:
            self.on_applied(token)
        with self._applied:
            self.token = token
            self._applied.notify_all()

    def stop(self, timeout=5.0):
        self._stop.set()
        self.client.close()
        self._thread.join(timeout)

    def _backoff(self):
        self.status.attempts += 1
        delay = min(self.max_delay, 0.25 * 2 ** min(self.status.attempts, 10))
        self._stop.wait(delay * random.uniform(0.5, 1.0))

    def _run(self):
        while not self._stop.is_set():
            try:
                self._session()
            except (XapiError, XapiUnreachable) as exc:
                self.first_attempt.set()
                if self._stop.is_set():
                    break
                self.status.state = "disconnected"
                self.status.error = str(exc)
                self.synced.clear()
                log.warning("pool %s: %s; reconnecting", self.client.url, exc)
                self._backoff()
            except Exception as exc:  # a bug in a consumer must not kill the watcher silently
                self.first_attempt.set()
                log.exception("pool %s: watcher failure", self.client.url)
                self.status.state = "disconnected"
                self.status.error = f"internal: {exc}"
                self._backoff()

    def _load(self, client):
        """The whole pool, as one reset batch: ``(token, objects loaded)``."""
        result = client.call("event.from", WATCHED_CLASSES, "", 0.0, timeout=(client.timeout[0], 300))
        self.on_batch(result["events"], True)
        return result["token"], len(result["events"])

    def _session(self):
        client = self.client
        client.session_ref = None
        client.login()
        read_timeout = (client.timeout[0], self.event_timeout + 30)
        started = time.time()
        token, count = self.load(client)
        self.loaded_at = started
        self._applied_up_to(token)
        now = time.time()
        self.status.state, self.status.error = "connected", None
        self.status.connected_since, self.status.last_event, self.status.attempts = now, now, 0
        self.synced.set()
        self.first_attempt.set()
        log.info("pool %s: loaded %d objects", client.url, count)
        while not self._stop.is_set():
            result = client.call("event.from", WATCHED_CLASSES, token, float(self.event_timeout),
                                 timeout=read_timeout)
            token = result["token"]
            if result["events"]:
                self.on_batch(result["events"], False)
                self.status.last_event = time.time()
            self._applied_up_to(token)
