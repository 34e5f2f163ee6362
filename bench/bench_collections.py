"""Collection latency through gunicorn on a 10k-VM pool, 8 concurrent clients.

Baseline: ``GET /rest/v0`` (no objects) under the same load, same gateway.  The load
comes from wrk (a C client, so the client does not compete for the GIL-bound CPU) when
it is installed, else from Python threads.
Run: .venv/bin/python bench/bench_collections.py
"""
import re
import shutil
import subprocess
import threading
import time

import requests

from common import percentile, report, start_gateway, start_sim, wait_loaded, wrk_script


def wrk_load(base, token, path, seconds=15):
    """``(p50, p99)`` in seconds from wrk with 8 connections, or ``None`` without wrk."""
    if not shutil.which("wrk"):
        return None
    out = subprocess.run(["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", "-s", wrk_script(path, token), base],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        print("# wrk saw non-2xx answers:", out)
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0}

    def seconds_of(label):
        value, unit = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * units[unit]
    return seconds_of("50%"), seconds_of("99%")

QUERY = "/rest/v0/vms?fields=name_label,power_state&filter=power_state:Running"
CLIENTS, PER_CLIENT = 8, 60


def load(base, token, path):
    samples, lock, failures = [], threading.Lock(), []

    def client(offset):
        session = requests.Session()
        session.cookies.set("authenticationToken", token)
        for n in range(PER_CLIENT):
            started = time.perf_counter()
            response = session.get(base + path.format(n=100000 + n * CLIENTS + offset), timeout=60)
            elapsed = time.perf_counter() - started
            with lock:
                samples.append(elapsed)
                if response.status_code != 200:
                    failures.append((response.status_code, response.text[:200]))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        print(f"# {len(failures)} failed requests, first: {failures[0]}")
    return samples


def first_line(base, token):
    started = time.perf_counter()
    with requests.get(base + "/rest/v0/vms?fields=*&ndjson", cookies={"authenticationToken": token},
                      stream=True, timeout=60) as response:
        lines = response.iter_lines()
        next(lines)
        first = time.perf_counter() - started
        count = 1 + sum(1 for _ in lines)
    return first, time.perf_counter() - started, count


if __name__ == "__main__":
    sim = start_sim("--vms", "10000")
    gw, base, token = start_gateway(sim.url)
    try:
        wait_loaded(base, token, 10000)
        load(base, token, QUERY)  # warm-up
        baseline = wrk_load(base, token, "/rest/v0")
        if baseline is not None:
            repeated = wrk_load(base, token, QUERY)
            distinct = wrk_load(base, token, QUERY + "&limit={n}")  # no rendered listing reusable
            for index, pct in enumerate((50, 99)):
                report(f"vms filter+fields p{pct}, 8 connections (wrk)", repeated[index] * 1000,
                       baseline[index] * 1000, "ms")
                report(f"vms filter+fields p{pct}, 8 connections (wrk), every query distinct",
                       distinct[index] * 1000, baseline[index] * 1000, "ms")
        baseline = load(base, token, "/rest/v0")
        samples = load(base, token, QUERY)
        for pct in (50, 99):
            report(f"vms filter+fields p{pct}, 8 Python clients", percentile(samples, pct) * 1000,
                   percentile(baseline, pct) * 1000, "ms")
        firsts = [first_line(base, token) for _ in range(5)]
        first, total, count = sorted(firsts)[2]
        report(f"ndjson fields=* first line ({count} VMs)", first * 1000, total * 1000, "ms")
    finally:
        gw.stop()
        sim.stop()
