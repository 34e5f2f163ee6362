"""Issue #18's targets on a 10,000-VM simulated pool: this tree against a baseline commit,
each started as a user starts it (``xorest serve`` with its defaults), in the same run.

For each tree: the time from ``xorest server add`` to the first full answer of
``/rest/v0/vms?fields=*`` (its last byte received; the client's parsing of its 30 MiB of
JSON, about 0.3 s here, is not counted), the median of three fresh instances, each round
with the floor measured just before it (the simulator's own ``event.from`` of everything:
what any client's first load waits), and the median of each round's time less its floor;
the memory of the whole instance (master, workers, pools daemon) at rest and after the
listing benchmark, and listings per second at 8 connections (wrk): uncached
(``fields=name_label,power_state&filter=power_state:Running`` with another ``limit``
each time, so no rendering is reused) and ``fields=*``.

Run: .venv/bin/python bench/bench_scale.py [BASELINE_REF]   (default: 48ce70d, the main
this work started from).  The baseline is checked out in a temporary git worktree and run
with this venv (its dependencies are a subset).
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import psutil
import requests

from common import PYTHON, ROOT, Process, free_port, report, start_sim, wrk_script, xapi_rpc

VMS = 10_000
SECONDS = 15
ROUNDS = 3  # fresh instances timed from server add to the first answer (the median is printed)
UNCACHED = "/rest/v0/vms?fields=name_label,power_state&filter=power_state:Running&limit={n}"
WHOLE = "/rest/v0/vms?fields=*&limit={n}"


class Tree:
    """One version of xorest: its sources, run with this venv's Python."""

    def __init__(self, name, root):
        self.name, self.root = name, root

    def env(self, data):
        # settings a tree does not know would be refused: start from a clean environment
        env = {k: v for k, v in os.environ.items() if not k.startswith("XOREST_")}
        return dict(env, PYTHONPATH=self.root, XOREST_DATA_DIR=data)

    def cli(self, env, *args, stdin=None):
        return subprocess.run([PYTHON, "-m", "xorest", *args], env=env, input=stdin, text=True, capture_output=True,
                              check=True, cwd=self.root).stdout.strip()


def checkout(ref):
    folder = tempfile.mkdtemp(prefix="xorest-baseline-")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", folder, ref], check=True,
                   capture_output=True)
    return folder


def instance_rss(pid):
    """Bytes of resident memory of a process and all its descendants."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def wrk_rate(base, token, path):
    out = subprocess.run(["wrk", "-t2", "-c8", f"-d{SECONDS}s", "--timeout", "30s", "-s", wrk_script(path, token),
                          base],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        print("# wrk saw non-2xx answers:", out.replace("\n", " | "))
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


class Instance:
    """``xorest serve`` of a tree on a fresh data directory, with an admin's token."""

    def __init__(self, tree):
        self.tree, self.data = tree, tempfile.mkdtemp(prefix="xorest-bench-scale-")
        self.env = tree.env(self.data)
        tree.cli(self.env, "user", "add", "admin@example.com", "--admin", "--password-stdin",
                 stdin="admin-password\n")
        self.cookies = {"authenticationToken": tree.cli(self.env, "token", "create",
                                                        "admin@example.com").splitlines()[-1]}
        self.base = f"http://127.0.0.1:{free_port()}"
        self.server = Process([PYTHON, "-m", "xorest", "serve", "--listen", self.base[len("http://"):]],
                              env=self.env, cwd=tree.root, ready_url=self.base + "/rest/v0", timeout=60)
        self.proc = self.server.proc
        time.sleep(2)  # the workers have booted and are idle

    def get(self, path, timeout=60):
        return requests.get(self.base + path, cookies=self.cookies, timeout=timeout)

    def first_answer(self, sim):
        """Seconds from ``xorest server add`` to the last byte of the first full
        ``/vms?fields=*`` (its JSON is read after the clock stops: the client's work)."""
        started = time.monotonic()
        self.tree.cli(self.env, "server", "add", sim.url, "--password-stdin", stdin="password\n")
        while True:
            answer = self.get("/rest/v0/vms?fields=*", timeout=120)
            arrived = time.monotonic() - started
            if answer.status_code == 200 and len(answer.json()) >= VMS:
                return arrived
            if time.monotonic() - started > 300:
                raise RuntimeError("the pool never loaded: " + self.server.output()[-3000:])
            time.sleep(0.05)

    def stop(self):
        self.server.stop(wait=30)


