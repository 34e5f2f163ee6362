"""Export throughput through gunicorn vs straight from the pool, zstd vs the zstd CLI, peak RSS.

- raw 4 GiB disk: xorest (curl -> gunicorn -> simulator) vs curl straight from the simulator,
  first with the simulator unbounded (zeros from memory, ~6 GiB/s on loopback: a CPU race
  between three processes), then with the simulator paced at rates a pool's storage gives.
- zstd: an XVA holding ~384 MiB of mixed data (text, random, zeros) written into a disk;
  xorest-side compression end to end (simulator -> gunicorn -> curl) and the compression
  stage alone, vs ``zstd -3 -T0`` on the same uncompressed bytes from the page cache.
- RSS: growth of the serving gunicorn worker during the 4 GiB export.
- upload (a restore): 1 GiB of raw content into a disk, through xorest vs straight into the
  simulator, with the same client; worker RSS growth meanwhile.
Run: .venv/bin/python bench/bench_exports.py
"""
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time

import psutil
import requests

from common import report, start_gateway, start_nginx, start_sim, wait_loaded, xapi_rpc

MiB = 1 << 20
POOL_RATES = (256 * MiB, 1024 * MiB)  # bytes/s: a spinning-disk SR, a fast NVMe SR


def curl_seconds(url, cookie=None, ca=None):
    args = ["curl", "-sS", "-f", "-o", "/dev/null", "-w", "%{time_total} %{size_download}"]
    if cookie:
        args += ["-b", cookie]
    if ca:
        args += ["--cacert", ca]
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


def mixed_disk_bytes(size, seed=7):
    """``size`` bytes, per MiB: 60% log-like text, 25% random, 15% zeros (like a used disk)."""
    rng = random.Random(seed)
    words = ["kernel", "sshd", "nginx", "error", "accepted", "session", "opened", "for", "user", "root",
             "GET", "/api/v1/items", "200", "404", "timeout", "connection", "reset", "backup", "done"]
    lines = [f"2026-11-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00 "
             f"host{rng.randint(1, 40)} {rng.choice(words)}[{rng.randint(100, 99999)}]: "
             + " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
             + f" id={rng.getrandbits(48):012x}\n" for _ in range(60000)]
    text = "".join(lines).encode()
    out = bytearray()
    while len(out) < size:
        kind = rng.random()
        if kind < 0.60:
            start = rng.randrange(0, len(text) - MiB)
            out += text[start:start + MiB]
        elif kind < 0.85:
            out += rng.randbytes(MiB)
        else:
            out += bytes(MiB)
    return bytes(out[:size])


def write_disk(sim_url, vdi_uuid, data):
    """``PUT /import_raw_vdi`` into the simulated disk, then wait for its task."""
    rpc = xapi_rpc(sim_url)
    vdi = rpc("VDI.get_by_uuid", vdi_uuid)
    response = requests.put(f"{sim_url}/import_raw_vdi?session_id={rpc.session}&vdi={vdi}&format=raw",
                            data=data, timeout=600)
    response.raise_for_status()
    task = response.headers["task-id"]
    while rpc("task.get_status", task) == "pending":
        time.sleep(0.1)
    assert rpc("task.get_status", task) == "success"


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


def raw_throughput(sim, base, cookie, vdi):
    """(seconds through xorest, seconds straight from the simulator) for one raw disk export."""
    rpc = xapi_rpc(sim.url)
    uuid = vdi["url"].rsplit("/", 1)[1]
    direct, size = curl_seconds(f"{sim.url}/export_raw_vdi?session_id={rpc.session}&vdi={uuid}&format=raw")
    via, via_size = curl_seconds(f"{base}{vdi['url']}.raw", cookie)
    assert via_size == size == vdi["size"]
    return via, direct


def upload_seconds(url, path, cookies=None):
    """Seconds to PUT the file at ``path`` (read from disk as it goes) with ``requests``."""
    started = time.perf_counter()
    with open(path, "rb") as body:
        response = requests.put(url, data=body, cookies=cookies, timeout=600)
    elapsed = time.perf_counter() - started
    assert response.status_code in (200, 204), response.text
    return elapsed


