"""A protocol-faithful XAPI pool on loopback, for demos and tests.

Rule of this package: it imports nothing from the rest of xorest, and the gateway never
imports it (only ``xorest.cli`` does, lazily, and the tests).  The gateway talks to it
over HTTP exactly as it would to a real pool.
"""
import logging
import os
import random
import signal
import sys
import tempfile
import threading
import time

from . import datamodel, lifecycle
from .api import Sessions, XapiApi
from .disks import DiskStore
from .faults import Faults
from .operations import churn_step
from .population import PoolBuilder
from .rpc import RecordMemo
from .server import SimHTTPServer
from .state import Database
from .timing import Timing

log = logging.getLogger(__name__)

__all__ = ["Simulator", "run"]


class Simulator:
    """One simulated pool served on ``host:port`` (plus optional slave addresses).

    :param hosts: number of hosts in the pool.
    :param vms: number of user VMs.
    :param seed: makes records and disk contents reproducible.
    :param slaves: extra loopback addresses, same port: pool members, which answer
        ``HOST_IS_SLAVE`` to logins and serve transfers (an export of disks on a member's
        local storage is redirected there, as XAPI does).
    :param tls: serve HTTPS with a generated CA (its file is ``ca_path``).
    :param churn: random changes per second.
    :param jsonrpc: ``False`` answers ``/jsonrpc`` with XML-RPC, as hosts older than
        JSON-RPC support do (clients must fall back).
    :param pace: how long operations take, relative to a real pool's (``0``: instant;
        see :mod:`.timing`).
    """

    def __init__(self, host="127.0.0.1", port=0, *, hosts=3, vms=50, seed=1, username="root",
                 password="password", slaves=(), tls=False, churn=0.0, jsonrpc=True, pace=1.0):
        self.model = datamodel.load()
        self.seed = seed
        self.db = Database(self.model, datamodel.SERVED_CLASSES, random.Random(seed))
        self.disks = DiskStore(self.db, seed)
        self.pool_ref = PoolBuilder(self.db, self.disks, seed, hosts=hosts, vms=vms).build()
        lifecycle.refresh_all(self.db)
        self.sessions = Sessions(self.db, {username: password})
        self.stopping = threading.Event()
        self.timing = Timing(pace=pace)
        self.api = XapiApi(self.db, self.disks, self.model, self.sessions, host, self.timing, self.stopping)
        self.api.master_down, self.api.master_up = self._master_down, self._master_up
        self.down_until = 0.0  # the master is down (rebooting, off) until then: no API
        self.faults = Faults()
        self.xml_memo = RecordMemo()
        self.churn = churn
        self.jsonrpc = jsonrpc
        self.ca_path = None
        context = self._tls_context([host, *slaves]) if tls else None
        self.servers = [SimHTTPServer((host, port), self, "master", context)]
        port = self.servers[0].server_address[1]
        self.servers += [SimHTTPServer((addr, port), self, "slave", context) for addr in slaves]
        self.host, self.port = host, port
        self.addresses = {host, *slaves}  # hosts whose address is served here get redirects
        self.redirects = 0  # transfers sent to another host (302), for tests
        self.scheme = self.api.scheme = "https" if tls else "http"
        self._threads = []

    @property
    def url(self):
        return f"{self.scheme}://{self.host}:{self.port}"

    def master_ref(self):
        return self.db.tables["pool"][self.pool_ref]["master"]

    def _tls_context(self, names):
        import ssl

        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert(*names, "localhost")
        folder = tempfile.mkdtemp(prefix="xorest-sim-tls-")
        self.ca_path = os.path.join(folder, "ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        return context

    def start(self):
        """Serve in background threads; returns self once connections are accepted."""
        for server in self.servers:
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      name=f"sim-{server.role}", daemon=True)
            thread.start()
            self._threads.append(thread)
        thread = threading.Thread(target=self._churn_loop, name="sim-churn", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self):
        self.stopping.set()
        for server in self.servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _churn_loop(self):
        """About ``self.churn`` random changes per second; the rate may change at any time."""
        rng = random.Random(self.seed + 1)
        next_at = time.monotonic()
        while not self.stopping.is_set():
            if self.churn <= 0:
                self.stopping.wait(0.2)
                next_at = time.monotonic()
                continue
            with self.db.lock:
                churn_step(self.db, self.disks, rng)
                self.db.commit()
            next_at += 1.0 / self.churn
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stopping.wait(delay)
            elif delay < -1:
                next_at = time.monotonic()

    def _master_down(self, seconds):
        """The master stops (reboot, shutdown, toolstack restart): sessions end, and the
        API answers nothing for ``seconds`` (``None``: until it is powered on again)."""
        self.sessions.invalidate_all()
        self.down_until = time.monotonic() + (seconds if seconds is not None else float("inf"))

    def _master_up(self):
        self.down_until = 0.0

    def api_down(self):
        return time.monotonic() < self.down_until

    def summary(self):
        """Record counts per class and the current generation (admin endpoint, tests)."""
        with self.db.lock:
            return {"generation": self.db.generation, "redirects": self.redirects,
                    "counts": {cls: len(t) for cls, t in self.db.tables.items()}}


def run(listen="127.0.0.1:0", **options):
    """Foreground simulator for ``xorest sim``: one ready line, clean exit on SIGINT/SIGTERM."""
    host, _, port = listen.rpartition(":")
    sim = Simulator(host.strip("[]") or "127.0.0.1", int(port or 0), **options)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sim.start()
    if sim.ca_path:
        print(f"xapi simulator CA certificate: {sim.ca_path}", file=sys.stderr, flush=True)
    print(f"xapi simulator listening on {sim.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
