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

from .conftest import NGINX, Gateway, Nginx
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
                    self.events.append((name, json.loads(line[6:])))
        except Exception:  # the socket shut down mid-read is how the test leaves
            pass
        self.ended.set()

    def wait(self, name, predicate=lambda data: True, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event, data in self.events:
                if event == name and predicate(data):
                    return data
            time.sleep(0.05)
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
