"""A protocol-faithful XAPI pool on loopback, for demos and tests.

Rule of this package: it imports nothing from the rest of xorest, and the gateway never
imports it (only ``xorest.cli`` does, lazily, and the tests).  The gateway talks to it
over HTTP exactly as it would to a real pool.

Performance data (as xcp-rrdd serves it through xapi)
------------------------------------------------------
Every host serves the RRDs it holds: its own and those of the VMs running on it (the
master answers for itself).  Start the simulator with ``--slave 127.0.0.2 --slave
127.0.0.3 …`` (host N has the address 127.0.0.N) for every host to be reachable, or with
``--hosts 1``.  All need a session (``session_id`` in the query or a cookie) or Basic auth.

``GET /rrd_updates?start=S[&cf=AVERAGE|MIN|MAX][&interval=I][&host=true][&vm_uuid=U…][&json=true]``
    The rows of one archive from ``S`` on (negative: relative to the last update), newest
    first: the first archive whose step is at least ``I`` seconds and that still holds ``S``
    (else the longest).  Archives: 5 s × 120 rows, 60 s × 120, 3600 s × 168, 86400 s × 366,
    AVERAGE only (MIN and MAX too for steps above 5 s when the pool's
    ``other_config:create_min_max_in_new_VM_RRDs`` is ``true``).  ``host=true`` adds the
    host's RRD; ``vm_uuid`` (repeatable) keeps only those VMs.  XML (``<xport><meta><start>
    <step><end><rows><columns><legend><entry>CF:host|vm:UUID:NAME…</legend></meta><data><row>
    <t>…</t><v>…</v>…</row>…</data></xport>``) or, when the ``Accept`` header prefers
    ``application/json`` (``*/*`` does) or the query has a ``json`` key, JSON
    (``{"meta": {"start", "step", "end", "rows", "columns", "legend"}, "data": [{"t", "values"}]}``,
    every number a string as since XAPI 23.31).  400 without ``start``; 500 when no archive fits.
``GET /host_rrd[?json=true]``
    The host's whole RRD in rrdtool's dump layout (``<rrd><version>0003</version><step>5</step>
    <lastupdate>…<ds>…<rra><cf><pdp_per_row><params><xff><cdp_prep><database>``, oldest row
    first), HTTP/1.0, close-delimited.
``GET /vm_rrd?uuid=U[&json=true]``
    A running VM's RRD from the host it runs on; another host answers ``302`` to that host;
    the master keeps the RRD of a VM that stopped; ``404`` for a VM that never ran; ``400``
    without ``uuid``.

Host data sources: ``cpu0``… (one per ``host_cpu``), ``cpu_avg``, ``loadavg``, ``hostload``,
``running_vcpus``, ``running_domains``, ``memory_total_kib``, ``memory_free_kib``,
``memory_reclaimed``, ``memory_reclaimed_max``, ``pif_<eth0…|bond0>_rx``/``_tx``,
``pif_aggr_rx``/``_tx``, ``xapi_memory_usage_kib``, ``xapi_free_memory_kib``,
``xapi_live_memory_kib``, ``xapi_allocation_kib``, ``xapi_open_fds``, per attached SR
``read_<sr8>``, ``write_<sr8>``, ``read_latency_<sr8>``, ``write_latency_<sr8>``,
``io_throughput_read|write|total_<sr8>``, ``iops_read|write|total_<sr8>``, ``iowait_<sr8>``,
``inflight_<sr8>``, ``latency_<sr8>``, ``avgqu_sz_<sr8>``, ``Tapdisks_in_low_memory_mode``; on
the master ``pool_session_count``, ``pool_task_count``, ``pool_session_creation_rate``,
``pool_vgpu_migration_rate``; with HA ``statefile/<vdi>/latency``, ``network/latency``,
``xapi_healthcheck/latency``; with IntelliCache ``sr_<uuid>_cache_size|hits|misses``.
VM data sources: ``cpu0``… (one per vCPU), ``cpu_usage``, ``memory``, ``memory_target``,
``memory_internal_free`` (with a guest agent), ``vif_<device>_rx``/``_tx``, and per attached
disk ``vbd_<xvdX>_read``, ``_write``, ``_read_latency``, ``_write_latency``,
``_io_throughput_read|write|total``, ``_iops_read|write|total``, ``_iowait``, ``_inflight``,
``_latency``, ``_avgqu_sz``.  Not recorded until ``VM.record_data_source``: ``runstate_*``,
``runnable_any``, ``vif_N_rx_errors``/``_tx_errors`` (``pif_…_errors`` for hosts).  The
``host.``/``VM.get_data_sources``, ``record_data_source``, ``forget_data_source_archives``,
``query_data_source`` calls and ``host.get_servertime`` work as on XAPI.

Values are deterministic from the seed and the time, and follow the objects: a VM has data
only while it runs (NaN before it started and while halted), no CPU or I/O while paused;
hosts sum up what their VMs do.

Host plugins
------------
``host.call_plugin(host, "updater.py", fn, args)`` runs XCP-ng's updater plugin:
``check_update`` answers a JSON list of pending packages, each ``{"name", "version",
"release", "description", "changelog": {"date": epoch, "author", "description"} | null,
"url", "size", "license"}`` (``args.repos``: extra repositories, e.g. ``xcp-ng-testing``);
``update`` (``args.packages`` optional) installs them and answers ``{"stdout", "stderr",
"command", "returncode"}``; ``install``, ``query_installed``, ``get_proxies``.  Failures are
``["-1", message, details, backtrace]`` (``The updater plugin is busy (current operation:
…)`` included); ``UNKNOWN_XENAPI_PLUGIN_FUNCTION [fn]``; any other plugin is
``XENAPI_MISSING_PLUGIN [name]``.  The hosts of a pool wait for the same packages, released
after their last update; a host patched since it booted (``other_config:
rpm_patch_installation_time`` after ``boot_time``, Xen Orchestra's ``rebootRequired``) has none.

Alarms (perfmon)
----------------
Every 300 s perfmon reads each host's 60-second rows since its last pass and, for every
VM, host and SR whose ``other_config:perfmon`` holds a configuration (``<config><variable>
<name value="cpu_usage"/><alarm_trigger_level value="0.9"/></variable></config>``, perfmon's
defaults for the missing tags), raises an ``ALARM`` message (``cls`` VM/Host/SR, the object's
uuid, the variable's priority, default 3) when the value stays past its level for
``alarm_trigger_period``, then none for ``alarm_auto_inhibit_period``.  Body as perfmon writes
it: ``value: 0.970000\nconfig:\n<variable>\n\t<name value="cpu_usage"/>\n\t<alarm_trigger_level
value="0.9"/>\n</variable>\n``.  ``message.create``, ``destroy``, ``destroy_many``, ``get``
and ``get_since`` work as on XAPI.  A pool ``xorest sim`` builds is one that has been watched
for a while: the master, the shared SR and a few VMs carry perfmon configurations, and some
of those VMs have past ALARM messages (``XOREST_SIM_MONITORING=0``: none of this).

Admin endpoints (JSON)
----------------------
``POST /_sim/faults``, ``/_sim/churn`` ``{"rate"}``, ``/_sim/guest``, ``/_sim/sessions/invalidate``,
``GET /_sim/state``, and
``GET|POST /_sim/updates`` ``{"host": uuid (default every host), "updates": [package…],
"busy": "update" | "", "error": message | "", "reset": true}``: a host's pending list (given
objects are answered as they are) and updater faults; answers every host's state.
``POST /_sim/stats`` ``{"uuid": VM/host/SR uuid, "values": {data source: value}, "since": epoch
(default now - 600), "until": epoch (default never)}`` or ``{"uuid": …, "reset": true}``,
``{"reset": true}``: force data sources (a VM's ``cpu_usage``, a host's ``cpu_avg`` also
drive their ``cpuN``; an SR's ``physical_utilisation`` is a fraction); RRDs and perfmon see them.
``GET|POST /_sim/perfmon`` ``{"run": true, "interval": seconds (0: no timer), "default":
{"VM"|"Host"|"SR": configuration for objects without one}}``: a pass now over the last
``max(interval, 300)`` seconds, answering the alarms it raised.
``POST /_sim/alarm`` ``{"uuid": VM/host/SR uuid, "variable": "cpu_usage", "value": 0.97}``:
one ALARM at once, with the body perfmon writes for that variable of the object's
configuration (or a plain one at level 0.9); answers the message record and its ``ref``.
"""
import logging
import os
import random
import signal
import sys
import tempfile
import threading
import time

