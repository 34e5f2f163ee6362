"""A host's logs as XAPI serves them: the audit trail of the calls it received
(``GET /audit_log``) and its log files as a gzipped tar (``GET /host_logs_download``).

XAPI writes one audit line per side-effecting API call it carries out (getters, event
polling and session logouts are left out) into ``/var/log/audit.log``: syslog's prefix, then
its debug header ``[<time>|audit|<host>|<thread> <origin>|<call> R:<task>|audit]`` and an
s-expression ``('trackid=<md5 of the session>' 'LOCAL_SUPERUSER' '<user>' 'ALLOWED'
'OK'|'ERROR:<code>' 'API'|'HTTP' '<call>' (<arguments>))``, where each reference argument
reads ``('<name>' '<its name_label>' '<its uuid>' '<ref>')``.  ``/audit_log?since=<time>``
keeps the lines whose debug time is not before ``since`` (ISO 8601 or XAPI's own form).

Each simulated host keeps its own trail, bounded: the master receives the API calls, a
member the transfers sent to it.  ``/host_logs_download`` is the host's ``/var/log`` as
``logs-download`` tars it: ``audit.log`` (the trail), ``xensource.log``, ``SMlog`` and
``daemon.log``.
"""
import collections
import hashlib
import io
import itertools
import tarfile
import threading
import time

#: Lines each host keeps (the oldest go first, as a rotated log loses them).
MAX_LINES = 5000
#: Calls XAPI leaves out of the trail (spam, or no session left to audit).
UNAUDITED = frozenset({"session.logout", "session.local_logout", "event.from", "event.next", "event.inject",
                       "host.tickle_heartbeat"})
#: Arguments whose value is written as it is (descriptive names; never a password).
DESCRIPTIVE = ("name_label", "name_description", "label", "description", "new_name", "name")


def audited(method):
    """Whether XAPI writes an audit line for ``method`` (side effects only)."""
    return ".get" not in method and method not in UNAUDITED and not method.startswith("system.")


def _quote(text):
    return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _node(items):
    return "(" + " ".join(items) + ")"


def _debug_time(seconds):
    """XAPI's debug timestamp: ``20260821T17:31:45.123Z``."""
    whole = int(seconds)
    return time.strftime("%Y%m%dT%H:%M:%S", time.gmtime(whole)) + f".{int((seconds - whole) * 1000):03d}Z"


def since_key(value):
    """``since`` as the audit handler compares it with a line's time (dashes and ``Z``
    dropped, a space taken for ``T``): ``2026-08-21T17:31`` -> ``20260821T17:31``."""
    return str(value or "").replace("-", "").replace("Z", "").replace(" ", "T")


class AuditTrail:
    """The audit lines of one host.

    :param db: the simulated database (names and uuids of the referenced objects).
    :param host_ref: a function giving the ref of the host this trail belongs to.
    """

    def __init__(self, db, host_ref):
        self.db, self.host_ref = db, host_ref
        self.lines = collections.deque(maxlen=MAX_LINES)
        self._lock = threading.Lock()
        self._threads = itertools.count(1000)

    def hostname(self):
        with self.db.lock:
            host = self.db.tables["host"].get(self.host_ref())
            return host["hostname"] if host else "localhost"

    def arguments(self, params):
        """The s-expression arguments of a call's parameters (the session left out): its
        references with their names, its descriptive strings, nothing else (no secret)."""
        items = []
        with self.db.lock:
            for value in params:
                for name, text, uuid, ref in self._argument(value):
                    items.append(_node([_quote(name), _quote(text), _quote(uuid), _quote(ref)]))
        return items

    def _argument(self, value):
        if isinstance(value, dict):
            for key, inner in value.items():
                if key in DESCRIPTIVE and isinstance(inner, str):
                    yield key, inner, "", ""
                elif isinstance(inner, str) and inner.startswith("OpaqueRef:"):
                    yield from ((key, *rest[1:]) for rest in self._argument(inner))
            return
        if not isinstance(value, str) or not value.startswith("OpaqueRef:"):
            return
        cls = self.db.class_of.get(value)
        record = self.db.tables.get(cls, {}).get(value) if cls else None
        if record is None:  # gone, or never known: XAPI writes the bare reference
            yield "self", "", "", value
            return
        yield cls.lower(), record.get("name_label", ""), record.get("uuid", ""), value

    def record(self, call, session, user, outcome="OK", kind="API", arguments=(), task=""):
        """Append the line of one call (``outcome``: ``OK`` or an XAPI error code)."""
        now = time.time()
        host = self.hostname()
        syslog = time.strftime("%b %d %H:%M:%S", time.localtime(now))
        status = "OK" if outcome == "OK" else f"ERROR:{outcome}"
        trackid = hashlib.md5(str(session).encode()).hexdigest()
        origin = "INET :::80" if kind == "API" else "HTTP"
        thread = next(self._threads)
        # the call's task: R: a real one, D: the dummy task XAPI gives a synchronous call
        task_id = (f"R:{str(task).rsplit(':', 1)[-1][:12]}" if task
                   else f"D:{hashlib.md5(str(thread).encode()).hexdigest()[:12]}")
        header = f"[{_debug_time(now)}|audit|{host}|{thread} {origin}|{call} {task_id}|audit]"
        body = _node([_quote(f"trackid={trackid}"), _quote("LOCAL_SUPERUSER"), _quote(user or "root"),
                      _quote("ALLOWED"), _quote(status), _quote(kind), _quote(call), _node(arguments)])
        with self._lock:
            self.lines.append(f"{syslog} {host} xapi: {header} {body}")

    def text(self, since=""):
        """The trail as ``/audit_log`` serves it: the lines not older than ``since``."""
        key = since_key(since)
        with self._lock:
            lines = list(self.lines)
        return "".join(line + "\n" for line in lines if not key or _line_time(line) >= key)


def _line_time(line):
    """The 21 characters of a line's debug time that ``since`` is compared with."""
    start = line.find("[") + 1
    return line[start:start + 21]


def logs_archive(trail):
    """The host's ``/var/log`` as a gzipped tar (``logs-download``): its audit trail and
    a few lines of its other logs."""
    host = trail.hostname()
    stamp = time.strftime("%b %d %H:%M:%S", time.localtime())
    files = {
        "var/log/audit.log": trail.text(),
        "var/log/xensource.log": f"{stamp} {host} xapi: [ info||0 |xapi_main|xapi] xapi starting up\n"
                                 f"{stamp} {host} xapi: [ info||0 |dbsync|xapi] database synchronised\n",
        "var/log/SMlog": f"{stamp} {host} SM: [1201] lock: opening lock file /var/lock/sm/sr\n",
        "var/log/daemon.log": f"{stamp} {host} systemd[1]: Started XenAPI server (XAPI).\n",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            data = content.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
