"""The pools' metrics for Prometheus: each running host's and VM's latest RRD values, read
by one collector per instance every ``XOREST_METRICS_INTERVAL`` and shared with every worker.

Scrapes never reach XAPI: they render what the last reading left.  One reading per instance,
not per worker: each worker has its own connections, and a host's ``/rrd_updates`` with
``host=true`` and no ``vm_uuid`` (the host and every VM it runs, in one answer, as Xen
Orchestra's own stats use it) is large on a host of thousands of VMs.  The workers of an
instance share its data directory; the one holding an exclusive ``flock`` on
``metrics/collector.lock`` reads the hosts (the kernel drops the lock with its process, so
another worker takes over within an interval), then replaces ``metrics/pools.prom`` (the
series, rendered once for unscoped scrapes) and ``metrics/pools.json`` (the same samples, for
scoped tokens) by renaming new files over them: a reader sees a whole file, old or new.

Values are Xen Orchestra's stats (:mod:`.statkeys`: which data source is what) of the
newest row of the hosts' 5-second archive, in Prometheus' base units (ratios, bytes,
seconds).  Series carry ``pool``, ``host`` and ``vm`` (uuids) and their ``*_name`` labels.
"""
import fcntl
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass

from ..errors import UpstreamError
from ..xapi import XapiError, XapiUnreachable
from . import statkeys
from .exposition import gauge_family, render

log = logging.getLogger(__name__)

#: The archive read: the newest row of the 5-second one (what ``granularity=seconds`` shows).
STEP = 5
#: Rows asked for: the newest may not be filled yet on every data source.
ROWS = 3
#: Pool series older than this many intervals (and this many seconds) are not served: their
#: collector is stuck or gone, and Prometheus would take them for today's.
STALE_INTERVALS, STALE_SECONDS = 4, 60.0


@dataclass(frozen=True)
class Family:
    """A Prometheus family of a stats key (:mod:`.statkeys`): its ``device`` label names the
    per-device level (``cpus.<n>`` -> ``cpu``); ``scale`` turns Xen Orchestra's unit into
    Prometheus' base one (percent -> ratio, ms -> s)."""

    name: str
    help: str
    device: str = None
    scale: float = 1.0


RATIO, SECONDS = 0.01, 0.001
#: kind -> stats key (without its device level) -> family.  Keys not listed are not exported.
FAMILIES = {
    "host": {
        ("cpus",): Family("xen_host_cpu_usage_ratio", "busy fraction of each physical CPU", "cpu", RATIO),
        ("load",): Family("xen_host_load_average", "the host's load average (loadavg)"),
        ("memory",): Family("xen_host_memory_total_bytes", "the host's memory"),
        ("memoryFree",): Family("xen_host_memory_free_bytes", "the host's free memory"),
        ("pifs", "rx"): Family("xen_host_network_receive_bytes_per_second", "received by each PIF (eth<n>)", "pif"),
        ("pifs", "tx"): Family("xen_host_network_transmit_bytes_per_second", "sent by each PIF (eth<n>)", "pif"),
        ("ioThroughput", "r"): Family("xen_host_disk_read_bytes_per_second", "read from each SR (first 8 "
                                      "characters of its uuid)", "sr"),
        ("ioThroughput", "w"): Family("xen_host_disk_write_bytes_per_second", "written to each SR", "sr"),
        ("iops", "r"): Family("xen_host_disk_read_iops", "read operations per second on each SR", "sr"),
        ("iops", "w"): Family("xen_host_disk_write_iops", "write operations per second on each SR", "sr"),
        ("latency", "r"): Family("xen_host_disk_read_latency_seconds", "read latency on each SR", "sr", SECONDS),
        ("latency", "w"): Family("xen_host_disk_write_latency_seconds", "write latency on each SR", "sr", SECONDS),
    },
    "vm": {
        ("cpus",): Family("xen_vm_cpu_usage_ratio", "busy fraction of each vCPU", "cpu", RATIO),
        ("memory",): Family("xen_vm_memory_bytes", "memory given to the VM"),
        ("memoryFree",): Family("xen_vm_memory_free_bytes", "free memory as its guest agent reports it"),
        ("memoryTarget",): Family("xen_vm_memory_target_bytes", "the VM's memory target"),
        ("vifs", "rx"): Family("xen_vm_network_receive_bytes_per_second", "received by each VIF", "vif"),
        ("vifs", "tx"): Family("xen_vm_network_transmit_bytes_per_second", "sent by each VIF", "vif"),
        ("xvds", "r"): Family("xen_vm_disk_read_bytes_per_second", "read from each disk (xvd<device>)", "device"),
        ("xvds", "w"): Family("xen_vm_disk_write_bytes_per_second", "written to each disk", "device"),
        ("iops", "r"): Family("xen_vm_disk_read_iops", "read operations per second on each disk", "device"),
        ("iops", "w"): Family("xen_vm_disk_write_iops", "write operations per second on each disk", "device"),
        ("vbdLatency", "r"): Family("xen_vm_disk_read_latency_seconds", "read latency of each disk", "device",
                                    SECONDS),
        ("vbdLatency", "w"): Family("xen_vm_disk_write_latency_seconds", "write latency of each disk", "device",
                                    SECONDS),
    },
}
#: The labels of a host's and a VM's series (before the device label).
LABELS = {"host": ("pool", "pool_name", "host", "host_name"),
          "vm": ("pool", "pool_name", "host", "host_name", "vm", "vm_name")}
