"""The routes of Xen Orchestra's that read one object's state, through gunicorn against the
simulator: a VM's and a pool's dashboards, a host's audit log, log files and SMT, a VM's
backup jobs (none: xorest has no backup engine).  Then the SMT plugin's answers, without
processes."""
import gzip
import io
import json
import tarfile

import pytest
import requests

from xorest.errors import UpstreamError
from xorest.objects.values import parse_datetime
from xorest.services import smt
from xorest.xapi import XapiError

from .conftest import Gateway, sim_admin, start_sim
from .management import client, xapi

NOWHERE = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A pool whose members answer on their own addresses (their logs and RRDs)."""
    tmp = tmp_path_factory.mktemp("hostinfo")
    sim = start_sim(tmp, "--vms", "12", "--seed", "1", "--slave", "127.0.0.2", "--slave", "127.0.0.3")
    gw = Gateway(tmp, sim.url)
    api = client(gw)
    yield sim, gw, api
    gw.stop()
    sim.stop()


def _ndjson(response):
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/x-ndjson", response.text
    return [json.loads(line) for line in response.text.splitlines()]


def test_a_vm_dashboard(stack):
    sim, gw, api = stack
    vm = api.objects("vms", "power_state:Running")[0]
    sim_admin(sim.url, "alarm", {"uuid": vm["uuid"], "variable": "cpu_usage", "value": 0.97})
    alarm = api.until(lambda: api.get(f"/rest/v0/vms/{vm['id']}/alarms").json(), what="the VM's alarm")
    board = api.get(f"/rest/v0/vms/{vm['id']}/dashboard").json()
    info = board["quickInfo"]
    assert info["id"] == info["uuid"] == vm["id"] and info["power_state"] == "Running"
    assert info["CPUs"] == {"number": vm["CPUs"]["number"]} and info["memory"] == {"size": vm["memory"]["size"]}
    assert info["host"] == vm["$container"] and info["$pool"] == vm["$pool"] and info["tags"] == vm["tags"]
    assert info["os_version"] == {"name": vm["os_version"]["name"]} and info["mainIpAddress"] == vm["mainIpAddress"]
    assert info["pvDriversDetected"] is True and info["startTime"] == vm["startTime"]
    assert [f"/rest/v0/alarms/{a}" for a in board["alarms"]] == alarm
    assert board["backupsInfo"] == {"replication": {}, "lastRuns": [], "vmProtection": "not-in-active-job",
                                    "backupArchives": []}
    lines = _ndjson(api.get(f"/rest/v0/vms/{vm['id']}/dashboard", ndjson="true"))
    assert lines == [{"quickInfo": info}, {"alarms": board["alarms"]}, {"backupsInfo": {"replication": {}}},
                     {"backupsInfo": {"lastRuns": [], "vmProtection": "not-in-active-job"}},
                     {"backupsInfo": {"backupArchives": []}}]
    for halted in api.objects("vms", "power_state:Halted"):  # in the pool, or on the host of its local disks
        quick = api.get(f"/rest/v0/vms/{halted['id']}/dashboard").json()["quickInfo"]
        assert quick.get("host") == (halted["$container"] if halted["$container"] != halted["$pool"] else None)
    assert api.get(f"/rest/v0/vms/{NOWHERE}/dashboard").status_code == 404
    template = api.objects("vm-templates")[0]
    assert api.get(f"/rest/v0/vms/{template['id']}/dashboard").status_code == 404  # a VM's, as in Xen Orchestra
    assert api.get(f"/rest/v0/vms/{vm['id']}/dashboard", ndjson="maybe").status_code == 400


def test_a_vm_dashboard_shows_its_newest_replica(stack):
    """A replica is a VM a backup job made: its snapshots name the source in xo:backup:vm."""
    sim, gw, api = stack
    source = api.objects("vms", "power_state:Halted")[0]
    replica = next(v for v in api.objects("vms", "power_state:Halted") if v["id"] != source["id"])
    rpc = xapi(sim)
    for datetime in ("20260101T000000Z", "20260301T120000Z"):
        snapshot = api.ok("vms", replica["id"], "snapshot", {"name_label": f"replica {datetime}"})["id"]
        ref = api.one("vm-snapshots", snapshot)["_xapiRef"]
        rpc("VM.add_to_other_config", ref, "xo:backup:vm", source["id"])
        rpc("VM.add_to_other_config", ref, "xo:backup:datetime", datetime)
    newest = parse_datetime("20260301T120000Z") * 1000

    def replication():
        found = api.get(f"/rest/v0/vms/{source['id']}/dashboard").json()["backupsInfo"]["replication"]
        return found if found.get("timestamp") == newest else None
    found = api.until(replication, what="the newest replica seen")
    assert found["id"] == replica["id"]
    srs = {api.one("vdis", api.one("vbds", b)["VDI"])["$SR"] for b in replica["$VBDs"]
           if api.one("vbds", b).get("VDI") and not api.one("vbds", b)["is_cd_drive"]}
    assert found.get("sr") == (srs.pop() if len(srs) == 1 else None)
    # the replica's own dashboard: its snapshots are of itself, not a replica of it
    assert api.get(f"/rest/v0/vms/{replica['id']}/dashboard").json()["backupsInfo"]["replication"] == {}


def test_a_pool_dashboard(stack):
    sim, gw, api = stack
    pool = api.objects("pools")[0]
    host = api.objects("hosts")[1]
    sim_admin(sim.url, "alarm", {"uuid": host["uuid"], "variable": "cpu_usage", "value": 0.99})
    api.until(lambda: api.get(f"/rest/v0/hosts/{host['id']}/alarms").json(), what="the host's alarm")
    board = api.get(f"/rest/v0/pools/{pool['id']}/dashboard").json()
    hosts, vms = api.objects("hosts"), api.objects("vms")
    assert board["hosts"]["status"] == {"running": 3, "disabled": 0, "halted": 0, "total": 3}
    states = [vm["power_state"] for vm in vms]
    assert board["vms"]["status"] == {"running": states.count("Running"), "halted": states.count("Halted"),
                                      "paused": states.count("Paused"), "total": len(vms),
                                      "suspended": states.count("Suspended")}
    assert set(board["alarms"]) == {a["id"] for a in api.objects("alarms")} and board["alarms"]
    assert board["cpuProvisioning"] == {
        "total": pool["cpus"]["cores"], "assigned": sum(v["CPUs"]["number"] for v in vms if v["power_state"] == "Running"),
        "percent": pytest.approx(100 * sum(v["CPUs"]["number"] for v in vms if v["power_state"] == "Running")
                                 / pool["cpus"]["cores"])}
    writable = [s for s in api.objects("srs") if s["size"] > 0 and s["content_type"] != "iso" and s["SR_type"] != "udev"]
    fullest = sorted(writable, key=lambda s: -s["physical_usage"] / s["size"])[:5]
    assert [s["id"] for s in board["srs"]["topFiveUsage"]] == [s["id"] for s in fullest]
    assert board["srs"]["topFiveUsage"][0]["percent"] == pytest.approx(
        100 * fullest[0]["physical_usage"] / fullest[0]["size"])
    ram = board["hosts"]["topFiveUsage"]["ram"]
    assert {h["id"] for h in ram} == {h["id"] for h in hosts}
    assert [h["percent"] for h in ram] == sorted((h["percent"] for h in ram), reverse=True)
    cpu = board["hosts"]["topFiveUsage"]["cpu"]
    assert {h["id"] for h in cpu} == {h["id"] for h in hosts} and all(0 <= h["percent"] <= 100 for h in cpu)
    live = {v["id"] for v in vms if v["power_state"] in ("Running", "Paused")}
    top = board["vms"]["topFiveUsage"]
    assert top["cpu"] and {v["id"] for v in top["cpu"]} <= live and len(top["cpu"]) <= 5
    agents = {v["id"] for v in vms if v.get("managementAgentDetected")}
    assert {v["id"] for v in top["ram"]} <= live & agents
    assert all(set(v) == {"id", "name_label", "memory", "memoryFree", "percent"} for v in top["ram"])
    patches = api.get(f"/rest/v0/pools/{pool['id']}/missing_patches").json()
    assert board["hosts"]["missingPatches"] == {"hasAuthorization": True, "missingPatches": patches}
    lines = _ndjson(api.get(f"/rest/v0/pools/{pool['id']}/dashboard", ndjson="true"))
    paths = ("hosts.status", "vms.status", "alarms", "hosts.missingPatches", "srs.topFiveUsage",
             "hosts.topFiveUsage.ram", "hosts.topFiveUsage.cpu", "cpuProvisioning", "vms.topFiveUsage")
    assert len(lines) == len(paths)
    for line, path in zip(lines, paths):  # each part nested where it belongs
        for key in path.split("."):
            assert list(line) == [key], (path, line)
            line = line[key]
    assert lines[0] == {"hosts": {"status": board["hosts"]["status"]}}
    assert api.get(f"/rest/v0/pools/{NOWHERE}/dashboard").status_code == 404


def test_a_pool_dashboard_whose_members_do_not_answer(tmp_path):
    """Members out of reach (no address of theirs answers): the parts made of their RRDs are
    Xen Orchestra's failed part, the others are answered; their logs are a 503."""
    sim = start_sim(tmp_path, "--vms", "4", "--seed", "3")
    gw = Gateway(tmp_path, sim.url, workers=1)
    try:
        api = client(gw)
        pool = api.objects("pools")[0]
        board = api.get(f"/rest/v0/pools/{pool['id']}/dashboard").json()
        assert board["hosts"]["topFiveUsage"]["cpu"] == {"error": True}
        assert board["vms"]["topFiveUsage"] == {"error": True}
        assert board["hosts"]["status"]["total"] == 3 and len(board["hosts"]["topFiveUsage"]["ram"]) == 3
        member = next(h for h in api.objects("hosts") if h["id"] != pool["master"])
        away = api.get(f"/rest/v0/hosts/{member['id']}/logs.tgz")
        assert away.status_code == 503 and "session" not in away.text
        task = [t for t in api.objects("tasks") if t["properties"]["name"] == "REST API: download host logs"]
        assert [t["status"] for t in task] == ["failure"]
        # a halted host serves no logs; its SMT is still known (from its CPU information)
        api.ok("hosts", member["id"], "clean_shutdown", {"bypassEvacuate": True})
        api.until(lambda: api.one("hosts", member["id"])["power_state"] == "Halted", what="the host down")
        halted = api.get(f"/rest/v0/hosts/{member['id']}/audit.txt")
        assert halted.status_code == 409 and halted.json()["data"]["property"] == "power_state"
        assert api.get(f"/rest/v0/hosts/{member['id']}/smt").json() == {"enabled": True}
        assert api.get(f"/rest/v0/pools/{pool['id']}/dashboard").json()["hosts"]["status"]["halted"] == 1
    finally:
        gw.stop()
        sim.stop()