from . import calls, datamodel, lifecycle
from .api import Sessions, XapiApi
from .disks import DiskStore
from .faults import Faults
from .guests import GuestLifecycle
from .operations import churn_step
from .population import PoolBuilder
from .rpc import RecordMemo
from .server import SimHTTPServer
from .state import Database
from .perfmon import Perfmon
from .stats import Stats
from .timing import Timing
from .updates import Updates

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
    :param internals: also build the records of a real pool that earlier clients of the
        simulator did not expect (hidden VHD base copies, and what ``monitoring`` builds);
        ``xorest sim`` turns it on when ``XOREST_SIM_INTERNALS=1`` is set.
    :param monitoring: perfmon configurations on some VMs, the master and the shared SR, and
        past ALARM messages, as a pool watched for a while has them; ``xorest sim`` builds
        them unless ``XOREST_SIM_MONITORING=0`` is set (a pool no one has configured yet).
    :param perfmon_interval: seconds between perfmon's passes (0: none but those asked for).
    :param pace: how long operations take, relative to a real pool's (``0``: instant;
        see :mod:`.timing`).
    """

    def __init__(self, host="127.0.0.1", port=0, *, hosts=3, vms=50, seed=1, username="root",
                 password="password", slaves=(), tls=False, churn=0.0, jsonrpc=True, internals=False,
                 monitoring=False, perfmon_interval=300.0, pace=1.0):
        self.model = datamodel.load()
        self.seed = seed
        self.db = Database(self.model, datamodel.SERVED_CLASSES, random.Random(seed))
        self.disks = DiskStore(self.db, seed)
        builder = PoolBuilder(self.db, self.disks, seed, hosts=hosts, vms=vms, internals=internals,
                              monitoring=monitoring)
        self.pool_ref = builder.build()
        self.guests = GuestLifecycle(self.db, builder.agents)
        lifecycle.refresh_all(self.db)
        self.sessions = Sessions(self.db, {username: password})
        self.stopping = threading.Event()
        self.timing = Timing(pace=pace)
        self.api = XapiApi(self.db, self.disks, self.model, self.sessions, host, self.timing, self.stopping)
        self.api.master_down, self.api.master_up = self._master_down, self._master_up
        self.down_until = 0.0  # the master is down (rebooting, off) until then: no API
        self.stats = Stats(self.db, seed, sessions=lambda: len(self.sessions._sessions))
        self.updates = Updates(self.db, seed)
        self.api.plugins["updater.py"] = self.updates.plugin
        self.perfmon = Perfmon(self, interval=perfmon_interval)
        self.calls = calls.register(self)
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
        thread = threading.Thread(target=self.perfmon.loop, args=(self.stopping,), name="sim-perfmon", daemon=True)
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
        """Record counts per class, the current generation, the sessions following events
        and how many times each class's records were all sent (admin endpoint, tests)."""
        watching = {s for s in list(self.api.event_sessions) if self.sessions.is_valid(s)}
        with self.db.lock:
            return {"generation": self.db.generation, "redirects": self.redirects,
                    "counts": {cls: len(t) for cls, t in self.db.tables.items()},
                    "event_sessions": len(watching), "full_loads": dict(self.api.full_loads)}


def run(listen="127.0.0.1:0", **options):
    """Foreground simulator for ``xorest sim``: one ready line, clean exit on SIGINT/SIGTERM."""
    host, _, port = listen.rpartition(":")
    options.setdefault("internals", os.environ.get("XOREST_SIM_INTERNALS", "") not in ("", "0"))
    options.setdefault("monitoring", os.environ.get("XOREST_SIM_MONITORING", "1") not in ("", "0"))
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
