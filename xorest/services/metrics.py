"""``GET /rest/v0/metrics``: the gateway's own metrics and the pools', for Prometheus.

Three sources, rendered with ``prometheus_client``:

- what requests do (:class:`Instruments`: requests by route and status, their latency,
  transfers running, bytes streamed, event streams open), counted in the process serving
  them.  Under gunicorn each worker writes its values into the folder
  ``PROMETHEUS_MULTIPROC_DIR`` names (set up by :mod:`xorest.serve`) and a scrape adds up
  every worker's files, those of workers that exited too: totals are the instance's,
  whichever worker answers;
- what the instance holds, read when scraped in the worker that answers (each worker has
  the same view): tasks by status (the store), pool connections and the age of their last
  event, objects cached per collection, SRs' sizes and usage (the cache);
- the hosts' and VMs' RRD values, from the instance's collector (:mod:`.poolmetrics`).

Nothing here calls XAPI.  A scoped token gets only the series of the objects its scope
shows (its VMs; with a pools scope, those pools' hosts, VMs and SRs), never the gateway's
or the instance's, which are about every pool.
"""
import collections as counting
import logging
import threading
import time

from ..config import prometheus_multiproc_dir as multiprocess_dir
from . import scopes
from .exposition import gauge_family, prometheus, render

log = logging.getLogger(__name__)

#: Request latency buckets (seconds): API reads take milliseconds, transfers and streams hours.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)

_instruments = None
_instruments_lock = threading.Lock()


class Instruments:
    """The counters, histograms and gauges requests update (one set per process)."""

    def __init__(self):
        client = prometheus()
        # one process: a registry of our own (tests build several apps in one process);
        # several: values go to the shared folder, and a scrape reads them from there
        self.registry = None if multiprocess_dir() else client.CollectorRegistry(auto_describe=True)
        where = {"registry": self.registry}
        self.requests = client.Counter("xorest_http_requests", "HTTP requests answered, by route template, "
                                       "method and status", ("route", "method", "status"), **where)
        self.latency = client.Histogram("xorest_http_request_duration_seconds", "time from a request's arrival "
                                        "to the last byte of its answer", ("route", "method"),
                                        buckets=LATENCY_BUCKETS, **where)
        self.transfers = client.Gauge("xorest_transfers_running", "exports and imports under way",
                                      ("kind",), multiprocess_mode="livesum", **where)
        self.transferred = client.Counter("xorest_transfer_bytes", "bytes of exports sent and of imports "
                                          "received", ("kind",), **where)
        for kind in ("export", "import"):  # series from the start, at 0
            self.transfers.labels(kind)
            self.transferred.labels(kind)
        self.event_streams = client.Gauge("xorest_event_streams", "event streams (/rest/v0/events) open",
                                          multiprocess_mode="livesum", **where)


def instruments():
    """This process's :class:`Instruments` (made on first use)."""
    global _instruments
    if _instruments is None:
        with _instruments_lock:
            if _instruments is None:
                _instruments = Instruments()
    return _instruments


class _InstanceCollector:
    """The instance's state, read at scrape time (no XAPI call)."""

    def __init__(self, service):
        self.service = service

    def collect(self):
        svc = self.service
        snapshot = svc.collections.cache.snapshot()
        statuses = counting.Counter(row["status"] for row in svc.store.list_tasks())
        yield gauge_family("xorest_tasks", "tasks of the task log, by status", ("status",),
                           [((status,), count) for status, count in sorted(statuses.items())])
        yield gauge_family("xorest_cache_objects", "objects in the cache, by collection", ("collection",),
                           [((name,), len(objects)) for name, objects in sorted(snapshot.collections.items())])
        pools = snapshot.collection("pools")
        connected, last_event, age = [], [], []
        now = time.time()
        for key, status in sorted(svc.pools.statuses().items()):
            pool = status.get("poolId") or ""
            labels = (key, pool, (pools.get(pool) or {}).get("name_label", ""))
            connected.append((labels + (status["status"],), 1.0))
            if status.get("lastEventTime"):
                last_event.append((labels, status["lastEventTime"]))
                age.append((labels, max(0.0, now - status["lastEventTime"])))
        names = ("server", "pool", "pool_name")
        yield gauge_family("xorest_pool_connection", "1 for each pool's connection state (connected, "
                           "connecting, disconnected, error)", names + ("state",), connected)
        yield gauge_family("xorest_pool_last_event_timestamp_seconds", "when the pool's last XAPI event "
                           "batch arrived", names, last_event)
        yield gauge_family("xorest_pool_event_age_seconds", "seconds since the pool's last XAPI event batch",
                           names, age)


class MetricsService:
    """Renders a scrape.

    :param collections: the :class:`~.collections.CollectionService` (cache, scopes).
    :param pools: the :class:`~.pools.PoolService` (connection states).
    :param store: the store (the task log).
    :param pool_metrics: the :class:`~.poolmetrics.PoolMetrics` (the hosts' and VMs' values).
    """

    def __init__(self, collections, pools, store, pool_metrics):
        self.collections, self.pools, self.store, self.pool_metrics = collections, pools, store, pool_metrics

    def scrape(self):
        """The text exposition for the current request's scope."""
        scope = scopes.current()
        snapshot = self.collections.cache.snapshot()
        if not scope:
            return b"".join((self._gateway(), self.pool_metrics.rendered(), render([self._srs(snapshot)])))
        visibility = self.collections.scopes.visibility(scope, snapshot)

        def allowed(collection, key):
            obj = snapshot.collection(collection).get(key)
            return obj is not None and visibility.allows(collection, obj)
        return render([self.pool_metrics.gauges(allowed), self._srs(snapshot, allowed)])

    def _gateway(self):
        client = prometheus()
        folder = multiprocess_dir()
        if folder:
            registry = client.CollectorRegistry(auto_describe=False)
            prometheus("multiprocess").MultiProcessCollector(registry, path=folder)
            return render([registry, _InstanceCollector(self)])
        return render([instruments().registry, _InstanceCollector(self)])

    def _srs(self, snapshot, allowed=None):
        """The SRs' size and usage, from the cache."""
        pools = snapshot.collection("pools")
        samples = {"size": [], "physical_usage": [], "usage": []}
        for sr in snapshot.collection("srs").values():
            if allowed is not None and not allowed("srs", sr["id"]):
                continue
            pool = sr.get("$pool", "")
            labels = (pool, (pools.get(pool) or {}).get("name_label", ""), sr["id"], sr.get("name_label", ""),
                      sr.get("SR_type", ""))
            for key, found in samples.items():
                if isinstance(sr.get(key), (int, float)):
                    found.append((labels, sr[key]))
        names = ("pool", "pool_name", "sr", "sr_name", "sr_type")
        return [gauge_family("xen_sr_size_bytes", "the SR's size", names, samples["size"]),
                gauge_family("xen_sr_physical_usage_bytes", "bytes used on the SR's storage", names,
                             samples["physical_usage"]),
                gauge_family("xen_sr_allocated_bytes", "bytes allocated to the SR's disks (their virtual sizes)",
                             names, samples["usage"])]