def test_a_host_s_audit_log(stack):
    sim, gw, api = stack
    pool = api.objects("pools")[0]
    vm = api.objects("vms", "power_state:Halted")[0]
    api.ok("vms", vm["id"], "start")
    plain = requests.get(f"{gw.url}/rest/v0/hosts/{pool['master']}/audit.txt", headers={"Accept-Encoding": "identity"},
                         cookies={"authenticationToken": gw.token}, timeout=30)
    assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
    assert plain.headers["Content-Type"] == "application/octet-stream"
    assert plain.headers["Content-Disposition"].startswith('attachment; filename="xcp-host-01-')
    assert plain.headers["Content-Disposition"].split(";")[1].endswith('-audit.txt"')
    started = [line for line in plain.text.splitlines() if "'VM.start'" in line]
    assert started and all("|audit|xcp-host-01|" in line for line in started)
    assert f"('vm' '{vm['name_label']}' '{vm['uuid']}' '{vm['_xapiRef']}')" in started[-1]
    assert "'ALLOWED' 'OK' 'API' 'VM.start'" in started[-1] and "'password'" not in plain.text
    assert not [line for line in plain.text.splitlines() if ".get" in line.split("|")[4]]  # getters are not audited
    compressed = requests.get(f"{gw.url}/rest/v0/hosts/{pool['master']}/audit.txt", stream=True,
                              headers={"Accept-Encoding": "gzip"}, cookies={"authenticationToken": gw.token},
                              timeout=30)
    assert compressed.headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(compressed.raw.read()).decode()
    assert "'VM.start'" in text and text.count("\n") >= plain.text.count("\n")
    with pytest.raises(Exception, match="VM_BAD_POWER_STATE"):  # refused calls are audited with their error
        xapi(sim)("VM.start", vm["_xapiRef"], False, False)
    again = api.get(f"/rest/v0/hosts/{pool['master']}/audit.txt").text
    assert "'ERROR:VM_BAD_POWER_STATE' 'API' 'VM.start'" in again
    # a member's trail holds what it was asked itself: the transfers sent to it
    member = next(h for h in api.objects("hosts") if h["id"] != pool["master"])
    lines = api.get(f"/rest/v0/hosts/{member['id']}/audit.txt").text.splitlines()
    assert lines and all("'HTTP'" in line and f"|audit|{member['hostname']}|" in line for line in lines)
    # the downloads are tasks of the log, linked to the pool's tasks
    tasks = [t for t in api.objects("tasks") if t["properties"]["name"] == "REST API: download audit log"]
    assert tasks and all(t["status"] == "success" and t["properties"]["objectId"] in (pool["master"], member["id"])
                         for t in tasks)
    assert tasks[-1]["properties"]["xapiTasks"][0]["method"] == "/audit_log"
    assert api.get(f"/rest/v0/hosts/{NOWHERE}/audit.txt").status_code == 404


