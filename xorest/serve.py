"""Running the app under gunicorn with settings suited to hour-long streams.

:class:`Worker` is gunicorn's threaded worker with three additions a gateway facing
scripts needs: a request head must arrive within ``XOREST_CLIENT_HEAD_TIMEOUT`` (a
client trickling its headers cannot hold a thread), a client silent for
``XOREST_CLIENT_TIMEOUT`` while sending a body or receiving an answer is dropped, and
gunicorn's own error pages (400, 414, 431...) are JSON like every other error.
"""
import errno
import json
import logging
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from gunicorn import glogging, util
from gunicorn.app.base import BaseApplication
from gunicorn.workers import gthread
from gunicorn.workers.gthread import ThreadWorker

from . import config as config_module
from .errors import ClientTimeout
from .logs import configure as configure_logging, make_safe

log = logging.getLogger(__name__)

#: gthread workers heartbeat while a thread streams; ``timeout`` is liveness, not duration.
GUNICORN_SETTINGS = {
    "worker_class": "xorest.serve.Worker",
    "logger_class": "xorest.serve.Logger",
    "workers": min(4, max(2, multiprocessing.cpu_count())),
    "threads": 32,  # >= concurrent exports + headroom: each export holds a thread
    "timeout": 30,
    "graceful_timeout": 3600,  # reloads let running exports finish
    "max_requests": 0,  # never recycle a worker in the middle of a stream
    "keepalive": 75,
    # 0 lifts gunicorn's 8190-byte cap (its maximum otherwise): a filter of
    # filter.MAX_LENGTH characters, percent-encoded, needs up to 12 bytes each.  The head
    # is still bounded, by Worker's head deadline and the header limits below, and by
    # nginx (large_client_header_buffers) in the shipped deployment.
    "limit_request_line": 0,
    "limit_request_fields": 100,
    "limit_request_field_size": 16384,
    # X-Forwarded-* are trusted by the app only from XOREST_TRUSTED_PROXIES; gunicorn's own
    # default would believe them from any loopback client.
    "forwarded_allow_ips": "",
    "secure_scheme_headers": {},
    "control_socket_disable": True,
    # Unix sockets (the recommended bind behind nginx) open to the owner and group only.
    "umask": 0o007,
    "post_worker_init": lambda worker: start_services(worker.wsgi),
    # the workers' Prometheus values: one private folder per master, their sum is the instance's
    "on_starting": lambda server: prepare_metrics_folder(),
    "child_exit": lambda server, worker: forget_worker_metrics(worker.pid),
    "on_exit": lambda server: remove_metrics_folder(),
    "accesslog": "-",
    # The path, never the query string (short lines; filters are not for the access log).
    "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(L)ss',
}

#: The largest request head read (the request line, with a filter's worst case, and the
#: headers gunicorn's limits allow); beyond it the client gets a 431.
MAX_HEAD = 64 * 1024 + 100 * 16384


def start_services(app):
    """Connect the pools as soon as a worker boots (after the fork), before any request."""
    services = getattr(app, "extensions", {}).get("xorest")
    if services is not None:
        services.start()


_metrics_folder = None


def prepare_metrics_folder():
    """In gunicorn's master, before any worker: a new, empty, private folder (0700) where the
    workers write their Prometheus values (``/rest/v0/metrics`` adds them up).  A folder of
    our own, never one inherited from the environment: values left by another run would
    be counted as this one's."""
    global _metrics_folder
    _metrics_folder = tempfile.mkdtemp(prefix="xorest-metrics-")
    os.environ[config_module.PROMETHEUS_MULTIPROC_VARIABLE] = _metrics_folder


def forget_worker_metrics(pid):
    """A worker exited: its gauges of things under way (transfers, streams) no longer count;
    its counters still do (they are part of the instance's totals)."""
    if _metrics_folder:
        from prometheus_client import multiprocess  # in the master only once workers exist

        multiprocess.mark_process_dead(pid, _metrics_folder)


