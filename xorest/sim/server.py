"""The simulator's HTTP front: RPC endpoints, transfer handlers and the fault admin endpoint.

Built on ``http.server`` rather than a framework so that every header and framing
detail can be XAPI's own: exports are close-delimited HTTP/1.0-style bodies with no
Content-Length, XML-RPC answers are ``text/xml`` exactly, and a fault can cut a
connection in the middle of a body.
"""
import base64
import io
import json
import logging
import socket
import tarfile
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import zstandard

from . import exports, hostlogs, hostops, imports, joins, lifecycle, operations, rpc, stats
from .faults import StreamFaults
from .formats import vhd as vhd_format
from .formats import xva as xva_format
from .rpc import XapiFailure

log = logging.getLogger(__name__)

ERROR_PAGE = (b"HTTP/1.1 500 Internal Error\r\ncontent-length: 0\r\n\r\n"
              b"<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred;"
              b" please wait a while and try again.</body></html>")


RRD_ROUTES = ("/rrd_updates", "/host_rrd", "/vm_rrd", "/sr_rrd")
NO_CACHE = "Cache-Control: no-cache, no-store"


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address, simulator, role, ssl_context=None):
        self.simulator = simulator
        self.role = role
        self.ssl_context = ssl_context
        # each host keeps the audit trail of what it was asked (/audit_log)
        self.audit = hostlogs.AuditTrail(simulator.db, lambda: simulator.stats.host_ref_at(address[0],
                                                                                         role == "master"))
        super().__init__(address, SimRequestHandler)

    def get_request(self):
        sock, addr = super().get_request()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and
        # delayed ACKs add ~40 ms to every RPC answer.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


class SimRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "xapi/24.19"
    sys_version = ""

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    @property
    def sim(self):
        return self.server.simulator

    def setup(self):
        super().setup()
        if self.sim.faults.refusing():
            self.connection.close()
            raise ConnectionAbortedError("refusing connections (fault)")

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, socket.timeout, OSError) as exc:
            log.debug("connection ended: %s", exc)

    # helpers -----------------------------------------------------------------

    def _query(self):
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return parts.path, query

    def _cookies(self):
        cookies = {}
        for item in (self.headers.get("Cookie") or "").split(";"):
            if "=" in item:
                key, _, value = item.strip().partition("=")
                cookies[key] = value
        return cookies

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status, body, content_type, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        for key, value in extra:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _html_error(self, status, message, extra=()):
        body = f"<html><body><h1>HTTP {status}</h1>{message}</body></html>".encode()
        self.close_connection = True
        self._send(status, body, "text/html", [("Connection", "close"), *extra])

    # routing -----------------------------------------------------------------

    def do_OPTIONS(self):
        self._send(200, b"", "text/plain", [("Access-Control-Allow-Methods", "POST, GET, PUT"),
                                              ("Access-Control-Allow-Headers", "content-type")])

    def _down(self):
        """A master that is down (rebooting, off) answers nothing: the connection drops."""
        if not self.sim.api_down():
            return False
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)
        return True

    def do_POST(self):
        path, _ = self._query()
        if path.startswith("/_sim/"):
            return self._admin(path)
        if self._down():
            return None
        if self.sim.faults.latency:
            time.sleep(self.sim.faults.latency)
        body = self._body()
        if path == "/jsonrpc" and self.sim.jsonrpc:
            return self._jsonrpc(body)
        return self._xmlrpc(body)

    def do_GET(self):
        path, query = self._query()
        if path.startswith("/_sim/"):
            return self._admin(path)
        if self._down():
            return None
        route = path.rstrip("/")
        if route in RRD_ROUTES:
            return self._rrd(route)
        if route == "/export":
            return self._transfer(query, self._export_vm, self._vm_disks)
        if route == "/export_raw_vdi":
            return self._transfer(query, self._export_vdi, self._vdi_disks)
        if route == "/audit_log":
            return self._transfer(query, self._audit_log)
        if route == "/host_logs_download":
            return self._transfer(query, self._host_logs_download)
        self._html_error(404, "not found")

    def do_PUT(self):
        path, query = self._query()
        if self._down():
            return None
        if path.rstrip("/") == "/import_raw_vdi":
            return self._transfer(query, self._import_vdi, self._vdi_disks)
        if path.rstrip("/") == "/import":
            return self._transfer(query, self._import_vm)
        self._html_error(404, "not found")

    # RPC -----------------------------------------------------------------------

    def _xmlrpc(self, body):
        try:
            method, params = rpc.parse_xml_request(body)
        except Exception:
            return self._html_error(500, "cannot parse XML-RPC request")
        try:
            value = self._call(method, params)
            payload = (rpc.xml_response(value) if method == "system.listMethods"
                       else rpc.xml_success(value, self.sim.xml_memo))
        except XapiFailure as failure:
            payload = rpc.xml_failure(failure)
        except Exception as exc:
            log.exception("%s failed", method)
            payload = rpc.xml_failure(XapiFailure("INTERNAL_ERROR", str(exc)))
        self._send(200, payload, "text/xml")

    def _jsonrpc(self, body):
        try:
            method, params, request_id, version = rpc.parse_json_request(body)
        except ValueError:
            return self._html_error(500, "cannot parse JSON-RPC request")
        try:
            value = self._call(method, params)
            payload = rpc.json_success(value, request_id, version)
        except XapiFailure as failure:
            payload = rpc.json_failure(failure, request_id, version)
        except Exception as exc:
            log.exception("%s failed", method)
            payload = rpc.json_failure(XapiFailure("INTERNAL_ERROR", str(exc)), request_id, version)
        self._send(200, payload, "application/json")

    def _user(self):
        return next(iter(self.sim.sessions.credentials), "root")

    def _call(self, method, params):
        """Carry out an API call, written to this host's audit trail as XAPI writes it."""
        if not hostlogs.audited(method) or not isinstance(params, list):
            return self.sim.api.call(method, params, self.server.role)
        login = method == "session.login_with_password"
        arguments = [] if login else self.server.audit.arguments(params[1:])
        user = str(params[0]) if login and params else self._user()
        value, outcome = None, "INTERNAL_ERROR"
        try:
            value = self.sim.api.call(method, params, self.server.role)
            outcome = "OK"
        except XapiFailure as failure:
            outcome = failure.code
            raise
        finally:
            if outcome not in ("SESSION_INVALID", "SESSION_AUTHENTICATION_FAILED", "HOST_IS_SLAVE"):
                session = value if login and outcome == "OK" else (params[0] if params else "")
                # an asynchronous call is audited under the call's own name, as XAPI does
                call = method[len("Async."):] if method.startswith("Async.") else method
                self.server.audit.record(call, session, user, outcome, arguments=arguments)
        return value

    def _admin(self, path):
        sim = self.sim
        if path == "/_sim/faults":
            if self.command == "POST":
                try:
                    sim.faults.update(json.loads(self._body() or b"{}"))
                except (ValueError, TypeError) as exc:
                    return self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return self._send(200, json.dumps(sim.faults.to_dict()).encode(), "application/json")
        if path == "/_sim/sessions/invalidate" and self.command == "POST":
            sim.sessions.invalidate_all()
            return self._send(200, b"{}", "application/json")
        if path == "/_sim/churn" and self.command == "POST":
            try:
                sim.churn = float(json.loads(self._body() or b"{}").get("rate", 0))
            except (ValueError, TypeError, AttributeError) as exc:
                return self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return self._send(200, json.dumps({"rate": sim.churn}).encode(), "application/json")
        if path == "/_sim/guest" and self.command == "POST":
            # {"vm": uuid, "memory_actual": bytes, "networks": {...}}: a guest agent's report
            try:
                report = json.loads(self._body() or b"{}")
                with sim.db.lock:
                    vm = sim.db.resolve("VM", report["vm"])
                    operations.report_guest(sim.db, vm, report.get("memory_actual"), report.get("networks"))
                    sim.db.commit()
            except (ValueError, TypeError, KeyError, AttributeError, XapiFailure) as exc:
                return self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return self._send(200, b"{}", "application/json")
        if path == "/_sim/updates":
            # {"host": uuid, "updates": [...], "busy": "update", "error": "...", "reset": true}
            try:
                with sim.db.lock:
                    body = json.loads(self._body() or b"{}") if self.command == "POST" else {}
                    if not isinstance(body, dict):
                        raise ValueError("a JSON object is expected")
                    state = sim.updates.configure(body) if body else sim.updates.state()
            except (ValueError, TypeError, XapiFailure) as exc:
                return self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return self._send(200, json.dumps(state).encode(), "application/json")
        if path in ("/_sim/perfmon", "/_sim/alarm", "/_sim/stats"):
            try:
                body = json.loads(self._body() or b"{}") if self.command == "POST" else {}
                if not isinstance(body, dict):
                    raise ValueError("a JSON object is expected")
                result = self._monitoring(path, body)
            except (ValueError, TypeError, KeyError, XapiFailure) as exc:
                return self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return self._send(200, json.dumps(result).encode(), "application/json")
        if path == "/_sim/timing":
            # {"pace": P, "seconds": {"VM.start": S}, "reset": true}: how long operations take
            if self.command == "POST":
                try:
                    sim.timing.update(json.loads(self._body() or b"{}"))
                except (ValueError, TypeError) as exc:
                    return self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return self._send(200, json.dumps(sim.timing.to_dict()).encode(), "application/json")
        if path == "/_sim/power_on" and self.command == "POST":
            # {"host": uuid}: someone presses the power button of a host that is off
            try:
                with sim.db.lock:
                    host = sim.db.resolve("host", json.loads(self._body() or b"{}")["host"])
                    if lifecycle.host_live(sim.db, host):
                        raise ValueError("this host is running")
                hostops.boot(sim.api, host)
            except (ValueError, TypeError, KeyError, AttributeError, XapiFailure) as exc:
                return self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return self._send(200, b"{}", "application/json")
        if path == "/_sim/members" and self.command == "POST":
            # a host of another simulated pool joins this one (its pool.join calls this)
            try:
                member = json.loads(self._body() or b"{}")
                with sim.db.lock:
                    host = joins.add_member(sim.db, member if isinstance(member, dict) else {})
                    sim.db.commit()
            except (ValueError, TypeError, KeyError, XapiFailure) as exc:
                return self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return self._send(200, json.dumps({"host": host}).encode(), "application/json")
        if path == "/_sim/state":
            return self._send(200, json.dumps(sim.summary()).encode(), "application/json")
        self._send(404, b'{"error":"unknown admin path"}', "application/json")

    # performance data (xcp-rrdd behind xapi's rrdd_proxy) -------------------------

    def _raw(self, lines, body=b"", close=True):
        """A response written as XAPI writes it: these exact header lines, then the body."""
        head = "\r\n".join(lines) + "\r\n\r\n"
        self.wfile.write(head.encode("latin-1") + body)
        self.wfile.flush()
        self._headers_sent = True
        if close:
            self.close_connection = True

    def _rrd(self, route):
        sim = self.sim
        parts = urlsplit(self.path)
        multi = parse_qs(parts.query, keep_blank_values=True)
        query = {k: v[-1] for k, v in multi.items()}
        if route in ("/vm_rrd", "/sr_rrd") and "uuid" not in query:
            return self._raw(["HTTP/1.1 400 Bad Request", "Connection: close", NO_CACHE])
        if not self._authenticate(query):
            return self._html_error(401, "Unauthorised", [("WWW-Authenticate", 'Basic realm="xapi"')])
        if sim.faults.rrd_latency:
            time.sleep(sim.faults.rrd_latency)
        json_output = stats.client_prefers_json(self.headers.get("Accept"), query)
        content_type = "content-type: application/json" if json_output else "content-type: text/xml"
        address, is_master = self.server.server_address[0], self.server.role == "master"
        data = sim.stats
        db = sim.db
        if route == "/rrd_updates":
            if "start" not in query:
                return self._raw(["HTTP/1.1 400 Bad Request", "Connection: close", NO_CACHE])
            try:
                start = int(query["start"])
            except ValueError:
                return self._raw(["HTTP/1.0 500 Internal Server Error", "Connection: close", NO_CACHE])
            cf = query.get("cf") if query.get("cf") in ("AVERAGE", "MIN", "MAX", "LAST") else None
            try:
                interval = int(query.get("interval", "0"))
            except ValueError:
                interval = 0
            wanted = set(multi["vm_uuid"]) if "vm_uuid" in multi else None
            with db.lock:
                host = data.host_ref_at(address, is_master)
                owners = [data.host_owner(host)] if host and query.get("host") == "true" else []
                for vm in data.resident_vms(host) if host else ():
                    if wanted is None or db.tables["VM"][vm]["uuid"] in wanted:
                        owners.append(data.vm_owner(vm))
            try:
                body = stats.export_updates(data, owners, start, interval, cf, json_output)
            except stats.NoRRA:
                return self._raw(["HTTP/1.0 500 Internal Server Error", "Connection: close", NO_CACHE])
            return self._raw(["HTTP/1.1 200 OK", "Connection: keep-alive", f"Content-Length: {len(body)}", NO_CACHE,
                              content_type, "Access-Control-Allow-Origin: *",
                              "Access-Control-Allow-Headers: X-Requested-With"], body, close=False)
        if route == "/sr_rrd":  # no storage plugin reports SR-level data sources here
            return self._raw(["HTTP/1.0 500 Internal Server Error", "Connection: close", NO_CACHE])
        last = None
        with db.lock:
            host = data.host_ref_at(address, is_master)
            if route == "/host_rrd":
                owner = data.host_owner(host) if host else None
            else:
                owner, redirect = None, None
                vm = db.uuid_index["VM"].get(query["uuid"])
                record = db.tables["VM"].get(vm) if vm else None
                live = record is not None and record["power_state"] in stats.LIVE
                if record is None:
                    pass
                elif live and record["resident_on"] == host and "rrd_unarchive" not in query:
                    owner = data.vm_owner(vm)
                elif live and record["resident_on"] in db.tables["host"] and "rrd_unarchive" not in query:
                    redirect = db.tables["host"][record["resident_on"]]["address"], self.path
                elif is_master or "rrd_unarchive" in query:
                    history = data.history_of(vm)
                    if any(state in stats.LIVE for _, state in history):
                        owner = data.vm_owner(vm, archived=True)
                        last = float(int(history[-1][0]) - int(history[-1][0]) % stats.STEP)
                else:
                    master = db.tables["host"][db.tables["pool"][sim.pool_ref]["master"]]["address"]
                    redirect = master, self.path + ("&" if "?" in self.path else "?") + "rrd_unarchive="
                if redirect is not None:
                    location = f"{sim.scheme}://{redirect[0]}:{sim.port}{redirect[1]}"
                    return self._raw(["HTTP/1.1 302 Found", "Connection: close", NO_CACHE, f"Location: {location}"])
        if owner is None:
            return self._raw(["HTTP/1.1 404 Not Found", "Connection: close", NO_CACHE])
        body = stats.export_rrd(data, owner, json_output, last)
        self._raw(["HTTP/1.0 200 OK", "Connection: close", NO_CACHE, content_type, "Access-Control-Allow-Origin: *"],
                  body)

    def _monitoring(self, path, body):
        sim = self.sim
        if path == "/_sim/perfmon":
            # {"interval": s, "default": {"VM": xml, ...}, "run": true}
            return sim.perfmon.configure(body)
        if path == "/_sim/alarm":
            # {"uuid": VM/host/SR uuid, "variable": "cpu_usage", "value": 0.97}: an ALARM now
            ref, message = sim.perfmon.trigger(str(body["uuid"]), str(body.get("variable", "cpu_usage")),
                                               body.get("value"))
            return dict(message, ref=ref)
        # /_sim/stats {"uuid": u, "values": {ds: value}, "since": t, "until": t} | {"uuid": u, "reset": true}
        with sim.db.lock:
            if body.get("reset"):
                sim.stats.reset_overrides(body.get("uuid"))
            else:
                uuid = str(body["uuid"])
                if not any(uuid in sim.db.uuid_index[cls] for cls in ("VM", "host", "SR")):
                    raise ValueError(f"no VM, host or SR with uuid {uuid}")
                values = body["values"]
                if not isinstance(values, dict):
                    raise ValueError("values must map data source names to numbers")
                sim.stats.override(uuid, {str(k): float(v) for k, v in values.items()}, body.get("since"),
                                   body.get("until"))
            return {u: {name: {"value": v, "since": a, "until": None if b == float("inf") else b}
                        for name, (v, a, b) in o.items()} for u, o in sim.stats.overrides.items()}

    # transfer handlers -----------------------------------------------------------

    def _authenticate(self, query):
        cookies = self._cookies()
        session = cookies.get("session_id") or query.get("session_id")
        if session:
            try:
                self.sim.sessions.check(session)
                return True
            except XapiFailure:
                return False
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return self.sim.sessions.credentials.get(user) == password
        return False

    def _transfer(self, query, handler, disks_of=None):
        # Every host serves the handlers (a member reaches the pool database through the
        # master), so a redirected transfer is served where it lands.
        if not self._authenticate(query):
            return self._html_error(401, "Unauthorised", [("WWW-Authenticate", 'Basic realm="xapi"')])
        redirect = self.sim.faults.transfer_redirect
        if redirect:  # the whole request, session included, as a real redirect carries it
            self.close_connection = True
            return self._send(302, b"", "text/html", [("Location", redirect.rstrip("/") + self.path),
                                                      ("Connection", "close")])
        if disks_of is not None and self._redirect_to_storage_host(disks_of, query):
            return
        task = self._cookies().get("task_id") or query.get("task_id")
        api = self.sim.api
        if task and task not in self.sim.db.tables["task"]:
            return self._html_error(404, "task not found")
        own_task = not task
        if own_task:
            task = api.create_task(f"{handler.__name__.strip('_')} via HTTP", cancellable=True)
        else:
            with self.sim.db.lock:
                self.sim.db.update("task", task, allowed_operations=["cancel"])
                self.sim.db.commit()
        self.server.audit.record(f"http/{self.command.lower()}_{urlsplit(self.path).path.strip('/')}",
                                 self._cookies().get("session_id") or query.get("session_id") or "", self._user(),
                                 kind="HTTP", task=task)
        try:
            try:
                handler(query, task)
            except XapiFailure:
                raise
            except Exception as exc:  # XAPI fails the task of a handler that raised, it never leaves it pending
                log.exception("the %s handler failed", handler.__name__)
                raise XapiFailure("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}") from None
        except XapiFailure as failure:
            api.finish_task(task, failure=failure)
            if not getattr(self, "_headers_sent", False):
                status = 404 if failure.code in ("HANDLE_INVALID", "UUID_INVALID", "INTERNAL_ERROR") else 500
                self._html_error(status, " ".join(failure.description))
            self.close_connection = True

    def _start_body(self, status_line, headers):
        lines = [status_line] + [f"{k}: {v}" for k, v in headers] + ["", ""]
        self.wfile.write("\r\n".join(lines).encode("latin-1"))
        self._headers_sent = True
        self.close_connection = True

    def _stream(self, chunks, task, total_hint=0):
        """Write a close-delimited body, applying faults and honouring task.cancel."""
        sim = self.sim
        faults = StreamFaults(sim.faults, sim.stopping, lambda: sim.api.is_cancelling(task))
        sent, last_progress = 0, time.monotonic()
        for chunk in chunks:
            if sim.api.is_cancelling(task):
                raise XapiFailure("TASK_CANCELLED", task)
            action = faults.before_write(len(chunk))
            if action == "drop":
                self.connection.shutdown(socket.SHUT_RDWR)
                raise XapiFailure("INTERNAL_ERROR", "connection dropped (fault)")
            if action == "html":
                self.wfile.write(ERROR_PAGE)
                self.wfile.flush()
                raise XapiFailure("INTERNAL_ERROR", "error page written in-band (fault)")
            try:
                self.wfile.write(chunk)
            except OSError as exc:
                raise XapiFailure("CLIENT_ERROR", str(exc)) from None
            sent += len(chunk)
            if total_hint and time.monotonic() - last_progress > 1.0:
                sim.api.progress(task, min(0.99, sent / total_hint))
                last_progress = time.monotonic()
        self.wfile.flush()

    def _export_vm(self, query, task):
        sim, db = self.sim, self.sim.db
        selector = query.get("ref") or query.get("uuid")
        if not selector:
            raise XapiFailure("INTERNAL_ERROR", "missing ref or uuid")
        with db.lock:
            cls = "VM"
            vm = db.resolve(cls, selector)
            record = db.record("VM", vm)
            if record["power_state"] not in ("Halted", "Suspended"):
                raise XapiFailure("VM_BAD_POWER_STATE", vm, "halted, suspended",
                                  record["power_state"].lower())
            lifecycle.assert_valid(db, "VM", vm, "export")
            lifecycle.claim(db, "VM", vm, task, "export")
            db.commit()
            host = db.record("host", sim.master_ref())
            body = exports.vm_export(db, sim.disks, vm, host)
        try:
            self._start_body("HTTP/1.0 200 OK", [
                ("Connection", "close"), ("Cache-Control", "no-cache, no-store"), ("task-id", task),
                ("Server", self.server_version), ("content-type", "application/octet-stream"),
                ("Content-Disposition", 'attachment; filename="export.xva"')])
            self._stream(compress(body, query.get("use_compression", "")), task)
            sim.api.finish_task(task, "")
        finally:
            with db.lock:
                lifecycle.release(db, "VM", vm, task)
                db.commit()

    def _audit_log(self, query, task):
        """``/audit_log[?since=]``: this host's audit trail, close-delimited text."""
        body = self.server.audit.text(query.get("since", "")).encode("utf-8")
        self._start_body("HTTP/1.1 200 OK", [("Connection", "close"), ("task-id", task),
                                               ("Content-Type", "text/plain")])
        self._stream([body[i:i + 65536] for i in range(0, len(body), 65536)], task)
        self.sim.api.finish_task(task, "")

    def _host_logs_download(self, query, task):
        """``/host_logs_download``: the host's /var/log as a gzipped tar, close-delimited."""
        body = hostlogs.logs_archive(self.server.audit)
        self._start_body("HTTP/1.1 200 OK", [("Connection", "close"), ("task-id", task)])
        self._stream([body[i:i + 65536] for i in range(0, len(body), 65536)], task)
        self.sim.api.finish_task(task, "")

    def _vdi_disks(self, query):
        return [self.sim.db.resolve("VDI", query.get("vdi", ""))]

    def _vm_disks(self, query):
        db = self.sim.db
        vm = db.resolve("VM", query.get("ref") or query.get("uuid") or "")
        vdis = (db.record("VBD", vbd)["VDI"] for vbd in db.record("VM", vm)["VBDs"])
        return [vdi for vdi in vdis if vdi in db.tables["VDI"]]

    def _redirect_to_storage_host(self, disks_of, query):
        """XAPI answers ``302`` towards the host whose local storage holds the disks, when
        it is not this one (here: when that host's address is served by this simulator)."""
        sim, db = self.sim, self.sim.db
        with db.lock:
            try:
                vdis = disks_of(query)
            except XapiFailure:
                return False  # the handler reports it
            hosts = set()
            for vdi in vdis:
                sr = db.record("SR", db.record("VDI", vdi)["SR"])
                if not sr["shared"]:
                    hosts |= {db.record("PBD", pbd)["host"] for pbd in sr["PBDs"]}
            addresses = {db.record("host", host)["address"] for host in hosts}
        here = self.server.server_address[0]
        if len(addresses) != 1 or here in addresses or not addresses <= sim.addresses:
            return False
        location = f"{sim.scheme}://{addresses.pop()}:{sim.port}{self.path}"
        sim.redirects += 1
        self.close_connection = True
        self._send(302, b"", "text/html", [("Location", location), ("Connection", "close")])
        return True

    def _export_vdi(self, query, task):
        sim, db = self.sim, self.sim.db
        fmt = query.get("format", "raw")
        if fmt not in ("raw", "vhd"):
            raise XapiFailure("INTERNAL_ERROR", f"Unknown format {fmt}")
        with db.lock:
            vdi = db.resolve("VDI", query.get("vdi", ""))
            base = db.resolve("VDI", query["base"]) if query.get("base") else None
            record = db.record("VDI", vdi)
            body = exports.vdi_export(db, sim.disks, vdi, fmt, base)
        content_type = {"vhd": "application/vhd", "raw": "application/octet-stream"}[fmt]
        self._start_body("HTTP/1.1 200 OK", [
            ("Connection", "close"), ("task-id", task), ("content-type", content_type),
            ("content-disposition", f'attachment; filename="{record["uuid"]}.{fmt}"')])
        self._stream(body, task, record["virtual_size"])
        sim.api.finish_task(task, "")

    def _upload_length(self, error_code):
        """An upload's Content-Length; XAPI refuses chunked bodies."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise XapiFailure(error_code, "chunked transfer encoding is not supported")
        return int(self.headers.get("Content-Length") or 0)

    def _upload_blocks(self, length, task):
        """The body in blocks of up to 1 MiB, until ``length`` or the end of the connection
        (XAPI's rule); stops with ``TASK_CANCELLED`` once the task is cancelled."""
        received = 0
        while received < length:
            block = self.rfile.read(min(1 << 20, length - received))
            if self.sim.api.is_cancelling(task):
                raise XapiFailure("TASK_CANCELLED", task)
            if not block:
                return
            received += len(block)
            yield block

    def _import_vm(self, query, task):
        """An XVA (plain, gzip or zstd: XAPI detects which) becomes a new halted VM."""
        sim, db = self.sim, self.sim.db
        length = self._upload_length("IMPORT_ERROR")
        with db.lock:
            selector = query.get("sr_id") or query.get("sr_uuid")
            sr = db.resolve("SR", selector) if selector else db.tables["pool"][sim.pool_ref]["default_SR"]
        self._start_body("HTTP/1.1 200 OK", [("Connection", "close"), ("task-id", task), ("Content-Length", "0")])
        if length == 0:  # a probe PUT: no side effect
            sim.api.finish_task(task, "")
            return
        data = b"".join(self._upload_blocks(length, task))
        try:
            if data[:2] == b"\x1f\x8b":
                data = zlib.decompress(data, 31)
            elif data[:4] == b"\x28\xb5\x2f\xfd":
                data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
            ova, chunks = xva_format.read_disks(io.BytesIO(data))
        except (ValueError, OSError, EOFError, zlib.error, zstandard.ZstdError, tarfile.TarError) as exc:
            raise XapiFailure("IMPORT_ERROR", f"not a usable XVA: {exc}") from None
        with db.lock:
            vm = imports.import_vm(db, sim.disks, ova, chunks, sr, sim.api.typed)
            db.commit()
        sim.api.finish_task(task, rpc.xml_value([vm]))

    def _import_vdi(self, query, task):
        sim, db = self.sim, self.sim.db
        length = self._upload_length("INTERNAL_ERROR")
        fmt = query.get("format", "raw")
        if fmt not in ("raw", "vhd"):
            raise XapiFailure("INTERNAL_ERROR", f"Unknown format {fmt}")
        with db.lock:
            vdi = db.resolve("VDI", query.get("vdi", ""))
        self._start_body("HTTP/1.1 200 OK", [("Connection", "close"), ("task-id", task),
                                               ("Content-Length", "0")])
        if length == 0:  # a probe PUT (npm xen-api sends one): no side effect
            sim.api.finish_task(task, "")
            return
        disk = sim.disks.get(vdi)
        if sim.faults.storage_io_error:  # tapdisk's answer to a failing device
            raise XapiFailure("VDI_IO_ERROR", "Device I/O errors")
        if fmt == "raw":  # written as it arrives, as XAPI does: a cancelled upload stops midway
            received = 0
            for block in self._upload_blocks(length, task):
                disk.with_write(received, block)
                received += len(block)
        else:
            # a VHD is parsed whole (its block table comes first, blocks after)
            received = b"".join(self._upload_blocks(length, task))
            try:
                parsed = vhd_format.parse(received)
            except ValueError as exc:
                raise XapiFailure("VDI_IO_ERROR", f"Device I/O errors: {exc}") from None
            for index, data in parsed["blocks"].items():
                disk.with_write(index * parsed["block_size"], data)
        sim.api.finish_task(task, rpc.xml_value(vdi))


def compress(chunks, mode):
    """XAPI's ``use_compression``: ``true``/``gzip`` gives gzip, ``zstd`` zstd, else none."""
    if mode in ("true", "gzip"):
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
        finish = compressor.flush
    elif mode == "zstd":
        compressor = zstandard.ZstdCompressor(level=3).compressobj()
        finish = compressor.flush
    else:
        yield from chunks
        return
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield finish()


__all__ = ["SimHTTPServer", "compress"]