def test_a_host_s_log_files(stack):
    sim, gw, api = stack
    for host in api.objects("hosts"):
        response = api.get(f"/rest/v0/hosts/{host['id']}/logs.tgz")
        assert response.status_code == 200 and response.headers["Content-Type"] == "application/gzip"
        assert response.headers["X-Xapi-Task"] and "Content-Length" not in response.headers
        with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
            assert {"var/log/audit.log", "var/log/xensource.log", "var/log/SMlog"} <= set(archive.getnames())
            xensource = archive.extractfile("var/log/xensource.log").read().decode()
        assert f" {host['hostname']} xapi: " in xensource
    assert api.get(f"/rest/v0/hosts/{NOWHERE}/logs.tgz").status_code == 404
    # the pool's own task of a download is cancelled if the client leaves: none stays pending
    assert not [t for t in api.objects("xapi-tasks") if t.get("status") == "pending"
                and t.get("name_label", "").startswith("xorest download")]


def test_logs_need_a_pool_admin(stack):
    sim, gw, api = stack
    reader = gw.cli("token", "create", "admin@example.com", "--role", "read-only").strip()
    host = api.objects("hosts")[0]
    for path in ("audit.txt", "logs.tgz"):
        refused = requests.get(f"{gw.url}/rest/v0/hosts/{host['id']}/{path}", cookies={"authenticationToken": reader},
                               timeout=30)
        assert refused.status_code == 403 and refused.json()["data"]["permission"] == "pool.admin"
    smt_answer = requests.get(f"{gw.url}/rest/v0/hosts/{host['id']}/smt", cookies={"authenticationToken": reader},
                              timeout=30)
    assert smt_answer.status_code == 200 and smt_answer.json() == {"enabled": True}  # 2 threads per core
    assert api.get(f"/rest/v0/hosts/{NOWHERE}/smt").status_code == 404


