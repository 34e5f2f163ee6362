"""``GET /rest/v0/metrics`` through gunicorn (two workers, as ``xorest serve`` starts them)
against a simulator whose every host is reachable: read with prometheus_client's own
parser, compared with the stats endpoint, the workers' shared counters and the simulator."""
import json
import os
import re
import time

import psutil
import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ROOT, Gateway, sim_admin, start_sim

ROUTE = "/rest/v0/{collection}/{key}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    sim = start_sim(tmp, "--seed", "7", "--vms", "30", "--slave", "127.0.0.2", "--slave", "127.0.0.3",
                    name="metrics-sim")
    gw = Gateway(tmp, sim.url, name="metrics-gw", workers=2, env={"XOREST_METRICS_INTERVAL": "1"})
    gw.sim = sim
    yield gw
    gw.stop()
    sim.stop()


def _families(text):
    return {family.name: family for family in text_string_to_metric_families(text)}


def _scrape(gw, **kw):
    kw.setdefault("cookies", {"authenticationToken": gw.token})
    answer = requests.get(gw.url + "/rest/v0/metrics", timeout=30, **kw)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert answer.headers["Content-Encoding"] == "gzip"  # requests asks for it, as Prometheus does
    return _families(answer.text)


def _samples(families, name, **labels):
    """The samples named ``name`` (a counter's ``_total``, a histogram's ``_count``...) with ``labels``."""
    return [s for family in families.values() for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def _pool_series(gw, timeout=30):
    """A scrape once the collector has read every host."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        families = _scrape(gw)
        up = _samples(families, "xen_host_rrd_up")
        if len(up) == 3 and all(s.value == 1 for s in up) and _samples(families, "xen_vm_cpu_usage_ratio"):
            return families
        time.sleep(0.3)
    raise AssertionError(f"no pool series: {gw.proc.output()[-3000:]}")


def _running_vm(gw):
    vms = gw.get("/rest/v0/vms?fields=id,name_label,$container&filter=power_state:Running").json()
    return min(vms, key=lambda vm: vm["id"])


def _workers(gw):
    return psutil.Process(gw.proc.process.pid).children()


def test_a_vms_cpu_is_its_stats(stack):
    """The same data source at the same row as /vms/<id>/stats (the collector may have read
    an older row than the stats' newest: the one at the host's rrd timestamp)."""
    vm = _running_vm(stack)
    for _ in range(5):
        families = _pool_series(stack)
        cpus = {s.labels["cpu"]: s.value for s in _samples(families, "xen_vm_cpu_usage_ratio", vm=vm["id"])}
        [when] = [s.value for s in _samples(families, "xen_host_rrd_timestamp_seconds", host=vm["$container"])]
        stats = stack.get(f"/rest/v0/vms/{vm['id']}/stats").json()
        rows_back = (stats["endTimestamp"] - when) / stats["interval"]
        if 0 <= rows_back < len(stats["stats"]["cpus"]["0"]):
            break
    sample = _samples(families, "xen_vm_cpu_usage_ratio", vm=vm["id"])[0]
    assert sample.labels["vm_name"] == vm["name_label"] and sample.labels["host"] == vm["$container"]
    assert sample.labels["pool"] and sample.labels["pool_name"] and sample.labels["host_name"]
    assert set(cpus) == set(stats["stats"]["cpus"]) and cpus
    index = len(stats["stats"]["cpus"]["0"]) - 1 - int(rows_back)
    for cpu, ratio in cpus.items():
        assert ratio * 100 == pytest.approx(stats["stats"]["cpus"][cpu][index], rel=1e-9), (cpu, rows_back)
    memory = _samples(families, "xen_vm_memory_bytes", vm=vm["id"])[0].value
    assert memory == pytest.approx(stats["stats"]["memory"][index])
    # hosts, network, disks and SRs are there too; the gateway's own metrics
    host = vm["$container"]
    assert _samples(families, "xen_host_memory_total_bytes", host=host)[0].value > 0
    assert _samples(families, "xen_host_cpu_usage_ratio", host=host)
    assert _samples(families, "xen_vm_network_receive_bytes_per_second", vm=vm["id"])
    assert _samples(families, "xen_vm_disk_read_bytes_per_second", vm=vm["id"])
    srs = stack.get("/rest/v0/srs?fields=id,size").json()
    sizes = {s.labels["sr"]: s.value for s in _samples(families, "xen_sr_size_bytes")}
    assert sizes == {sr["id"]: sr["size"] for sr in srs if "size" in sr}
    cached = {s.labels["collection"]: s.value for s in _samples(families, "xorest_cache_objects")}
    assert cached["vms"] == len(stack.get("/rest/v0/vms").json())
    assert cached["hosts"] == 3
    [connection] = _samples(families, "xorest_pool_connection")
    assert connection.labels["state"] == "connected" and connection.value == 1
    assert _samples(families, "xorest_pool_event_age_seconds")
    assert "xorest_tasks" in families and "xorest_transfers_running" in families


def worker_values(gw, name, kind="counter", **labels):
    """``pid -> value`` of the samples ``name`` with ``labels``, from each worker's own file
    (``kind``: ``counter``, ``gauge_livesum``...) of the folder they share their values in."""
    # the folder the master made (after its own start: not in /proc's environ): where the
    # workers' files are open
    folder = next(os.path.dirname(f.path) for worker in _workers(gw) for f in worker.open_files()
                  if os.path.basename(f.path).startswith("counter_"))
    values = {}
    for file in os.listdir(folder):
        if not file.startswith(kind + "_"):
            continue
        pid = int(file[len(kind) + 1:-len(".db")])
        for metric in MultiProcessCollector.merge([os.path.join(folder, file)], accumulate=False):
            values[pid] = values.get(pid, 0) + sum(
                s.value for s in metric.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
    return values


def _per_worker(gw, route):
    """``pid -> requests to route``."""
    return worker_values(gw, "xorest_http_requests_total", route=route)


def test_request_counters_add_up_across_workers(stack):
    def total():
        return sum(s.value for s in _samples(_scrape(stack), "xorest_http_requests_total", route=ROUTE,
                                              method="GET", status="200"))
    before = total()
    host = stack.get("/rest/v0/hosts").json()[0].rsplit("/", 1)[1]
    made = 0
    while made < 400:  # new connections, until both workers have answered some
        for _ in range(10):
            assert requests.get(f"{stack.url}/rest/v0/hosts/{host}", cookies={"authenticationToken": stack.token},
                                timeout=30).status_code == 200
        made += 10
        if len([count for count in _per_worker(stack, ROUTE).values() if count]) >= 2:
            break
    counts = _per_worker(stack, ROUTE)
    assert len([count for count in counts.values() if count]) >= 2, counts
    # whichever worker answers the scrape, it counts every worker's requests
    assert {total() - before for _ in range(4)} == {made}
    latency = _samples(_scrape(stack), "xorest_http_request_duration_seconds_count", route=ROUTE, method="GET")
    assert latency[0].value >= made


def test_credentials(stack):
    assert requests.get(stack.url + "/rest/v0/metrics", timeout=30).status_code == 401
    plain = requests.get(stack.url + "/rest/v0/metrics", cookies={"authenticationToken": stack.token}, timeout=30,
                         headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and "xorest_http_requests_total" in plain.text
    # Prometheus' authorization setting: a Bearer token
    families = _scrape(stack, cookies={}, headers={"Authorization": f"Bearer {stack.token}"})
    assert "xorest_http_requests" in families
    read_only = stack.cli("token", "create", "admin@example.com", "--role", "read-only").strip()
    assert "xorest_http_requests" in _scrape(stack, cookies={}, headers={"Authorization": f"Bearer {read_only}"})
    none = stack.cli("token", "create", "user@example.com").strip()  # a user without a role
    assert requests.get(stack.url + "/rest/v0/metrics", cookies={"authenticationToken": none},
                        timeout=30).status_code == 403


def test_a_scoped_token_sees_only_its_vms(stack):
    everything = _pool_series(stack)
    vm = _running_vm(stack)
    scoped = stack.cli("token", "create", "admin@example.com", "--scope", f"id:\"{vm['id']}\"").strip()
    families = _scrape(stack, cookies={"authenticationToken": scoped})
    owners = {s.labels.get("vm") for family in families.values() for s in family.samples}
    assert owners == {vm["id"]}, owners  # no host, SR or other VM series, none of the gateway's
    assert {s.labels["cpu"] for s in _samples(families, "xen_vm_cpu_usage_ratio")} == \
        {s.labels["cpu"] for s in _samples(everything, "xen_vm_cpu_usage_ratio", vm=vm["id"])}
    assert "xorest_http_requests" not in families and not _samples(families, "xen_host_rrd_up")


def test_a_scrape_never_waits_for_the_pool(stack):
    """The hosts' RRDs answer after 20 s: the collector waits, scrapes do not (each answers
    within the 10 s liveness bound, from what was read before)."""
    _pool_series(stack)
    sim_admin(stack.sim.url, "faults", {"rrd_latency": 20})
    try:
        time.sleep(3)  # the collector is now waiting in a reading
        stamps = set()
        for _ in range(5):
            answer = requests.get(stack.url + "/rest/v0/metrics", cookies={"authenticationToken": stack.token},
                                  timeout=10)
            assert answer.status_code == 200
            stamps.add(_samples(_families(answer.text), "xorest_metrics_collection_timestamp_seconds")[0].value)
            assert stack.get("/rest/v0/hosts", timeout=10).status_code == 200
        assert len(stamps) == 1  # no new reading meanwhile: the scrapes did not make any
    finally:
        sim_admin(stack.sim.url, "faults", {"reset": True})


def test_the_metrics_route_is_documented(stack):
    operation = stack.get("/rest/v0/openapi.json").json()["paths"]["/metrics"]["get"]
    assert "text/plain; version=0.0.4; charset=utf-8" in operation["responses"]["200"]["content"]


def test_the_grafana_dashboard_uses_served_names(stack):
    """Every metric deploy/grafana/xorest.json queries is in a scrape."""
    dashboard = json.load(open(os.path.join(ROOT, "deploy", "grafana", "xorest.json")))
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", ())]
    used = {name for query in queries for name in re.findall(r"\b(?:xen|xorest)_[a-z_]+", query)}
    served = {sample.name for family in _pool_series(stack).values() for sample in family.samples}
    served |= {family.name for family in _pool_series(stack).values()}  # families without samples yet
    assert len(used) > 15 and used <= served, used - served


def test_transfers_are_counted(stack):
    """An export's bytes sent and an import's bytes received, whichever worker served them;
    none is running once they are done."""
    def transferred():
        families = _scrape(stack)
        return ({s.labels["kind"]: s.value for s in _samples(families, "xorest_transfer_bytes_total")},
                {s.labels["kind"]: s.value for s in _samples(families, "xorest_transfers_running")})
    before, _ = transferred()
    disk = stack.small_disk("id,size")
    exported = stack.get(f"/rest/v0/vdis/{disk['id']}.raw").content
    data = os.urandom(1 << 20)
    put = requests.put(f"{stack.url}/rest/v0/vdis/{disk['id']}.raw", data=data, timeout=60,
                       cookies={"authenticationToken": stack.token})
    assert put.status_code == 204, put.text
    after, running = transferred()
    assert after["export"] - before["export"] == len(exported) == disk["size"]
    assert after["import"] - before["import"] == len(data)
    assert running == {"export": 0, "import": 0}