def remove_metrics_folder():
    if _metrics_folder:
        shutil.rmtree(_metrics_folder, ignore_errors=True)


class PoolsDaemon:
    """The instance's pools daemon (:mod:`xorest.services.poold`), a child of gunicorn's
    master: started before the workers, which find its socket in ``XOREST_POOLS_SOCKET``,
    restarted if it dies, stopped with the master.  Its socket lives in a private
    temporary directory (short: Unix socket paths are limited to 107 bytes)."""

    RESTART_DELAY = 1.0

    def __init__(self):
        self.folder = self.path = self.process = None
        self._stopping = threading.Event()

    def start(self, arbiter=None):
        self.folder = tempfile.mkdtemp(prefix="xorest-")  # 0700
        self.path = os.path.join(self.folder, "pools.sock")
        os.environ["XOREST_POOLS_SOCKET"] = self.path  # the workers, forked later, read it
        self._spawn()
        threading.Thread(target=self._supervise, name="pools-daemon", daemon=True).start()

    def _spawn(self):
        env = {key: value for key, value in os.environ.items() if key != "XOREST_POOLS_SOCKET"}
        self.process = subprocess.Popen([sys.executable, "-m", "xorest", "poold", self.path], env=env)

    def _supervise(self):
        while not self._stopping.is_set():
            code = self.process.wait()
            if self._stopping.wait(self.RESTART_DELAY):
                return
            log.error("the pools daemon exited (%s); starting it again", code)
            self._spawn()

    def stop(self, arbiter=None):
        self._stopping.set()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


#: Workers of an instance with a pools daemon: each holds every pool's objects (about
#: 200 MiB per 10,000 VMs), and the daemon does the pools' work on a core of its own.
DAEMON_WORKERS = 1


def gunicorn_settings(pools_daemon=None):
    """:data:`GUNICORN_SETTINGS` for one instance; with the pools daemon (by default as
    ``XOREST_POOLS_DAEMON`` says) its hooks, and :data:`DAEMON_WORKERS` workers."""
    if pools_daemon is None:
        pools_daemon = config_module.load().pools_daemon
    settings = dict(GUNICORN_SETTINGS)
    if pools_daemon:
        daemon, starting, exiting = PoolsDaemon(), settings["on_starting"], settings["on_exit"]
        settings.update(workers=DAEMON_WORKERS,
                        on_starting=lambda server: (starting(server), daemon.start(server)),
                        on_exit=lambda server: (daemon.stop(server), exiting(server)))
    return settings


class GunicornServer(BaseApplication):
    """gunicorn with :data:`GUNICORN_SETTINGS`, overridden by the ``options`` that are set
    (``None`` means "not given": the default stays); with ``pools_daemon``, the pools are
    watched by one process of the instance (:class:`PoolsDaemon`), not by each worker."""

    def __init__(self, app_factory, options=None, pools_daemon=None):
        self.app_factory = app_factory
        given = {key: value for key, value in (options or {}).items() if value is not None}
        self.options = {**gunicorn_settings(pools_daemon), **given}
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        return self.app_factory()


# --- the worker ----------------------------------------------------------------------