def test_a_vm_s_backup_jobs_are_none(stack):
    sim, gw, api = stack
    vm = api.objects("vms")[0]
    assert api.get(f"/rest/v0/vms/{vm['id']}/backup-jobs").json() == []
    assert api.get(f"/rest/v0/vms/{vm['id']}/backup-jobs", fields="id,name", limit="3").json() == []
    assert _ndjson(api.get(f"/rest/v0/vms/{vm['id']}/backup-jobs", ndjson="true")) == []
    markdown = api.get(f"/rest/v0/vms/{vm['id']}/backup-jobs", markdown="true")
    assert markdown.headers["Content-Type"].startswith("text/markdown") and markdown.text == "No results."
    assert api.get(f"/rest/v0/vms/{NOWHERE}/backup-jobs").status_code == 404
    bad = api.get(f"/rest/v0/vms/{vm['id']}/backup-jobs", filter="name:(")
    assert bad.status_code == 400 and "position" in bad.json()["data"]
    assert api.get(f"/rest/v0/vms/{vm['id']}/backup-jobs", limit="-1").status_code == 400
    assert api.get(f"/rest/v0/vms/{vm['id']}/backup-jobs", ndjson="true", markdown="true").status_code == 400


def test_the_routes_are_documented(stack):
    sim, gw, api = stack
    paths = requests.get(f"{gw.url}/rest/v0/openapi.json", timeout=30).json()["paths"]
    for path, statuses in (("/vms/{key}/dashboard", {"200", "404"}), ("/pools/{key}/dashboard", {"200", "404"}),
                           ("/hosts/{key}/audit.txt", {"200", "404", "409", "503"}),
                           ("/hosts/{key}/logs.tgz", {"200", "404", "409", "503"}),
                           ("/hosts/{key}/smt", {"200", "404"}), ("/vms/{key}/backup-jobs", {"200", "400", "404"})):
        answers = set(paths[path]["get"]["responses"])
        assert statuses <= answers, (path, answers)


