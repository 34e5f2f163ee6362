"""The WebSockets of ``/api/``, served by one thread per worker process.

A WebSocket is handed over by its request's thread once the handshake is done
(:meth:`Hub.adopt`), so an open connection costs a file descriptor and a few buffers, not
a gunicorn thread: idle clients (xo-cli's ``watch``, a browser's tab) cannot lock the REST
API out.  The hub's thread reads every connection (wsproto's framing), writes what is due
without ever blocking (each connection has a bounded output buffer), pings, applies the
time limits, and pushes the ``all`` notifications; calls run on a small pool of threads,
one call at a time per connection, in order.  When the worker stops, every client is
told so (close 1001) and the thread ends.

Limits (``XOREST_JSONRPC_*``): connections per worker (503 beyond), a message's size
(close 1009), time to sign in and idle time (close 1008 / 1001), and unread output: a
client that does not read its answers or notifications keeps at most about
``jsonrpc_max_buffer`` bytes here, then what it has not been sent is dropped and it is
closed with a reason (1008).
"""
import collections
import logging
import resource
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..services.jsonrpc import invalid_json, invalid_request

log = logging.getLogger(__name__)

TICK = 0.25  # how often the hub looks at its timers and at object changes
PING_SECONDS = 30.0  # Xen Orchestra's clients (and proxies) expect regular traffic
MAX_BATCH = 100
MAX_WAITING = 32  # messages of one client waiting for their call; beyond, its socket is not read
CLOSE_GRACE = 5.0  # seconds a closing connection has to take its close frame
STOP_GRACE = 2.0  # seconds a stopping worker gives its clients to take theirs
FD_RESERVE = 256  # file descriptors left for requests, pools and the store


class Connection:
    """One adopted WebSocket (its state is the hub thread's, except the session while a
    call runs)."""

    def __init__(self, sock, ws, session):
        self.sock, self.ws, self.session = sock, ws, session
        self.waiting = collections.deque()  # complete messages, in order
        self.parts, self.size = [], 0  # the message being received
        self.out, self.out_size, self.sent = collections.deque(), 0, 0  # frames to send; bytes of out[0] sent
        self.busy = False  # a call of this connection is running
        self.opened = self.last_heard = self.last_ping = time.monotonic()
        self.closing_until = None  # a close frame is queued: the connection ends by then
        self.events = 0  # what the selector watches

    @property
    def address(self):
        return self.session.address