#: Where the owner's uuid is among a kind's labels (scoped tokens see their objects' series).
OWNER = {"host": ("hosts", 2), "vm": ("vms", 4)}
HOST_UP = Family("xen_host_rrd_up", "1 when the host's RRDs were read at the last collection, else 0")
HOST_TIME = Family("xen_host_rrd_timestamp_seconds", "the time of the newest RRD row read from the host")


def _family_of(kind, keys):
    """``(Family, device or None)`` of a stats key, or ``None``."""
    table = FAMILIES[kind]
    if len(keys) > 1 and keys[:-1] in table and table[keys[:-1]].device:
        return table[keys[:-1]], keys[-1]
    family = table.get(keys)
    return (family, None) if family is not None and not family.device else None


def _newest(values):
    for value in reversed(values):
        if math.isfinite(value):
            return value
    return None


class Reading:
    """The samples of one collection: ``family name -> (Family, kind, labels, [(label values, value)])``."""

    def __init__(self):
        self.families = {}
        self._places = {}

    def add(self, family, kind, values, value):
        entry = self.families.get(family.name)
        if entry is None:
            names = LABELS[kind] + ((family.device,) if family.device else ())
            entry = self.families[family.name] = (family, kind, names, [])
        entry[3].append((values, value))

    def read_host(self, snapshot, pool, host, updates):
        """Add the newest values of the host's and its VMs' columns of ``updates``."""
        vms = snapshot.collection("vms")
        base = (pool["id"], pool.get("name_label", ""), host["id"], host.get("name_label", ""))
        for column, series in zip(updates.legend, updates.columns):
            if column.cf != "AVERAGE" or column.kind not in FAMILIES:
                continue
            if column.kind == "host":
                if column.uuid != host["uuid"]:
                    continue
                labels = base
            else:
                vm = vms.get(column.uuid)
                if vm is None:  # a control domain: not one of the VMs
                    continue
                labels = base + (vm["id"], vm.get("name_label", ""))
            key = (column.kind, column.name)
            if key not in self._places:  # names repeat on every VM: match them once
                found = statkeys.place(column.kind, column.name)
                self._places[key] = found and (_family_of(column.kind, found[0]), found[1])
            found = self._places[key]
            if not found or not found[0]:
                continue
            (family, device), factor = found
            value = _newest(series)
            if value is None:
                continue
            self.add(family, column.kind, labels + ((device,) if device else ()), value * factor * family.scale)
        self.add(HOST_TIME, "host", base, float(updates.end))

    def gauges(self, allowed=None):
        """The families as gauges; ``allowed(collection, uuid)`` keeps the samples of visible owners."""
        result = []
        for family, kind, names, samples in self.families.values():
            if allowed is not None:
                collection, index = OWNER[kind]
                samples = [sample for sample in samples if allowed(collection, sample[0][index])]
            result.append(gauge_family(family.name, family.help, names, samples))
        return result

    def to_json(self, at):
        return json.dumps({"at": at, "families": [
            {"name": f.name, "help": f.help, "kind": kind, "labels": names, "samples": samples}
            for f, kind, names, samples in self.families.values()]}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text):
        doc = json.loads(text)
        reading = cls()
        for entry in doc["families"]:
            family = Family(entry["name"], entry["help"])
            reading.families[family.name] = (family, entry["kind"], tuple(entry["labels"]),
                                             [(tuple(values), value) for values, value in entry["samples"]])
        return reading, doc["at"]