def first_answers(tree, sim, rounds):
    """``[(floor, first answer)]`` of ``rounds`` fresh instances, the floor measured just
    before each (this machine's speed changes by a third from one minute to the next)."""
    found = []
    for _ in range(rounds):
        instance = Instance(tree)
        try:
            found.append((floor(sim)[0], instance.first_answer(sim)))
        finally:
            instance.stop()
    return found


def measure(tree, sim):
    instance = Instance(tree)
    try:
        empty_rss = instance_rss(instance.proc.pid)
        round_floor = floor(sim)[0]
        first = instance.first_answer(sim)
        # every worker has it too (answers land on any worker)
        while sum(len(instance.get("/rest/v0/vms").json()) >= VMS for _ in range(8)) < 8:
            time.sleep(0.2)
        time.sleep(10)
        at_rest = instance_rss(instance.proc.pid)
        token = instance.cookies["authenticationToken"]
        uncached = wrk_rate(instance.base, token, UNCACHED)
        whole = wrk_rate(instance.base, token, WHOLE)
        after = instance_rss(instance.proc.pid)
    finally:
        instance.stop()
    rounds = [(round_floor, first), *first_answers(tree, sim, ROUNDS - 1)]
    print(f"# {tree.name}: (floor, first full answer) of each round, s: "
          + ", ".join(f"({f:.2f}, {a:.2f})" for f, a in rounds), flush=True)
    return {"first full answer after server add (s)": statistics.median(a for _, a in rounds),
            "first answer less the floor of its round (s)": statistics.median(a - f for f, a in rounds),
            "memory, empty instance (MiB)": empty_rss / 2**20,
            "memory at rest, pool loaded (MiB)": at_rest / 2**20,
            "memory after the listings (MiB)": after / 2**20,
            "uncached listings (req/s, 8 connections)": uncached,
            "fields=* on 10k VMs (req/s, 8 connections)": whole}


def floor(sim):
    """The simulator's own time to send every record (what any client's first load waits)."""
    from xorest.xapi.watcher import WATCHED_CLASSES

    call = xapi_rpc(sim.url)
    started = time.monotonic()
    body = requests.post(sim.url + "/jsonrpc", timeout=300, json={
        "jsonrpc": "2.0", "id": 1, "method": "event.from",
        "params": [call.session, WATCHED_CLASSES, "", 0.0]}).content
    return time.monotonic() - started, len(body)


TARGETS = {  # metric -> (target ratio to the baseline, or an absolute bound), as issue #18 states them
    "first full answer after server add (s)": "<= 5 s",
    "memory at rest, pool loaded (MiB)": "<= 600 MiB",
    "memory after the listings (MiB)": "<= 900 MiB",
    "uncached listings (req/s, 8 connections)": ">= 2x",
    "fields=* on 10k VMs (req/s, 8 connections)": ">= 1.5x",
}


if __name__ == "__main__":
    if not shutil.which("wrk"):
        sys.exit("wrk is needed (apt-get install wrk)")
    ref = sys.argv[1] if len(sys.argv) > 1 else "48ce70d"
    baseline_root = checkout(ref)
    sim = start_sim("--vms", str(VMS))
    try:
        seconds, size = floor(sim)
        report("floor: the simulator's event.from of every record", seconds, None, f"s, {size >> 20} MiB")
        results = {}
        for tree in (Tree(f"baseline {ref}", baseline_root), Tree("this tree", ROOT)):
            results[tree.name] = measure(tree, sim)
            print(f"# {tree.name}: {results[tree.name]}", flush=True)
        old, new = results[f"baseline {ref}"], results["this tree"]
        print("metric,this tree,baseline,ratio,target")
        for metric in new:
            ratio = new[metric] / old[metric] if old[metric] else float("nan")
            print(f"{metric},{new[metric]:.4g},{old[metric]:.4g},{ratio:.3f},{TARGETS.get(metric, '')}",
                  flush=True)
    finally:
        sim.stop()
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", baseline_root], capture_output=True)