class Hub:
    """Every WebSocket of this process: adopted, read, written, timed, closed.

    :param config: the instance's :class:`~xorest.config.Config`.
    :param stopping: tells whether the worker is stopping (gunicorn, see ``serve.py``).
    """

    def __init__(self, config, stopping):
        self.config = config
        self.stopping = stopping
        self.max_connections = _descriptor_bound(config.jsonrpc_max_connections)
        self.ping_seconds = min(PING_SECONDS, config.jsonrpc_idle_timeout / 3)
        self.selector = selectors.DefaultSelector()
        self.connections = set()
        self._lock = threading.Lock()
        self._reserved = 0  # connections counted: adopted, or being handed over
        self._handed, self._answers = [], []  # from other threads, for the hub's thread
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.calls = ThreadPoolExecutor(config.jsonrpc_call_threads, thread_name_prefix="jsonrpc-call")
        # Not a daemon: a stopping worker waits for it to close its clients properly.
        self.thread = threading.Thread(target=self._run, name="jsonrpc-websockets")
        self.thread.start()

    # from request threads ------------------------------------------------------------

    def reserve(self):
        """Count one more connection, or ``False`` when the worker holds its limit."""
        with self._lock:
            if self._reserved >= self.max_connections or not self.thread.is_alive():
                return False
            self._reserved += 1
            return True

    def release(self):
        with self._lock:
            self._reserved -= 1

    def adopt(self, sock, ws, session):
        """Take over a connection whose handshake is done (``reserve`` was called)."""
        sock.setblocking(False)
        with self._lock:
            self._handed.append(Connection(sock, ws, session))
        self._wake()

    def _wake(self):
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake

    # the hub's thread ------------------------------------------------------------------

    def _run(self):
        log.info("WebSockets at /api/: at most %d per worker, served by one thread", self.max_connections)
        last_tick = 0.0
        try:
            while not self.stopping() and threading.main_thread().is_alive():
                touched = set()
                for key, mask in self.selector.select(TICK):
                    if key.data is None:
                        self._drain_wake()
                        continue
                    conn = key.data
                    touched.add(conn)
                    if mask & selectors.EVENT_READ:
                        self._read(conn)
                    if mask & selectors.EVENT_WRITE and conn in self.connections:
                        self._flush(conn)
                self._take_handed()
                touched.update(self._take_answers())
                now = time.monotonic()
                tick = now - last_tick >= TICK
                if tick:  # timers and notifications: every connection, a few times a second
                    last_tick = now
                    for conn in list(self.connections):
                        self._timers(conn, now)
                for conn in list(self.connections) if tick else touched:
                    if conn in self.connections:
                        self._schedule(conn, notify=tick)
        except Exception:
            log.exception("the WebSocket thread failed: closing every WebSocket")
        finally:
            self._shut_down()

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _take_handed(self):
        with self._lock:
            handed, self._handed = self._handed, []
        for conn in handed:
            self.connections.add(conn)
            self._watch(conn)

    def _take_answers(self):
        with self._lock:
            answers, self._answers = self._answers, []
        for conn, text in answers:
            conn.busy = False
            if conn in self.connections and text is not None:
                self._send_text(conn, text)
        return [conn for conn, _ in answers]

    def _watch(self, conn):
        """Watch for reads unless too many messages wait; for writes while output waits."""
        events = 0
        if conn.closing_until is not None or len(conn.waiting) < MAX_WAITING:
            events |= selectors.EVENT_READ
        if conn.out:
            events |= selectors.EVENT_WRITE
        if events == conn.events:
            return
        try:
            if conn.events == 0:
                self.selector.register(conn.sock, events, conn)
            elif events == 0:
                self.selector.unregister(conn.sock)
            else:
                self.selector.modify(conn.sock, events, conn)
        except (KeyError, ValueError, OSError):
            self._drop(conn)
            return
        conn.events = events

    # reading -------------------------------------------------------------------------

    def _read(self, conn):
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        conn.last_heard = time.monotonic()
        try:
            conn.ws.receive_data(data)
            for event in conn.ws.events():
                self._on(conn, event)
                if conn not in self.connections:
                    return
        except RemoteProtocolError as exc:
            self._close(conn, 1002, str(exc))
        except LocalProtocolError:
            self._drop(conn)
            return
        self._watch(conn)

    def _on(self, conn, event):
        if isinstance(event, (TextMessage, BytesMessage)):
            if conn.closing_until is not None:
                return
            conn.size += len(event.data)
            if conn.size > self.config.jsonrpc_max_message:
                self._close(conn, 1009, f"message larger than {self.config.jsonrpc_max_message} bytes")
                return
            conn.parts.append(event.data if isinstance(event.data, str)
                              else bytes(event.data).decode("utf-8", "replace"))
            if event.message_finished:
                conn.waiting.append("".join(conn.parts))
                conn.parts, conn.size = [], 0
        elif isinstance(event, Ping):
            self._send(conn, event.response())
        elif isinstance(event, CloseConnection):
            if conn.closing_until is None:
                self._send(conn, event.response())
                conn.closing_until = time.monotonic() + CLOSE_GRACE
            if not conn.out:
                self._drop(conn)
        elif isinstance(event, Pong):
            pass  # heard: last_heard is already updated

    # calls and notifications --------------------------------------------------------------

    def _schedule(self, conn, notify):
        """Start the connection's next call, or send its notifications (``notify``)."""
        if conn.busy or conn.closing_until is not None:
            return
        if conn.waiting:
            conn.busy = True
            text = conn.waiting.popleft()
            try:
                self.calls.submit(self._call, conn, text)
            except RuntimeError:  # shutting down
                conn.busy = False
                return
            self._watch(conn)
        elif notify and conn.session.due():
            try:
                notifications = conn.session.updates()
            except Exception:
                log.exception("notifications of the WebSocket from %s failed", conn.address)
                notifications = []
            for params in notifications:
                self._send_text(conn, _dumps({"jsonrpc": "2.0", "method": "all", "params": params}))
                if conn not in self.connections or conn.closing_until is not None:
                    return

    def _call(self, conn, text):
        """In a call thread: the answer to one message, handed back to the hub."""
        try:
            answer = _answer(conn.session, text)
            text = None if answer is None else _dumps(answer)
        except Exception:  # the session answers errors itself: this is a bug, not the client's
            log.exception("JSON-RPC message from %s failed", conn.address)
            text = _dumps({"jsonrpc": "2.0", "id": None,
                           "error": {"code": -32000, "message": "unknown error from the peer"}})
        with self._lock:
            self._answers.append((conn, text))
        self._wake()

    # writing -------------------------------------------------------------------------

    def _send_text(self, conn, text):
        if conn.out_size > self.config.jsonrpc_max_buffer:
            self._overflow(conn)
            return
        self._send(conn, TextMessage(data=text))

    def _send(self, conn, event):
        try:
            data = conn.ws.send(event)
        except LocalProtocolError:  # the connection is closing: nothing more goes out
            return
        if data:
            conn.out.append(data)
            conn.out_size += len(data)
            self._flush(conn)

    def _flush(self, conn):
        while conn.out:
            first = conn.out[0]
            try:
                sent = conn.sock.send(memoryview(first)[conn.sent:])
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(conn)
                return
            conn.sent += sent
            if conn.sent < len(first):
                break
            conn.out.popleft()
            conn.out_size -= len(first)
            conn.sent = 0
        if not conn.out and conn.closing_until is not None and conn.ws.state.name == "CLOSED":
            self._drop(conn)
            return
        self._watch(conn)

    def _overflow(self, conn):
        """A client that does not read: what it was not sent yet is dropped (whole frames:
        the one being sent is finished), and it is closed with the reason."""
        limit = self.config.jsonrpc_max_buffer
        while len(conn.out) > 1:
            conn.out_size -= len(conn.out.pop())
        log.warning("closing the WebSocket from %s: it left more than %d bytes unread", conn.address, limit)
        self._close(conn, 1008, f"too slow: more than {limit} bytes of answers and notifications unread")

    # timers and ends -----------------------------------------------------------------------

    def _timers(self, conn, now):
        config = self.config
        if conn.closing_until is not None:
            if now > conn.closing_until:
                self._drop(conn)
        elif now - conn.last_heard > config.jsonrpc_idle_timeout:
            self._close(conn, 1001, f"idle: nothing from the client for {config.jsonrpc_idle_timeout:g} s")
        elif not conn.session.signed_in and now - conn.opened > config.jsonrpc_signin_timeout:
            self._close(conn, 1008, f"not signed in within {config.jsonrpc_signin_timeout:g} s")
        elif now - conn.last_ping > self.ping_seconds:
            conn.last_ping = now
            self._send(conn, Ping())

    def _close(self, conn, code, reason):
        """Send a close frame with ``reason``; the connection ends once the client took it
        (or answered), or after :data:`CLOSE_GRACE`."""
        if conn.closing_until is not None or conn not in self.connections:
            return
        log.info("closing the WebSocket from %s: %s", conn.address, reason)
        conn.waiting.clear()
        self._send(conn, CloseConnection(code=code, reason=reason))
        conn.closing_until = time.monotonic() + CLOSE_GRACE
        if conn in self.connections:
            self._watch(conn)

    def _drop(self, conn):
        """End a connection now (its socket closed, its place freed)."""
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        if conn.events:
            try:
                self.selector.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
        try:
            conn.sock.close()
        except OSError:
            pass
        self.release()

    def _shut_down(self):
        """The worker stops: every client is told (1001), given a moment, and dropped."""
        self._take_handed()
        for conn in list(self.connections):
            self._close(conn, 1001, "the server is shutting down")
        deadline = time.monotonic() + STOP_GRACE
        while any(conn.out for conn in self.connections) and time.monotonic() < deadline:
            for key, mask in self.selector.select(0.1):
                if key.data is not None and mask & selectors.EVENT_WRITE and key.data in self.connections:
                    self._flush(key.data)
        for conn in list(self.connections):
            self._drop(conn)
        self.calls.shutdown(wait=False, cancel_futures=True)
        self.selector.close()
        log.info("WebSockets at /api/: closed")


def _dumps(value):
    return orjson.dumps(value).decode("utf-8")


def _answer(session, text):
    """The answer to one message (a request, a notification or a batch), or ``None``."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"jsonrpc": "2.0", "id": None, "error": invalid_json().to_dict()}
    if isinstance(message, list):
        if not message or len(message) > MAX_BATCH:
            return {"jsonrpc": "2.0", "id": None,
                    "error": invalid_request(f"a batch holds 1 to {MAX_BATCH} requests").to_dict()}
        answers = [session.handle(item) for item in message]
        return [answer for answer in answers if answer is not None] or None
    return session.handle(message)


def _descriptor_bound(wanted):
    """``wanted`` connections, or fewer if the process may not open that many files (the
    soft limit is raised to the hard one first when needed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        bound = max(1, soft - FD_RESERVE)
        log.warning("at most %d WebSockets per worker instead of %d: the process may open %d files", bound,
                    wanted, soft)
        return bound
    return wanted
