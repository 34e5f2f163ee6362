"""Cache freshness (XAPI change -> visible in the cache) and the memory of a 10k-VM cache.

Baseline for freshness: a round trip of the same XAPI call (the floor for any observer).
Run: .venv/bin/python bench/bench_cache.py
"""
import gc
import tempfile
import time
import tracemalloc


from common import percentile, report, start_sim, xapi_rpc

from xorest import config as config_module
from xorest.cache import ObjectCache
from xorest.services.pools import PoolService
from xorest.store.sqlite import SqliteStore


def pool_service(url):
    folder = tempfile.mkdtemp()
    config = config_module.load({"data_dir": folder}, environ={})
    store = SqliteStore(config.database_path)
    store.add_server(url, "root", "password", None, False, "bench")
    service = PoolService(store, ObjectCache(), config)
    service.ensure_started()
    service.wait_synced(300)
    return service


def freshness(url):
    service = pool_service(url)
    call = xapi_rpc(url)
    vms = [r for r, v in call("VM.get_all_records").items()
           if not (v["is_control_domain"] or v["is_a_template"] or v["is_a_snapshot"])][:50]
    uuids = {ref: call("VM.get_uuid", ref) for ref in vms}
    delays, round_trips = [], []
    for i in range(200):
        ref = vms[i % len(vms)]
        label = f"fresh-{i}"
        started = time.perf_counter()
        call("VM.set_name_label", ref, label)
        round_trips.append(time.perf_counter() - started)
        uuid = uuids[ref]
        seen = service.cache.wait_for(
            lambda snap: snap.collection("vms").get(uuid, {}).get("name_label") == label, 5)
        assert seen, f"change {i} not seen"
        delays.append(time.perf_counter() - started)
    service.stop()
    return delays, round_trips


def cache_memory(url):
    gc.collect()
    tracemalloc.start()
    service = pool_service(url)
    gc.collect()
    size, _ = tracemalloc.get_traced_memory()
    objects = sum(len(c) for c in service.cache.snapshot().collections.values())
    service.stop()
    tracemalloc.stop()
    return size, objects


if __name__ == "__main__":
    small = start_sim("--vms", "200")
    try:
        delays, trips = freshness(small.url)
        for pct in (50, 99):
            report(f"change visible in cache p{pct}", percentile(delays, pct) * 1000,
                   percentile(trips, pct) * 1000, "ms")
    finally:
        small.stop()
    large = start_sim("--vms", "10000")
    try:
        size, objects = cache_memory(large.url)
        report(f"cache + raw records memory, 10k VMs ({objects} objects)", size / 2**20, None, "MiB")
    finally:
        large.stop()