class PoolMetrics:
    """The collector (in the worker that wins the lock) and the readers of its files (every
    worker).

    :param collections: the :class:`~.collections.CollectionService` (its cache: hosts,
        VMs and their names).
    :param pools: the :class:`~.pools.PoolService` (connections).
    :param stats: the :class:`~.stats.StatsService` (how a host's RRDs are read).
    """

    def __init__(self, collections, pools, stats, config):
        self.collections, self.pools, self.stats = collections, pools, stats
        self.interval = config.metrics_interval
        self.folder = os.path.join(config.data_dir, "metrics")
        self._pid = None
        self._stop = threading.Event()
        self._lock_file = None
        self._cached = {}  # file name -> (stat key, content)
        self.collections_made = 0
        self._failing = set()  # hosts whose last reading failed

    # the collector -------------------------------------------------------------------

    def start(self):
        """Start this process's candidate collector (idempotent, fork-aware)."""
        if self.interval <= 0 or self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._lock_file = None  # a parent's lock is not ours
        threading.Thread(target=self._run, name="pool-metrics", daemon=True).start()

    def stop(self):
        self._stop.set()

    def _elected(self):
        """Whether this process holds the instance's collector lock (tried without waiting)."""
        if self._lock_file is not None:
            return True
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        handle = open(os.path.join(self.folder, "collector.lock"), "a+b")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        log.info("process %d collects the pools' metrics every %g s", os.getpid(), self.interval)
        return True

    def _run(self):
        wait = 0.0
        while not self._stop.wait(wait):
            wait = self.interval
            try:
                if not self._elected():
                    continue
                started = time.monotonic()
                reading = self.collect()
                self._publish(reading, time.time(), time.monotonic() - started)
                wait = max(0.0, self.interval - (time.monotonic() - started))
            except Exception:
                log.exception("collecting the pools' metrics failed")

    def collect(self):
        """One :class:`Reading` of every running host of every connected pool."""
        snapshot = self.collections.cache.snapshot()
        reading = Reading()
        hosts = snapshot.collection("hosts").values()
        for conn in self.pools.connections():
            pool = snapshot.collection("pools").get(conn.pool_uuid) if conn.pool_uuid else None
            if pool is None:
                continue
            for host in hosts:
                if host.get("$pool") != pool["id"] or host.get("power_state") != "Running":
                    continue
                base = (pool["id"], pool.get("name_label", ""), host["id"], host.get("name_label", ""))
                try:
                    now = self.stats.server_time(conn, host)
                    updates = self.stats.updates(conn, host, now - ROWS * STEP, STEP, host=True, json_output=True)
                except (XapiError, XapiUnreachable, UpstreamError) as exc:
                    # said once, not every interval (xen_host_rrd_up says it meanwhile)
                    (log.debug if host["id"] in self._failing else log.info)(
                        "pool %s: no metrics from host %s: %s", pool["id"], host["id"], exc)
                    self._failing.add(host["id"])
                    reading.add(HOST_UP, "host", base, 0.0)
                    continue
                self._failing.discard(host["id"])
                reading.read_host(snapshot, pool, host, updates)
                reading.add(HOST_UP, "host", base, 1.0)
        return reading

    def _publish(self, reading, at, duration):
        self.collections_made += 1
        meta = [gauge_family("xorest_metrics_collection_timestamp_seconds",
                             "when the pools' RRDs were last read", (), [((), at)]),
                gauge_family("xorest_metrics_collection_duration_seconds",
                             "how long the last reading of the pools' RRDs took", (), [((), duration)]),
                gauge_family("xorest_metrics_collections", "readings made by the current collector process",
                             (), [((), self.collections_made)])]
        self._write("pools.prom", render([reading.gauges(), meta]))
        self._write("pools.json", reading.to_json(at).encode())

    def _write(self, name, content):
        path = os.path.join(self.folder, name)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "wb") as fh:
            fh.write(content)
        os.replace(temporary, path)

    # the readers -----------------------------------------------------------------------

    def _read(self, name, parse):
        """A file's content parsed by ``parse``, read again only when it was replaced."""
        path = os.path.join(self.folder, name)
        try:
            status = os.stat(path)
        except FileNotFoundError:
            return None
        key = (status.st_ino, status.st_mtime_ns, status.st_size)
        cached = self._cached.get(name)
        if cached is None or cached[0] != key:
            try:
                with open(path, "rb") as fh:
                    cached = (key, parse(fh.read()))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("cannot read %s: %s", path, exc)
                return None
            self._cached[name] = cached
        return cached[1]

    def _fresh(self, name):
        """Whether the file was written recently enough to be served."""
        try:
            age = time.time() - os.stat(os.path.join(self.folder, name)).st_mtime
        except FileNotFoundError:
            return False
        return age < max(STALE_INTERVALS * self.interval, STALE_SECONDS)

    def rendered(self):
        """The pools' series as the last collection rendered them (every object's), or ``b""``."""
        if not self._fresh("pools.prom"):
            return b""
        return self._read("pools.prom", bytes) or b""

    def gauges(self, allowed):
        """The pools' families with only the samples of owners ``allowed(collection, uuid)``."""
        if not self._fresh("pools.json"):
            return []
        found = self._read("pools.json", Reading.from_json)
        return found[0].gauges(allowed) if found else []
