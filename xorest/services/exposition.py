"""What xorest's metrics modules share: ``prometheus_client``, imported on first use, and
gauge families rendered in Prometheus' text format.

``prometheus_client`` decides when it is imported whether its values live in the process
(one process) or in files shared by processes (``PROMETHEUS_MULTIPROC_DIR`` set: gunicorn's
workers).  ``xorest serve`` imports the app in gunicorn's master before it sets that
variable for the workers (:mod:`xorest.serve`), so no module the master imports may
import ``prometheus_client`` at its top: they call :func:`prometheus` instead.
"""
import importlib

#: The text format prometheus_client writes (what Prometheus asks for without OpenMetrics).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def prometheus(module=""):
    """``prometheus_client`` (or one of its modules: ``"multiprocess"``, ``"core"``...)."""
    return importlib.import_module("prometheus_client" + (f".{module}" if module else ""))


class _Families:
    """A collector giving fixed families (for one rendering)."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


def gauge_family(name, documentation, labels, samples):
    """A gauge family: ``samples`` are ``(label values, value)``."""
    family = prometheus("core").GaugeMetricFamily(name, documentation, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def render(collectors):
    """The text exposition of ``collectors`` (objects with ``collect()``), in order."""
    client = prometheus()
    registry = client.CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector if hasattr(collector, "collect") else _Families(collector))
    return client.generate_latest(registry)
