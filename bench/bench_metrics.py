"""The cost of a Prometheus scrape of a 10k-VM pool, and API latency while scrapes run.

A simulated pool of 10k VMs on 3 reachable hosts, xorest under gunicorn (2 workers) reading
the hosts' RRDs every XOREST_METRICS_INTERVAL (15 s).  Printed: a scrape's time, bytes and
series (whole, and for a token scoped to a few VMs); the collector's own reading time; then
the latency of API requests (8 clients: one VM by id, a filtered listing) without scrapes
(the baseline) and while curl scrapes back to back, in the same run.
Run: .venv/bin/python bench/bench_metrics.py
"""
import statistics
import subprocess
import threading
import time

import requests

from common import percentile, report, start_gateway, start_sim, wait_loaded

VMS = 10000
CLIENTS, PER_CLIENT = 8, 400
LISTING = "/rest/v0/vms?fields=name_label,power_state&filter=power_state:Running&limit=20"


def scrape(base, token):
    started = time.perf_counter()
    answer = requests.get(base + "/rest/v0/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=120)
    elapsed = time.perf_counter() - started
    answer.raise_for_status()
    series = sum(1 for line in answer.text.splitlines() if line and not line.startswith("#"))
    return elapsed, (len(answer.content), int(answer.headers["Content-Length"])), series, answer.text


def wait_for_pool_series(base, token, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = scrape(base, token)[3]
        if text.count("xen_host_rrd_up{") == 3 and " 0.0\n" not in "".join(
                line + "\n" for line in text.splitlines() if line.startswith("xen_host_rrd_up{")):
            if text.count("xen_vm_memory_bytes{") >= VMS // 4:
                return text
        time.sleep(1)
    raise RuntimeError("the collector did not read the pool")


def load(base, token, vm_ids, stop_scraping=None):
    samples, lock, failures = [], threading.Lock(), []

    def client(offset):
        session = requests.Session()
        session.cookies.set("authenticationToken", token)
        for n in range(PER_CLIENT):
            path = LISTING if n % 2 else f"/rest/v0/vms/{vm_ids[(offset * PER_CLIENT + n) % len(vm_ids)]}"
            started = time.perf_counter()
            response = session.get(base + path, timeout=60)
            elapsed = time.perf_counter() - started
            with lock:
                samples.append(elapsed)
                if response.status_code != 200:
                    failures.append(response.status_code)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if stop_scraping is not None:
        stop_scraping.set()
    if failures:
        print(f"# {len(failures)} failed requests: {failures[:5]}")
    return samples


def scraper(base, token, stop, costs):
    """Scrapes back to back from a process of its own (as Prometheus is), so that reading
    36 MiB does not hold the load clients' interpreter."""
    while not stop.is_set():
        started = time.perf_counter()
        subprocess.run(["curl", "-sf", "--compressed", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}",
                        base + "/rest/v0/metrics"], check=True, timeout=120)
        costs.append(time.perf_counter() - started)


def metric(text, name):
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


if __name__ == "__main__":
    sim = start_sim("--vms", str(VMS), "--slave", "127.0.0.2", "--slave", "127.0.0.3")
    gw, base, token = start_gateway(sim.url)
    try:
        wait_loaded(base, token, VMS)
        text = wait_for_pool_series(base, token)
        print(f"# collector: a reading of 3 hosts ({text.count('xen_vm_memory_bytes{')} running VMs) took "
              f"{metric(text, 'xorest_metrics_collection_duration_seconds'):.2f} s")
        cookies = {"authenticationToken": token}
        vm_ids = [url.rsplit("/", 1)[1] for url in requests.get(base + "/rest/v0/vms?limit=2000", cookies=cookies,
                                                                timeout=60).json()]
        scrapes = [scrape(base, token) for _ in range(6)][1:]
        elapsed = statistics.median(s[0] for s in scrapes)
        _, size, series, _ = scrapes[-1]
        report(f"scrape, every series ({series} series)", elapsed * 1000, None, "ms")
        report("scrape size, gzip (text)", size[1] / 2 ** 20, size[0] / 2 ** 20, "MiB")
        scoped = requests.post(base + "/rest/v0/users/me/authentication_tokens", cookies=cookies, timeout=60,
                               json={"scope": {"filter": "name_label:/00$/"}}).json()["token"]["id"]
        scoped_scrapes = [scrape(base, scoped) for _ in range(4)][1:]
        report(f"scrape, token scoped to ~1% of the VMs ({scoped_scrapes[-1][2]} series)",
               statistics.median(s[0] for s in scoped_scrapes) * 1000, elapsed * 1000, "ms")
        load(base, token, vm_ids)  # warm-up
        quiet = load(base, token, vm_ids)
        stop, costs = threading.Event(), []
        thread = threading.Thread(target=scraper, args=(base, token, stop, costs))
        thread.start()
        busy = load(base, token, vm_ids, stop)
        thread.join()
        print(f"# {len(costs)} scrapes during the load, median {statistics.median(costs) * 1000:.0f} ms")
        report("scrape during the API load", statistics.median(costs) * 1000, elapsed * 1000, "ms")
        for pct in (50, 99):
            report(f"API p{pct} during back-to-back scrapes", percentile(busy, pct) * 1000,
                   percentile(quiet, pct) * 1000, "ms")
    finally:
        gw.stop()
        sim.stop()
