"""Export throughput through gunicorn vs straight from the pool, zstd vs the zstd CLI, peak RSS.

- raw 4 GiB disk: xorest (curl -> gunicorn -> simulator) vs curl straight from the simulator.
- zstd: xorest-side compression of an XVA vs ``zstd -3 -T0`` on the same uncompressed bytes.
- RSS: growth of the serving gunicorn worker during the 4 GiB export.
Run: .venv/bin/python bench/bench_exports.py
"""
import os
import shutil
import subprocess
import tempfile
import threading
import time

import psutil
import requests

from common import report, start_gateway, start_sim, wait_loaded


def curl_seconds(url, cookie=None):
    args = ["curl", "-sS", "-f", "-o", "/dev/null", "-w", "%{time_total} %{size_download}"]
    if cookie:
        args += ["-b", cookie]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1])


def peak_rss_during(pids, stop):
    peak = {}
    while not stop.is_set():
        for pid in pids:
            try:
                peak[pid] = max(peak.get(pid, 0), psutil.Process(pid).memory_info().rss)
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)
    return peak


def compressor_seconds(path):
    """The gateway's own compression stage on the file's bytes, in 1 MiB chunks (best of 3)."""
    from xorest import config as config_module
    from xorest.services.exports import _compress

    with open(path, "rb") as fh:
        data = fh.read()
    chunks = [data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
    config = config_module.load({"data_dir": tempfile.mkdtemp()}, environ={})
    best = None
    for _ in range(3):
        started = time.perf_counter()
        for _ in _compress(iter(chunks), "zstd", config):
            pass
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    return best


if __name__ == "__main__":
    sim = start_sim("--vms", "40", "--seed", "4")
    gw, base, token = start_gateway(sim.url, workers=1)
    gw_zstd = None
    try:
        wait_loaded(base, token, 40)
        cookie = f"authenticationToken={token}"
        vdis = requests.get(f"{base}/rest/v0/vdis?fields=size,name_label", cookies={"authenticationToken": token},
                            timeout=30).json()
        big = max(vdis, key=lambda v: v["size"])
        rpc = lambda method, *p: requests.post(sim.url + "/jsonrpc", json={"jsonrpc": "2.0", "id": 1,
                                               "method": method, "params": list(p)}, timeout=30).json()["result"]
        session = rpc("session.login_with_password", "root", "password")
        uuid = big["url"].rsplit("/", 1)[1]
        direct_url = f"{sim.url}/export_raw_vdi?session_id={session}&vdi={uuid}&format=raw"
        workers = [c.pid for c in psutil.Process(gw.proc.pid).children()]
        before = {pid: psutil.Process(pid).memory_info().rss for pid in workers}
        direct, size = curl_seconds(direct_url)
        stop = threading.Event()
        peaks = {}
        watcher = threading.Thread(target=lambda: peaks.update(peak_rss_during(workers, stop)))
        watcher.start()
        via, via_size = curl_seconds(f"{base}{big['url']}.raw", cookie)
        stop.set()
        watcher.join()
        assert via_size == size == big["size"]
        gib = size / 2**30
        report(f"raw export throughput, {gib:.1f} GiB, xorest vs direct", gib / via, gib / direct, "GiB/s")
        growth = max(peaks[pid] - before[pid] for pid in workers) / 2**20
        report(f"gunicorn worker RSS growth during {gib:.1f} GiB export", growth, None, "MiB")

        # zstd: xorest compresses (gateway mode) vs the zstd CLI on the same bytes
        gw.stop()
        os.environ["XOREST_COMPRESSION"] = "gateway"
        gw_zstd, base, token = start_gateway(sim.url, workers=1)
        del os.environ["XOREST_COMPRESSION"]
        wait_loaded(base, token, 40)
        cookie = f"authenticationToken={token}"
        vms = requests.get(f"{base}/rest/v0/vms?fields=*&filter=power_state:Halted",
                           cookies={"authenticationToken": token}, timeout=30).json()
        vm = max(vms, key=lambda v: len(v["$VBDs"]))
        folder = tempfile.mkdtemp()
        plain = os.path.join(folder, "vm.xva")
        subprocess.run(["curl", "-sS", "-f", "-o", plain, "-b", cookie, f"{base}{vm['url']}.xva"], check=True)
        ours = min(curl_seconds(f"{base}{vm['url']}.xva?compress=zstd", cookie)[0] for _ in range(3))
        if shutil.which("zstd"):
            cli = []
            for _ in range(3):
                started = time.perf_counter()
                subprocess.run(["zstd", "-3", "-T0", "-q", "-c", plain], stdout=subprocess.DEVNULL, check=True)
                cli.append(time.perf_counter() - started)
            mib = os.path.getsize(plain) / 2**20
            report(f"zstd XVA ({mib:.0f} MiB) xorest end-to-end vs zstd -3 -T0", mib / ours, mib / min(cli), "MiB/s")
            report(f"zstd XVA ({mib:.0f} MiB) xorest compressor vs zstd -3 -T0 (same bytes)",
                   mib / compressor_seconds(plain), mib / min(cli), "MiB/s")
    finally:
        gw.stop()
        if gw_zstd:
            gw_zstd.stop()
        sim.stop()
