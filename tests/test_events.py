"""``/rest/v0/events``: Xen Orchestra's server-sent event stream, through gunicorn (two
workers: the stream on one, its subscriptions through any) and the nginx site."""
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse

import pytest
import requests

from .conftest import NGINX, Gateway, Nginx, sim_admin, start_sim
from .test_http_hardening import _rss
from .test_metrics import worker_values
from .test_sim import JsonRpc


class Stream:
    """An SSE client: events as ``(name, data)`` in a list, read by a thread.

    It keeps its connection (``http.client``) so that ``close`` can shut the socket down:
    that wakes the reading thread at once, as a browser leaving a page would.
    """

    def __init__(self, url, cookies, verify=True):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
            self.conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=60, context=context)
        else:
            self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        self.conn.request("GET", "/rest/v0/events", headers={"Cookie": cookie})
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.read()
        assert self.response.getheader("Content-Type").startswith("text/event-stream")
        self.events, self.ended = [], threading.Event()
        self.arrivals = []  # time.monotonic() of each event, as self.events
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self.id = self.wait("init")["id"]

    def _read(self):
        name = None
        try:
            while True:
                line = self.response.readline()
                if not line:
                    break
                line = line.decode().rstrip("\r\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    self.arrivals.append(time.monotonic())
                    self.events.append((name, json.loads(line[6:])))
        except Exception:  # the socket shut down mid-read is how the test leaves
            pass
        self.ended.set()

    def wait(self, name, predicate=lambda data: True, timeout=15):
        return self.wait_arrival(name, predicate, timeout)[0]

    def wait_arrival(self, name, predicate=lambda data: True, timeout=15):
        """``(data, time.monotonic() when it arrived)`` of the first such event."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for (event, data), arrived in zip(list(self.events), list(self.arrivals)):
                if event == name and predicate(data):
                    return data, arrived
            time.sleep(0.02)
        raise AssertionError(f"no {name} event: {self.events[-5:]}")

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ended.wait(5)
        self.conn.close()


def _vm(sim):
    rpc = JsonRpc(sim.url)
    ref = next(r for r, v in rpc("VM.get_all_records").items()
               if not (v["is_a_template"] or v["is_control_domain"] or v["is_a_snapshot"]))
    return rpc, ref, rpc("VM.get_uuid", ref)


def test_subscriptions_and_changes_across_workers(sim, tmp_path):
    gw = Gateway(tmp_path, sim.url, workers=2)
    try:
        cookies = {"authenticationToken": gw.token}
        stream = Stream(gw.url, cookies)
        try:
            # subscriptions go through whichever worker takes them (several tries land on both)
            for _ in range(4):
                added = requests.post(f"{gw.url}/rest/v0/events/{stream.id}/subscriptions", cookies=cookies,
                                      json={"collection": "VM", "fields": ["name_label", "power_state"]}, timeout=10)
                assert added.status_code == 201 and added.json() == {"id": "VM"}
            rpc, ref, uuid = _vm(sim)
            original = rpc("VM.get_name_label", ref)
            rpc("VM.set_name_label", ref, "seen through events")
            data = stream.wait("update", lambda d: d.get("name_label") == "seen through events")
            assert data["$subscription"] == "VM" and set(data) == {"$subscription", "name_label", "power_state"}
            # a change to a field nobody asked for sends nothing
            rpc("VM.set_name_description", ref, "not subscribed")
            time.sleep(1)
            assert not [d for e, d in stream.events if e == "update" and d.get("name_description")]
            rpc("VM.set_name_label", ref, original)
            # a filtered subscription (xorest's addition): entering it is an add, leaving a remove
            requests.post(f"{gw.url}/rest/v0/events/{stream.id}/subscriptions", cookies=cookies, timeout=10,
                          json={"collection": "VM", "fields": "*", "filter": "tags:watched"})
            rpc("VM.add_tags", ref, "watched")
            assert "watched" in stream.wait("add", lambda d: d.get("id") == uuid)["tags"]
            rpc("VM.remove_tags", ref, "watched")
            stream.wait("remove", lambda d: d.get("id") == uuid)
            assert requests.delete(f"{gw.url}/rest/v0/events/{stream.id}/subscriptions/VM", cookies=cookies,
                                   timeout=10).status_code == 204
            assert requests.delete(f"{gw.url}/rest/v0/events/{stream.id}/subscriptions/VM", cookies=cookies,
                                   timeout=10).status_code == 404
            # bad subscriptions are 400s; another user's stream, or a made-up one, is a 404
            bad = requests.post(f"{gw.url}/rest/v0/events/{stream.id}/subscriptions", cookies=cookies, timeout=10,
                                json={"collection": "nonsense"})
            assert bad.status_code == 400 and "VM" in bad.json()["error"]
            assert requests.post(f"{gw.url}/rest/v0/events/{stream.id}/subscriptions", cookies=cookies, timeout=10,
                                 json={"collection": "VM", "filter": "(("}).status_code == 400
            assert requests.post(f"{gw.url}/rest/v0/events/nope/subscriptions", cookies=cookies, timeout=10,
                                 json={"collection": "VM"}).status_code == 404
        finally:
            stream.close()
    finally:
        gw.stop()


def test_a_client_that_leaves_frees_its_thread(gateway):
    """Streams end with their client: the worker's limit of streams never fills up."""
    cookies = {"authenticationToken": gateway.token}
    for _ in range(20):  # more than the limit of streams per worker (8)
        stream = Stream(gateway.url, cookies)
        stream.close()
    assert Stream(gateway.url, cookies).id


def test_too_many_streams_is_a_503(sim, tmp_path):
    gw = Gateway(tmp_path, sim.url, workers=1, env={"XOREST_EVENTS_MAX_STREAMS": "2"})
    try:
        cookies = {"authenticationToken": gw.token}
        streams = [Stream(gw.url, cookies) for _ in range(2)]
        refused = requests.get(gw.url + "/rest/v0/events", cookies=cookies, timeout=10)
        assert refused.status_code == 503 and refused.json()["data"]["limit"] == 2
        assert gw.get("/rest/v0/hosts").status_code == 200
        for stream in streams:
            stream.close()
    finally:
        gw.stop()


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_through_the_nginx_site(sim, tmp_path):
    gw = Gateway(tmp_path, sim.url, workers=2, unix_socket=str(tmp_path / "gunicorn.sock"),
                 env={"XOREST_TRUSTED_PROXIES": "unix"})
    nginx = Nginx(tmp_path, f"unix:{gw.unix_socket}")
    try:
        cookies = {"authenticationToken": gw.token}
        stream = Stream(nginx.url, cookies, verify=nginx.ca)
        try:
            requests.post(f"{nginx.url}/rest/v0/events/{stream.id}/subscriptions", cookies=cookies, timeout=10,
                          verify=nginx.ca, json={"collection": "VM", "fields": ["name_label"]})
            rpc, ref, uuid = _vm(sim)
            original = rpc("VM.get_name_label", ref)
            started = time.monotonic()
            rpc("VM.set_name_label", ref, "through nginx")
            stream.wait("update", lambda d: d.get("name_label") == "through nginx", timeout=10)
            latency = time.monotonic() - started
            rpc("VM.set_name_label", ref, original)
        finally:
            stream.close()
        print(f"VM change to SSE event through nginx: {latency:.3f} s")
    finally:
        nginx.stop()
        gw.stop()


class XapiWatcher:
    """When a VM's ``power_state`` became ``Running`` as an XAPI client sees it (``event.from``)."""

    def __init__(self, rpc, ref):
        self.rpc, self.ref, self.running_at = rpc, ref, None
        self.token = rpc("event.from", ["vm"], "", 0.0)["token"]
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        deadline = time.monotonic() + 60
        while self.running_at is None and time.monotonic() < deadline:
            batch = self.rpc("event.from", ["vm"], self.token, 5.0)
            self.token = batch["token"]
            for event in batch["events"]:
                if event["ref"] == self.ref and (event.get("snapshot") or {}).get("power_state") == "Running":
                    self.running_at = time.monotonic()


def _start_a_halted_vm(rpc):
    """Start a halted VM (the first that can start); ``(uuid, XapiWatcher)``."""
    halted = sorted((v["uuid"], r) for r, v in rpc("VM.get_all_records").items()
                    if v["power_state"] == "Halted" and not (v["is_a_template"] or v["is_control_domain"]
                                                             or v["is_a_snapshot"]))
    for uuid, ref in halted:
        watcher = XapiWatcher(rpc, ref)
        try:
            rpc("VM.start", ref, False, False)
        except Exception:  # not enough memory on its host, a missing disk...: the next one
            continue
        watcher.thread.join(30)
        assert watcher.running_at is not None
        return uuid, watcher
    raise AssertionError("no halted VM could start")


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_a_vm_start_reaches_streams_of_both_workers_through_nginx(tmp_path):
    """Two streams through the nginx site, on two workers (one stream per worker allowed: a
    second one on the same worker is a 503, tried again; each worker's count of open streams
    says which served it); each sees the VM start, its latency from the XAPI event printed
    (the issue asks for 1 s; asserted: a liveness bound)."""
    sim = start_sim(tmp_path, "--seed", "4", "--vms", "30", name="start-sim")
    gw = Gateway(tmp_path, sim.url, workers=2, unix_socket=str(tmp_path / "gunicorn.sock"),
                 env={"XOREST_TRUSTED_PROXIES": "unix", "XOREST_EVENTS_MAX_STREAMS": "1"})
    nginx = Nginx(tmp_path, f"unix:{gw.unix_socket}")
    streams = []
    try:
        cookies = {"authenticationToken": gw.token}

        def attempt(opened):
            try:
                opened.append(Stream(nginx.url, cookies, verify=nginx.ca))
            except AssertionError:  # the worker that took it has its stream already
                pass

        for _ in range(50):
            if len(streams) >= 2:
                break
            # several at once: nginx reuses its idle connection to the worker that refused the
            # last one, the others are new connections either worker may accept
            opened = []
            tries = [threading.Thread(target=attempt, args=(opened,)) for _ in range(3)]
            for thread in tries:
                thread.start()
            for thread in tries:
                thread.join()
            streams.extend(opened)
        open_streams = worker_values(gw, "xorest_event_streams", "gauge_livesum")
        served = {pid: count for pid, count in open_streams.items() if count}
        assert len(streams) == 2 and served == dict.fromkeys(served, 1) and len(served) == 2, open_streams
        for stream in streams:
            assert requests.post(f"{nginx.url}/rest/v0/events/{stream.id}/subscriptions", cookies=cookies,
                                 timeout=10, verify=nginx.ca,
                                 json={"collection": "VM", "fields": ["uuid", "name_label", "power_state"]}
                                 ).status_code == 201
        uuid, xapi = _start_a_halted_vm(JsonRpc(sim.url))
        latencies = []
        for stream in streams:
            data, arrived = stream.wait_arrival(
                "update", lambda d: d.get("uuid") == uuid and d.get("power_state") == "Running", timeout=15)
            assert set(data) == {"$subscription", "uuid", "name_label", "power_state"}
            latencies.append(arrived - xapi.running_at)
        print("VM start, XAPI event to SSE event through nginx, one stream on each worker: "
              + ", ".join(f"{latency * 1000:.0f} ms" for latency in latencies))
    finally:
        for stream in streams:
            stream.close()
        nginx.stop()
        gw.stop()
        sim.stop()


def _stalled_stream(gw):
    """A stream whose client reads its head and ``init``, then nothing: ``(socket, id)``."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gw.port))
    sock.sendall(f"GET /rest/v0/events HTTP/1.1\r\nHost: x\r\nCookie: authenticationToken={gw.token}\r\n\r\n"
                 .encode())
    sock.settimeout(10)
    received = b""
    while b"event: init\ndata: " not in received or b"\n\n" not in received.split(b"event: init", 1)[1]:
        chunk = sock.recv(4096)
        assert chunk, received
        received += chunk
    data = received.split(b"event: init\ndata: ", 1)[1].split(b"\n", 1)[0]
    return sock, json.loads(data)["id"]


def test_a_client_that_stops_reading_is_cut(tmp_path):
    """Whole VMs stream out while the client reads nothing: the worker keeps what the
    kernel buffers and one piece of events, its write waits the client timeout, then the
    connection ends and the stream's thread (the worker's only allowed one) is free."""
    sim = start_sim(tmp_path, "--seed", "6", "--vms", "300", name="slow-sim")
    gw = Gateway(tmp_path, sim.url, workers=1, threads=4,
                 env={"XOREST_CLIENT_TIMEOUT": "3", "XOREST_EVENTS_MAX_STREAMS": "1"})
    try:
        cookies = {"authenticationToken": gw.token}
        sock, stream_id = _stalled_stream(gw)
        assert requests.post(f"{gw.url}/rest/v0/events/{stream_id}/subscriptions", cookies=cookies, timeout=10,
                             json={"collection": "VM", "fields": "*"}).status_code == 201
        before = high = _rss(gw)
        sim_admin(sim.url, "churn", {"rate": 400})
        deadline = time.monotonic() + 90
        while "stopped reading" not in gw.proc.output() and time.monotonic() < deadline:
            high = max(high, _rss(gw))
            assert gw.get("/rest/v0/hosts", timeout=30).status_code == 200  # the API answers meanwhile
            time.sleep(0.5)
        sim_admin(sim.url, "churn", {"rate": 0})
        assert "stopped reading" in gw.proc.output(), gw.proc.output()[-3000:]
        print(f"worker RSS before the stall {before >> 20} MiB, highest {high >> 20} MiB")
        assert high - before < 48 << 20, (before, high)
        # the client gets what the kernel held, then the end of the connection
        ended = False
        while not ended:
            try:
                ended = sock.recv(1 << 16) == b""
            except ConnectionResetError:
                ended = True
        sock.close()
        # the stream's thread and its place are free: a new stream opens (the limit is 1)
        deadline = time.monotonic() + 10
        while True:
            answer = requests.get(gw.url + "/rest/v0/events", cookies=cookies, timeout=10, stream=True)
            answer.close()
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.status_code == 200
    finally:
        gw.stop()
        sim.stop()
