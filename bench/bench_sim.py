"""Simulator at 10k VMs: build time, VM.get_all_records over JSON-RPC and XML-RPC, memory.

Baseline: the same call on a 50-VM pool (ratio = cost growth for 200x the VMs).
Run: .venv/bin/python bench/bench_sim.py
"""
import resource
import time

import requests

from common import report, timed


def measure(vms):
    from xorest.sim import Simulator

    started = time.perf_counter()
    sim = Simulator(vms=vms).start()
    build = time.perf_counter() - started
    rpc = lambda method, *p: requests.post(sim.url + "/jsonrpc", json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                                      "params": list(p)}, timeout=120)
    session = rpc("session.login_with_password", "root", "password").json()["result"]
    json_time = timed(lambda: rpc("VM.get_all_records", session).content, repeat=3)
    xml_body = ("<?xml version='1.0'?><methodCall><methodName>VM.get_all_records</methodName><params>"
                f"<param><value>{session}</value></param></params></methodCall>")
    started = time.perf_counter()
    requests.post(sim.url + "/", data=xml_body, timeout=120).content
    xml_cold = time.perf_counter() - started  # first call: nothing memoised yet
    xml_time = timed(lambda: requests.post(sim.url + "/", data=xml_body, timeout=120).content, repeat=3)
    sim.stop()
    return build, json_time, xml_time, xml_cold


if __name__ == "__main__":
    small = measure(50)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    large = measure(10000)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report("sim build 10k VMs", large[0], small[0], "s")
    report("sim VM.get_all_records 10k JSON-RPC", large[1], small[1], "s")
    report("sim VM.get_all_records 10k XML-RPC, first call", large[3], small[3], "s")
    report("sim VM.get_all_records 10k XML-RPC, later calls", large[2], small[2], "s")
    report("process max RSS after 10k-VM sim", rss / 1024, before / 1024, "MiB")