class _Rpc:
    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def call(self, method, *args):
        self.calls.append((method, *args))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class _Fakes:
    """A host without ``threads_per_core`` (older than XCP-ng 8.3) and its plugin's answer."""

    def __init__(self, answer):
        self.rpc = _Rpc(answer)
        host = {"id": "h1", "$pool": "p1", "_xapiRef": "OpaqueRef:h1", "CPUs": {"cpu_count": "8"}}
        self.collections = type("C", (), {"get": staticmethod(lambda name, key: host)})()
        self.pools = type("P", (), {"connection_for": staticmethod(lambda obj: self)})()


@pytest.mark.parametrize("answer, enabled", [
    ("true", True), ("false", False), (XapiError("XENAPI_MISSING_PLUGIN", ["hyperthreading.py"]), False),
    (XapiError("UNKNOWN_XENAPI_PLUGIN_FUNCTION", ["get_hyperthreading"]), False)])
def test_smt_of_older_hosts_comes_from_their_plugin(answer, enabled):
    fakes = _Fakes(answer)
    assert smt.SmtService(fakes.collections, fakes.pools).enabled("h1") is enabled
    assert fakes.rpc.calls == [("host.call_plugin", "OpaqueRef:h1", "hyperthreading.py", "get_hyperthreading", {})]


def test_smt_plugin_failures_are_errors():
    fakes = _Fakes(XapiError("XENAPI_PLUGIN_FAILURE", ["get_hyperthreading", "IOError", "no /proc"]))
    with pytest.raises(UpstreamError) as failed:
        smt.SmtService(fakes.collections, fakes.pools).enabled("h1")
    assert failed.value.data["code"] == "XENAPI_PLUGIN_FAILURE"
    assert smt.threads_per_core({"CPUs": {"threads_per_core": "1"}}) == 1
    assert smt.threads_per_core({"CPUs": {"threads_per_core": "x"}}) is None
