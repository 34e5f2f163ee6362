"""What a hostile pool, a hostile filter or a killed worker could do to xorest, through
gunicorn against the simulator."""
import http.server
import os
import signal
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from .conftest import Gateway, sim_admin
from .test_sim import JsonRpc


class Listener:
    """A stranger on the network: records every request, answers with its own bytes."""

    def __init__(self):
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                seen.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                body = b"EVIL" * 1024
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_transfer_redirects_lead_only_to_the_pool_s_hosts(processes, tmp_path):
    sim = processes.sim("--vms", "4", "--seed", "51")
    gw = processes.add(Gateway(tmp_path, sim.url, workers=1))
    listener = Listener()
    vdi = gw.small_disk("size,read_only")
    cookies = {"authenticationToken": gw.token}
    try:
        sim_admin(sim.url, "faults", {"transfer_redirect": listener.url})
        download = requests.get(f"{gw.url}{vdi['href']}.raw", cookies=cookies, timeout=30)
        upload = requests.put(f"{gw.url}{vdi['href']}.raw", data=b"x" * 4096, cookies=cookies, timeout=30)
        for answer in (download, upload):
            assert answer.status_code in (502, 503), answer.text[:200]
            assert "not one of its hosts" in answer.json()["error"]
            assert "session_id=" not in answer.text or "session_id=<redacted>" in answer.text
            assert "OpaqueRef" not in answer.text
        assert listener.seen == []  # neither the body nor the session ever reached it
        assert b"EVIL" not in download.content
        # a member the transfer may go to, but which does not answer (host 2's address: the
        # simulator serves the master's only): the error names where, never the session
        member = f"http://127.0.0.2:{urlsplit(sim.url).port}"
        sim_admin(sim.url, "faults", {"transfer_redirect": member})
        download = requests.get(f"{gw.url}{vdi['href']}.raw", cookies=cookies, timeout=30)
        upload = requests.put(f"{gw.url}{vdi['href']}.raw", data=b"x" * 4096, cookies=cookies, timeout=30)
        for answer in (download, upload):
            assert answer.status_code == 503, answer.text[:300]
            assert "127.0.0.2" in answer.json()["error"]
            assert "session_id=" not in answer.text or "session_id=<redacted>" in answer.text
            assert "OpaqueRef" not in answer.text
    finally:
        sim_admin(sim.url, "faults", {"reset": True})
        listener.close()
    assert requests.get(f"{gw.url}{vdi['href']}.raw", cookies=cookies, timeout=60).status_code == 200
    assert "OpaqueRef:" not in "".join(line for line in gw.proc.output().splitlines() if "session" in line)


def test_a_redirect_from_https_to_http_is_refused(processes):
    from xorest.xapi import XapiClient, XapiStream, XapiUnreachable

    sim = processes.sim("--vms", "2", "--seed", "52", "--tls")
    ca_path = sim.output().split("CA certificate: ")[1].split()[0]
    client = XapiClient(sim.url, "root", "password", ca_file=ca_path, members=lambda: {"127.0.0.1"})
    client.login()
    vdi = next(iter(client.call("VDI.get_all")))
    plain = sim.url.replace("https://", "http://")
    sim_admin_tls = requests.post(f"{sim.url}/_sim/faults", json={"transfer_redirect": plain}, timeout=10,
                                  verify=ca_path)
    assert sim_admin_tls.ok
    with pytest.raises(XapiUnreachable, match="from HTTPS to http"):
        XapiStream(client, "/export_raw_vdi", {"vdi": vdi, "format": "raw"}, "downgrade test")


