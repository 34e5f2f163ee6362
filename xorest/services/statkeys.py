"""Xen Orchestra's stats keys for XAPI's data sources, and the stats object it builds.

Each rule matches a data source name (the whole name) and gives its place in ``stats``:
plain keys, and the matched part where one level is per device (``cpus.<n>``,
``vifs.rx.<n>``, ``iops.r.<sr8>``...), with the factor that turns XAPI's unit into Xen
Orchestra's (fractions into percents, KiB into bytes, MiB/s into B/s, µs into ms).  The
first rule that matches wins, in Xen Orchestra's order; data sources no rule matches are
left out, as Xen Orchestra leaves them.  Values are oldest first, ``null`` where the
archive has none.  Unlike Xen Orchestra (which keeps them in 32-bit floats), values keep
XAPI's precision.
"""
import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """``pattern`` (a full match) -> ``path`` (keys; an int is a group of the match)."""

    pattern: re.Pattern
    path: tuple
    factor: float = 1.0


def _rule(pattern, path, factor=1.0):
    keys = tuple(int(key[1:]) if key.startswith("$") else key for key in path.split("."))
    return Rule(re.compile(pattern, re.ASCII), keys, factor)


PERCENT, KIB, MIB, MICROSECONDS = 100.0, 1024.0, float(2 ** 20), 1e-3

RULES = {
    "host": (
        _rule(r"loadavg", "load"),
        _rule(r"memory_free_kib", "memoryFree", KIB),
        _rule(r"memory_total_kib", "memory", KIB),
        _rule(r"cpu(\d+)", "cpus.$1", PERCENT),
        _rule(r"pif_eth(\d+)_rx", "pifs.rx.$1"),
        _rule(r"pif_eth(\d+)_tx", "pifs.tx.$1"),
        _rule(r"iops_read_(\w+)", "iops.r.$1"),
        _rule(r"iops_write_(\w+)", "iops.w.$1"),
        _rule(r"iops_total_(\w+)", "iops.total.$1"),
        _rule(r"io_throughput_read_(\w+)", "ioThroughput.r.$1", MIB),
        _rule(r"io_throughput_write_(\w+)", "ioThroughput.w.$1", MIB),
        _rule(r"io_throughput_total_(\w+)", "ioThroughput.total.$1", MIB),
        _rule(r"read_latency_(\w+)", "latency.r.$1", MICROSECONDS),
        _rule(r"write_latency_(\w+)", "latency.w.$1", MICROSECONDS),
        _rule(r"latency_(\w+)", "latency.total.$1", MICROSECONDS),
        _rule(r"iowait_(\w+)", "iowait.$1"),
        _rule(r"hostload", "hostload"),
        _rule(r"memory_reclaimed", "memoryReclaimed", KIB),
        _rule(r"memory_reclaimed_max", "memoryReclaimedMax", KIB),
        _rule(r"running_vcpus", "runningVcpus"),
        _rule(r"pif_aggr_rx", "pifsAggr.rx"),
        _rule(r"pif_aggr_tx", "pifsAggr.tx"),
    ),
    "vm": (
        _rule(r"memory_internal_free", "memoryFree", KIB),
        _rule(r".*memory", "memory"),
        _rule(r"memory_target", "memoryTarget"),
        _rule(r"cpu(\d+)", "cpus.$1", PERCENT),
        _rule(r"cpu_usage", "cpuUsage", PERCENT),
        _rule(r"runstate_fullrun", "runstateFullrun", PERCENT),
        _rule(r"runstate_full_contention", "runstateFullContention", PERCENT),
        _rule(r"runstate_partial_run", "runstatePartialRun", PERCENT),
        _rule(r"runstate_partial_contention", "runstatePartialContention", PERCENT),
        _rule(r"runstate_concurrency_hazard", "runstateConcurrencyHazard", PERCENT),
        _rule(r"runstate_blocked", "runstateBlocked", PERCENT),
        _rule(r"vif_(\d+)_rx", "vifs.rx.$1"),
        _rule(r"vif_(\d+)_tx", "vifs.tx.$1"),
        _rule(r"vif_(\d+)_rx_errors", "vifErrors.rx.$1"),
        _rule(r"vif_(\d+)_tx_errors", "vifErrors.tx.$1"),
        _rule(r"vbd_xvd(.)_read", "xvds.r.$1"),
        _rule(r"vbd_xvd(.)_write", "xvds.w.$1"),
        _rule(r"vbd_xvd(.)_iops_read", "iops.r.$1"),
        _rule(r"vbd_xvd(.)_iops_write", "iops.w.$1"),
        _rule(r"vbd_xvd(.)_iops_total", "iops.total.$1"),
        _rule(r"vbd_xvd(.)_read_latency", "vbdLatency.r.$1", MICROSECONDS),
        _rule(r"vbd_xvd(.)_write_latency", "vbdLatency.w.$1", MICROSECONDS),
        _rule(r"vbd_xvd(.)_io_throughput_read", "ioThroughput.r.$1", MIB),
        _rule(r"vbd_xvd(.)_io_throughput_write", "ioThroughput.w.$1", MIB),
        _rule(r"vbd_xvd(.)_io_throughput_total", "ioThroughput.total.$1", MIB),
        _rule(r"vbd_xvd(.)_latency", "vbdAvgLatency.$1", MICROSECONDS),
        _rule(r"vbd_xvd(.)_iowait", "vbdIowait.$1", PERCENT),
        _rule(r"vbd_xvd(.)_inflight", "vbdInflight.$1"),
        _rule(r"vbd_xvd(.)_avgqu_sz", "vbdAvgquSz.$1"),
    ),
}


def place(kind, name):
    """``(keys, factor)`` of data source ``name`` of a ``host`` or ``vm``, or ``None``."""
    for rule in RULES[kind]:
        match = rule.pattern.fullmatch(name)
        if match:
            return tuple(match.group(key) if isinstance(key, int) else key for key in rule.path), rule.factor
    return None


def _json_value(value, factor):
    """A value as Xen Orchestra's JSON has it: ``null`` for NaN and infinities, whole
    numbers without a fraction."""
    if not math.isfinite(value):
        return None
    value *= factor
    return int(value) if value.is_integer() and abs(value) < 2 ** 53 else value


def stats(kind, sources):
    """The ``stats`` object of ``sources`` (``[(data source name, values)]``, legend order)."""
    result = {}
    for name, values in sources:
        found = place(kind, name)
        if found is None:
            continue
        keys, factor = found
        target = result
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = [_json_value(value, factor) for value in values]
    return result


STAT_VALUES = {"type": "array", "items": {"type": ["number", "null"]},
               "description": "one value per interval, oldest first; null where the pool has none"}


def stats_schema(kind):
    """The JSON schema of the ``stats`` object of a ``host`` or ``vm``, from the rules."""
    root = {"type": "object", "properties": {}}
    for rule in RULES[kind]:
        target = root
        keys = rule.path
        for index, key in enumerate(keys):
            last = index == len(keys) - 1
            if isinstance(key, int):  # one entry per device: the rest hangs below any name
                target["additionalProperties"] = STAT_VALUES if last else {"type": "object", "properties": {}}
                target = target["additionalProperties"]
                continue
            default = STAT_VALUES if last else {"type": "object", "properties": {}}
            target = target["properties"].setdefault(key, dict(default))
    return root