def set_faults(sim, **faults):
    requests.post(f"{sim.url}/_sim/faults", json=dict(faults, reset=True), timeout=30).raise_for_status()


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
        gib = big["size"] / 2**30

        # unbounded simulator; the worker's memory is watched meanwhile
        workers = [c.pid for c in psutil.Process(gw.proc.pid).children()]
        before = {pid: psutil.Process(pid).memory_info().rss for pid in workers}
        stop = threading.Event()
        peaks = {}
        watcher = threading.Thread(target=lambda: peaks.update(peak_rss_during(workers, stop)))
        watcher.start()
        via, direct = raw_throughput(sim, base, cookie, big)
        stop.set()
        watcher.join()
        report(f"raw export, {gib:.1f} GiB, unbounded simulator: xorest vs direct", gib / via, gib / direct, "GiB/s")
        # the same extra hop made by nginx (tuned: 1 MiB buffer), then nginx with the project's
        # site in front of xorest: what the deployed stack gives
        uuid = big["url"].rsplit("/", 1)[1]
        direct_url = f"{sim.url}/export_raw_vdi?session_id={xapi_rpc(sim.url).session}&vdi={uuid}&format=raw"
        hop = start_nginx(sim.url.split("//", 1)[1], buffer_size="1m")
        stack = start_nginx(base.split("//", 1)[1], site=True)
        if hop is not None:
            try:
                proxied, _ = curl_seconds(hop.url + direct_url[len(sim.url):])
                direct_again, _ = curl_seconds(direct_url)
                report(f"raw export, {gib:.1f} GiB, unbounded simulator: bare nginx proxy vs direct",
                       gib / proxied, gib / direct_again, "GiB/s")
                stacked, _ = curl_seconds(f"{stack.url}{big['url']}.raw", cookie, stack.ca)
                direct_again, _ = curl_seconds(direct_url)
                report(f"raw export, {gib:.1f} GiB, unbounded simulator: nginx site (TLS) + xorest vs direct",
                       gib / stacked, gib / direct_again, "GiB/s")
            finally:
                hop.stop()
                stack.stop()
        growth = max(peaks[pid] - before[pid] for pid in workers) / 2**20
        report(f"gunicorn worker RSS growth during {gib:.1f} GiB export", growth, None, "MiB")

        # the simulator paced like a pool's storage, each transfer ~4 s
        for rate in POOL_RATES:
            vdi = min((v for v in vdis if v["size"] >= 4 * rate), key=lambda v: v["size"])
            set_faults(sim, export_rate=rate)
            via, direct = raw_throughput(sim, base, cookie, vdi)
            set_faults(sim)
            mib = vdi["size"] / MiB
            report(f"raw export, {mib:.0f} MiB, pool paced at {rate // MiB} MiB/s: xorest vs direct",
                   mib / via, mib / direct, "MiB/s")

        # upload (a restore): 1 GiB raw into a disk through xorest vs straight into the simulator
        target = min((v for v in vdis if v["size"] >= 1 << 30), key=lambda v: v["size"])
        folder = tempfile.mkdtemp()
        payload = os.path.join(folder, "restore.raw")
        with open(payload, "wb") as fh:
            fh.truncate(1 << 30)  # sparse: reading it costs no disk I/O
        rpc = xapi_rpc(sim.url)
        vdi_ref = rpc("VDI.get_by_uuid", target["url"].rsplit("/", 1)[1])
        direct_url = f"{sim.url}/import_raw_vdi?session_id={rpc.session}&vdi={vdi_ref}&format=raw"
        direct = upload_seconds(direct_url, payload)  # the first write of a disk costs the simulator more
        stop = threading.Event()
        peaks = {}
        watcher = threading.Thread(target=lambda: peaks.update(peak_rss_during(workers, stop)))
        before = {pid: psutil.Process(pid).memory_info().rss for pid in workers}
        watcher.start()
        via = upload_seconds(f"{base}{target['url']}.raw", payload, {"authenticationToken": token})
        stop.set()
        watcher.join()
        direct = min(direct, upload_seconds(direct_url, payload))
        via = min(via, upload_seconds(f"{base}{target['url']}.raw", payload, {"authenticationToken": token}))
        shutil.rmtree(folder, ignore_errors=True)
        report("raw upload, 1 GiB: xorest vs straight into the simulator", 1 / via, 1 / direct, "GiB/s")
        growth = max(peaks[pid] - before[pid] for pid in workers) / 2**20
        report("gunicorn worker RSS growth during a 1 GiB upload", growth, None, "MiB")

        # zstd: xorest compresses (gateway mode) vs the zstd CLI on the same bytes
        gw.stop()
        os.environ["XOREST_COMPRESSION"] = "gateway"
        gw_zstd, base, token = start_gateway(sim.url, workers=1)
        del os.environ["XOREST_COMPRESSION"]
        wait_loaded(base, token, 40)
        cookie = f"authenticationToken={token}"
        vms = requests.get(f"{base}/rest/v0/vms?fields=*&filter=power_state:Halted",
                           cookies={"authenticationToken": token}, timeout=30).json()
        vm = vms[0]
        vm_vdis = requests.get(f"{base}/rest/v0/vdis?fields=size,$VBDs", cookies={"authenticationToken": token},
                               timeout=30).json()
        disk = max((v for v in vm_vdis if set(v["$VBDs"]) & set(vm["$VBDs"])), key=lambda v: v["size"])
        write_disk(sim.url, disk["url"].rsplit("/", 1)[1], mixed_disk_bytes(min(384 * MiB, disk["size"])))
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
            mib = os.path.getsize(plain) / MiB
            report(f"zstd XVA ({mib:.0f} MiB) xorest end-to-end vs zstd -3 -T0", mib / ours, mib / min(cli), "MiB/s")
            report(f"zstd XVA ({mib:.0f} MiB) xorest compressor vs zstd -3 -T0 (same bytes)",
                   mib / compressor_seconds(plain), mib / min(cli), "MiB/s")
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        gw.stop()
        if gw_zstd:
            gw_zstd.stop()
        sim.stop()