def test_a_filter_never_holds_a_thread_past_its_budget(gateway):
    """A pattern the old static check missed (JavaScript's empty class ``[]``)."""
    for text in ("name_label:/[]|^(a|a)+$]/", "/^(a|a)+$/"):
        answer = gateway.get("/rest/v0/vms", params={"filter": text, "fields": "name_label"}, timeout=20)
        # the pool's names do not trigger the blow-up: a plain answer
        assert answer.status_code == 200
    rpc = JsonRpc(gateway_sim(gateway))
    vm = next(ref for ref, r in rpc("VM.get_all_records").items()
              if not (r["is_a_template"] or r["is_control_domain"]))
    original = rpc("VM.get_name_label", vm)
    rpc("VM.set_name_label", vm, "a" * 40 + "!")
    try:
        deadline = time.monotonic() + 10
        while not gateway.get("/rest/v0/vms", params={"filter": "name_label:aaaaaaaaaa"}).json():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for text in ("name_label:/[]|^(a|a)+$]/", "/^(a|a)+$/", "name_label:/(?=(a|a)+$)/"):
            answer = gateway.get("/rest/v0/vms", params={"filter": text}, timeout=20)  # unbounded: hours
            assert answer.status_code == 400 and "took too long" in answer.json()["error"]
        assert gateway.get("/rest/v0/hosts", timeout=10).status_code == 200
    finally:
        rpc("VM.set_name_label", vm, original)


def gateway_sim(gateway):
    return gateway.get("/rest/v0/servers?fields=host").json()[0]["host"]


def _worker(gw):
    (worker,) = gw.workers()
    return worker


def _xorest_leftovers(rpc, name):
    disks = [r for r in rpc("VDI.get_all_records").values() if r["name_label"] == name]
    tasks = [t for t in rpc("task.get_all_records").values() if "xorest:task" in t["other_config"]]
    return disks, tasks


def test_a_killed_worker_leaves_nothing_half_made(processes, tmp_path):
    sim = processes.sim("--vms", "4", "--seed", "53")
    gw = processes.add(Gateway(tmp_path, sim.url, workers=1))
    rpc = JsonRpc(sim.url)
    sr = next(s for s in gw.get("/rest/v0/srs?fields=name_label,content_type").json()
              if "Local" in s["name_label"] or s.get("content_type") == "user")
    vms_before = set(rpc("VM.get_all"))
    halted = gw.get("/rest/v0/vms?filter=power_state:Halted&fields=$pool").json()[0]
    with gw.get(f"{halted['href']}.xva", stream=True) as export:
        xva_head = next(export.iter_content(4 << 20))
    earlier_tasks = set(gw.get("/rest/v0/tasks").json())
    for attempt in ("import", "xva", "export"):
        worker = _worker(gw)
        sock = socket.create_connection(("127.0.0.1", gw.port))
        if attempt == "xva":  # an XVA cut by the worker's death: the pool makes no VM of it
            sock.sendall(f"POST /rest/v0/pools/{halted['$pool']}/vms HTTP/1.1\r\nHost: x\r\n"
                         f"Cookie: authenticationToken={gw.token}\r\nContent-Length: {64 << 20}\r\n\r\n".encode())
            sock.sendall(xva_head)
            deadline = time.monotonic() + 20
            while not _xorest_leftovers(rpc, "half-made")[1]:
                assert time.monotonic() < deadline, "the import did not start"
                time.sleep(0.1)
        elif attempt == "import":
            size = 64 << 20
            sock.sendall(f"POST {sr['href']}/vdis?raw&name_label=half-made HTTP/1.1\r\nHost: x\r\n"
                         f"Cookie: authenticationToken={gw.token}\r\nContent-Length: {size}\r\n\r\n".encode())
            sock.sendall(b"\x01" * (8 << 20))
            deadline = time.monotonic() + 20
            while not _xorest_leftovers(rpc, "half-made")[0]:
                assert time.monotonic() < deadline, "the import did not start"
                time.sleep(0.1)
        else:
            vdi = max(gw.get("/rest/v0/vdis?fields=size").json(), key=lambda v: v["size"])
            sim_admin(sim.url, "faults", {"export_rate": 1 << 20})  # a slow pool: the export lasts
            sock.sendall(f"GET {vdi['href']}.raw HTTP/1.1\r\nHost: x\r\n"
                         f"Cookie: authenticationToken={gw.token}\r\n\r\n".encode())
            sock.recv(65536)
            assert _xorest_leftovers(rpc, "half-made")[1], "the export has no task"
        os.kill(worker.pid, signal.SIGKILL)  # the OOM killer, say
        sock.close()
        sim_admin(sim.url, "faults", {"reset": True})
        # gunicorn starts another worker; its sweep removes what the dead one left
        deadline = time.monotonic() + 60
        while any(_xorest_leftovers(rpc, "half-made")):
            assert time.monotonic() < deadline, _xorest_leftovers(rpc, "half-made")
            time.sleep(0.5)
    assert "removed what a dead xorest process left" in gw.proc.output()
    assert set(rpc("VM.get_all")) == vms_before  # no VM from the cut XVA either
    killed = [t for t in gw.get("/rest/v0/tasks?fields=status,properties").json() if t["href"] not in earlier_tasks]
    assert len(killed) == 3 and all(t["status"] == "interrupted" for t in killed), killed


