"""The JSON-RPC WebSockets under bad clients: thousands of idle sockets, a client that
never reads, password guessing, and a worker that stops.  One gunicorn worker with four
threads: whatever the WebSockets do, the REST API must go on being served."""
import json
import os
import signal
import socket
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from .conftest import Gateway
from .test_jsonrpc import Client

IDLE_SOCKETS = 2000
SILENT_TCP = 500


@pytest.fixture(scope="module")
def limited(sim, tmp_path_factory):
    gw = Gateway(tmp_path_factory.mktemp("limited"), sim.url, workers=1, threads=4,
                 env={"XOREST_JSONRPC_MAX_CONNECTIONS": str(IDLE_SOCKETS), "XOREST_JSONRPC_SIGNIN_TIMEOUT": "2",
                      "XOREST_JSONRPC_IDLE_TIMEOUT": "4", "XOREST_JSONRPC_MAX_BUFFER": "65536",
                      "XOREST_LOGIN_MAX_FAILURES": "3", "XOREST_LOGIN_DELAY_BASE": "0.02",
                      "XOREST_CLIENT_HEAD_TIMEOUT": "2"})
    yield gw
    gw.stop()


def _ws_url(gw):
    return gw.url.replace("http://", "ws://") + "/api/"


UPGRADE = (b"GET /api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def _open_silent_websocket(port):
    """A WebSocket whose client then says nothing, answers nothing, reads nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(UPGRADE)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    return sock, head


def _close_frame(data):
    """``(code, reason)`` of the server's close frame in ``data`` (small unmasked frames:
    pings before it are skipped)."""
    while data and data[0] == 0x89:
        data = data[2 + (data[1] & 0x7F):]
    assert data[:1] == b"\x88", data[:20]
    payload = data[2:2 + (data[1] & 0x7F)]
    return int.from_bytes(payload[:2], "big"), payload[2:].decode()


def test_thousands_of_idle_sockets_hold_no_thread(limited):
    """2000 WebSockets that stay silent, and 500 connections that never send a request
    head: the REST API is served meanwhile (4 threads), one more WebSocket is a 503, the
    silent ones are closed (the WebSockets with a reason); then a client that signs in is
    served."""
    sockets, silent_tcp = [], []
    try:
        for _ in range(IDLE_SOCKETS):
            sock, head = _open_silent_websocket(limited.port)
            assert head.startswith(b"HTTP/1.1 101"), head
            sockets.append(sock)
        silent_tcp = [socket.create_connection(("127.0.0.1", limited.port)) for _ in range(SILENT_TCP)]
        assert limited.get("/rest/v0/hosts", timeout=10).status_code == 200
        with pytest.raises(Exception) as refused:
            Client(_ws_url(limited))
        assert "503" in str(refused.value)
        opened = time.monotonic()
        # the signed-out ones go after XOREST_JSONRPC_SIGNIN_TIMEOUT, each told why
        reasons, deadline = {}, time.monotonic() + 60
        for sock in sockets:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            data = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            code, reason = _close_frame(data)
            reasons[reason] = reasons.get(reason, 0) + 1
            assert code == 1008
        assert reasons == {"not signed in within 2 s": IDLE_SOCKETS}
        for sock in silent_tcp:  # after XOREST_CLIENT_HEAD_TIMEOUT
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            assert sock.recv(4096) == b""
        assert time.monotonic() - opened < 60  # (a bound against a hang, not a measure)
        # their places are free again: a client signs in and is served
        client = Client(_ws_url(limited))
        try:
            assert client.call("session.signIn", email="admin@example.com", password="admin-password")["result"]
            assert client.call("xo.getAllObjects", limit=1)["result"]
        finally:
            client.close()
        assert limited.get("/rest/v0/vms?limit=1", timeout=10).status_code == 200
    finally:
        for sock in sockets + silent_tcp:
            sock.close()


class RawClient:
    """A WebSocket client over a plain socket (wsproto's framing), reading only when told."""

    def __init__(self, port, receive_buffer=None):
        self.sock = socket.socket()
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.connect(("127.0.0.1", port))
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target="/api/")))
        assert any(isinstance(e, AcceptConnection) for e in self.read())

    def send(self, method, request_id, **params):
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        self.sock.sendall(self.ws.send(TextMessage(json.dumps(message))))

    def read(self, timeout=10):
        self.sock.settimeout(timeout)
        data = self.sock.recv(1 << 20)
        self.ws.receive_data(data or None)
        return list(self.ws.events())