class ClientSocket:
    """A client connection with time limits on what the client owes us.

    While a request head is due (``head_deadline`` set), reads wait at most until the
    deadline, and a head that does not make it gets a 408 and the connection closes.
    Afterwards the socket's own timeout applies (the idle timeout the worker sets; an
    export raises it): a body read that waits longer raises :class:`ClientTimeout`, a
    write that waits longer ends the connection.
    """

    def __init__(self, sock, peer):
        self._sock = sock
        self.peer = peer
        self.head_deadline = None
        self.head_bytes = 0

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def recv(self, size, flags=0):
        if self.head_deadline is None:
            try:
                return self._sock.recv(size, flags)
            except TimeoutError:
                raise ClientTimeout(f"the client sent nothing for {self._sock.gettimeout():g} s") from None
        if self.head_bytes > MAX_HEAD:
            return self._refuse(431, "Request Header Fields Too Large",
                                f"the request head is larger than {MAX_HEAD} bytes")
        left = self.head_deadline - time.monotonic()
        if left <= 0:
            return self._late()
        self._sock.settimeout(left)
        try:
            data = self._sock.recv(size, flags)
        except TimeoutError:
            return self._late()
        self.head_bytes += len(data)
        return data

    def _late(self):
        return self._refuse(408, "Request Timeout", "the request head did not arrive in time")

    def _refuse(self, status, reason, message):
        """Answer ``status`` and let gunicorn see the end of the connection."""
        log.info("refused the request head from %s: %s", _peer(self.peer), message)
        try:
            self._sock.setblocking(False)
            self._sock.send(_json_error_bytes(status, reason, message))
        except OSError:
            pass
        self.head_deadline = time.monotonic()  # whatever follows is refused too
        return b""

    def sendall(self, data, flags=0):
        try:
            return self._sock.sendall(data, flags)
        except TimeoutError:
            log.warning("client %s stopped reading for %g s; closing", _peer(self.peer), self._sock.gettimeout())
            raise BrokenPipeError(errno.EPIPE, "the client stopped reading") from None

    def send(self, data, flags=0):
        return self._sock.send(data, flags)

    def detach(self):
        """Hand the connection over to the app (a WebSocket served by one thread of its
        own for all of them): the request's thread is free at once, and gunicorn's end
        of the request closes an unconnected stand-in, not the connection."""
        sock, self._sock = self._sock, socket.socket()
        return sock


def _peer(peer):
    return peer[0] if isinstance(peer, tuple) else (peer or "unix socket")


def _json_error_bytes(status, reason, message):
    body = json.dumps({"error": message[:300]}).encode("utf-8")
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's error page (``util.write_error``), as JSON."""
    util.write_nonblock(sock, _json_error_bytes(status_int, reason, mesg or reason))


class Worker(ThreadWorker):
    """gunicorn's gthread worker with client time limits and JSON error pages."""

    def init_process(self):
        settings = config_module.load()
        self.head_timeout = settings.client_head_timeout
        self.idle_timeout = settings.client_timeout
        configure_logging(settings.log_level)
        util.write_error = write_json_error  # gunicorn's base worker calls it for its own errors
        super().init_process()

    def handle(self, conn):
        # gunicorn would wait up to 5 s in this thread for a new connection's first bytes:
        # clients that connect and say nothing would hold every thread.  The poller waits
        # for them instead (see finish_request for how long).
        if not conn.initialized and not conn.data_ready and not conn.wait_for_data(0):
            return gthread._DEFER
        if not isinstance(conn.sock, ClientSocket):
            conn.sock = ClientSocket(conn.sock, conn.client)
        conn.sock.head_deadline = time.monotonic() + self.head_timeout
        conn.sock.head_bytes = 0
        # Long-lived answers (task watchers) end when the worker is asked to stop: a
        # graceful reload waits for running requests, and a watcher would never end.
        conn.sock.stopping = lambda: not self.alive
        return super().handle(conn)

    def finish_request(self, conn, fs):
        super().finish_request(conn, fs)
        if self.pending_conns and self.pending_conns[-1] is conn:
            # a connection that has sent nothing yet is dropped after the head timeout, not
            # after keep-alive's (every pending one gets the same delay: the queue stays in order)
            conn.timeout = min(conn.timeout, time.monotonic() + self.head_timeout)

    def handle_request(self, req, conn):
        conn.sock.head_deadline = None
        conn.sock.settimeout(self.idle_timeout)
        return super().handle_request(req, conn)


class Logger(glogging.Logger):
    """gunicorn's logger, with control characters escaped in its error and access logs."""

    def setup(self, cfg):
        super().setup(cfg)
        make_safe(self.error_log.handlers + self.access_log.handlers)


__all__ = ["GUNICORN_SETTINGS", "DAEMON_WORKERS", "GunicornServer", "PoolsDaemon", "Worker", "Logger", "gunicorn_settings"]