def test_a_reused_process_id_is_not_its_former_owner():
    """Marks name their process by id and the time they were written: a process that started
    after the mark was written (the id given again, as containers do) is not the owner."""
    import psutil

    from xorest.services.liveness import owner_is_gone, owner_mark

    me = psutil.Process()
    assert not owner_is_gone(owner_mark())
    before_i_started = int(me.create_time()) - 60
    assert owner_is_gone(f"{socket.gethostname()}:{me.pid}:{before_i_started}")
    assert not owner_is_gone(f"another-host:{me.pid}:{before_i_started}")  # other machines' marks stay


def test_an_exiting_process_is_no_owner(monkeypatch):
    """A killed worker closes its files (the daemon sees it leave) before it is a zombie:
    from its first step of exiting (PF_EXITING) it owns nothing any more."""
    from xorest.services import liveness

    mark = liveness.owner_mark()
    assert not liveness.owner_is_gone(mark)
    real = liveness._read_stat(os.getpid())
    head, _, rest = real.rpartition(b")")
    fields = rest.split()
    fields[6] = str(int(fields[6]) | 0x4).encode()  # flags, field 9 of proc(5): PF_EXITING
    monkeypatch.setattr(liveness, "_read_stat", lambda pid: head + b") " + b" ".join(fields) + b"\n")
    assert liveness.owner_is_gone(mark)


def test_a_sweep_after_a_death_waits_for_the_pool_s_events():
    """The sweep a worker's death starts finds what the worker marked just before it died,
    even when the pool's events saying so were not applied yet: it catches up first."""
    from types import SimpleNamespace

    import psutil

    from xorest.services.sweeper import TASK_MARK, Sweeper

    dead_mark = f"{socket.gethostname()}:{os.getpid()}:{int(psutil.Process().create_time()) - 60}"

    class Pool:
        key, pool_uuid = "server", "pool"

        def __init__(self):
            self.records = {"OpaqueRef:task": ("task", {"other_config": {}, "status": "pending"})}
            self.watcher = SimpleNamespace(synced=threading.Event())
            self.watcher.synced.set()
            self.calls = []
            self.rpc = SimpleNamespace(call=lambda method, *args: self.calls.append((method, *args)))

        def barrier(self, timeout):  # the event with the mark arrives only when waited for
            self.records["OpaqueRef:task"][1]["other_config"][TASK_MARK] = dead_mark

    pool = Pool()
    sweeper = Sweeper(SimpleNamespace(connections=lambda: [pool]), interval=3600)
    sweeper.start()
    time.sleep(0.5)  # its first sweep: nothing marked yet
    assert pool.calls == []
    sweeper.sweep_soon()
    deadline = time.monotonic() + 10
    while len(pool.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.calls == [("task.cancel", "OpaqueRef:task"), ("task.destroy", "OpaqueRef:task")]