def test_a_client_that_never_reads_is_closed_with_a_reason(limited):
    slow = RawClient(limited.port, receive_buffer=4096)
    slow.send("session.signIn", 1, email="admin@example.com", password="admin-password")
    assert any(isinstance(e, TextMessage) for e in slow.read())
    log_before = len(limited.proc.output())
    # each answer is the whole pool: far more than its buffers and the 64 KiB allowed
    for n in range(40):
        slow.send("xo.getAllObjects", 2 + n)
    deadline = time.monotonic() + 60
    while "left more than 65536 bytes unread" not in limited.proc.output()[log_before:]:
        assert time.monotonic() < deadline, limited.proc.output()[-2000:]
        time.sleep(0.2)
    # meanwhile the others are served
    other = Client(_ws_url(limited))
    try:
        assert other.call("system.getVersion")["result"] == "0.1"
    finally:
        other.close()
    # it reads at last: what was already on its way, then the reason
    events, deadline = [], time.monotonic() + 30
    while not any(isinstance(e, CloseConnection) for e in events) and time.monotonic() < deadline:
        events += slow.read()
    closes = [e for e in events if isinstance(e, CloseConnection)]
    assert closes and closes[0].code == 1008 and closes[0].reason.startswith("too slow"), events[-3:]
    answered = [e for e in events if isinstance(e, TextMessage) and e.message_finished]
    assert len(answered) < 40  # the unread answers were dropped, not kept
    slow.sock.close()


def test_password_guessing_is_throttled_and_locked_out(limited):
    """The REST API's throttling and lock-out, over JSON-RPC: XO's invalid credentials
    (3) with the reason, shared with REST's Basic authentication (429)."""
    c = Client(_ws_url(limited))
    try:
        first = c.call("session.signIn", email="user@example.com", password="wrong")["error"]
        assert first == {"code": 3, "message": "invalid credentials"}
        at_once = c.call("session.signIn", email="user@example.com", password="wrong")["error"]
        assert at_once["code"] == 3 and "too many failed attempts" in at_once["message"]
        failures = 1
        deadline = time.monotonic() + 30
        while failures < 3 and time.monotonic() < deadline:
            error = c.call("session.signIn", email="user@example.com", password="wrong")["error"]
            if error["message"] == "invalid credentials":
                failures += 1
            else:
                time.sleep(0.05)
        assert failures == 3
        locked = c.call("session.signIn", email="user@example.com", password="user-password")["error"]
        assert locked["code"] == 3 and "too many failed attempts" in locked["message"]
        rest = requests.get(limited.url + "/rest/v0/users/me/authentication_tokens",
                            auth=("user@example.com", "user-password"), timeout=10)
        assert rest.status_code == 429 and "Retry-After" in rest.headers
        # another account from the same address is not locked
        assert c.call("session.signIn", email="admin@example.com", password="admin-password")["result"]
    finally:
        c.close()


def test_a_stopping_worker_closes_its_websockets(sim, tmp_path):
    gw = Gateway(tmp_path, sim.url, workers=1, threads=4)
    try:
        c = Client(_ws_url(gw))
        assert c.call("session.signIn", email="admin@example.com", password="admin-password")["result"]
        silent, _ = _open_silent_websocket(gw.port)
        os.killpg(gw.proc.process.pid, signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            c.receive(timeout=30)  # (the pool's notifications that may come first are passed over)
        assert closed.value.rcvd.code == 1001 and closed.value.rcvd.reason == "the server is shutting down"
        silent.settimeout(30)
        assert _close_frame(silent.recv(4096)) == (1001, "the server is shutting down")
        # and the worker does not wait for them: gunicorn ends (its graceful timeout is an hour)
        assert gw.proc.process.wait(timeout=60) == 0
    finally:
        gw.stop()
