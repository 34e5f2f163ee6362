"""XAPI's API surface on the simulated database: dispatch, sessions, generic calls, tasks, events."""
import collections
import logging
import threading
import time

from . import hostops, joins, netops, operations, runner, storageops, vmops
from .rpc import DateTime, XapiFailure, xml_value
from .state import NULL_REF, now
from .timing import Timing

log = logging.getLogger(__name__)

NO_ASYNC_CLASSES = {"session", "task", "event"}
TOKEN_FORMAT = "%020d,%020d"

#: (class, message) -> operation function (see :mod:`.runner`): the calls that check,
#: claim, take their time and may be cancelled.
OPERATIONS = {**vmops.HANDLERS, **hostops.HANDLERS, **storageops.HANDLERS, **netops.HANDLERS, **joins.HANDLERS}


class Sessions:
    """Logged-in sessions; ``invalidate_all`` simulates a toolstack restart."""

    def __init__(self, db, credentials):
        self.db = db
        self.credentials = credentials  # username -> password
        self._sessions = {}
        self.lock = threading.Lock()

    def login(self, username, password, originator=""):
        if self.credentials.get(username) != password:
            raise XapiFailure("SESSION_AUTHENTICATION_FAILED", username, "Authentication failure")
        ref = self.db.new_ref()
        with self.lock:
            self._sessions[ref] = {"user": username, "originator": originator, "last_active": now()}
        return ref

    def check(self, ref):
        with self.lock:
            if not isinstance(ref, str) or ref not in self._sessions:
                raise XapiFailure("SESSION_INVALID", ref)

    def logout(self, ref):
        with self.lock:
            self._sessions.pop(ref, None)

    def is_valid(self, ref):
        with self.lock:
            return ref in self._sessions

    def invalidate_all(self):
        with self.lock:
            self._sessions.clear()
        with self.db.changed:  # blocked event.from calls notice at once, as on a toolstack restart
            self.db.changed.notify_all()


class XapiApi:
    """Executes one API call: ``call(method, params)`` returns a value or raises XapiFailure."""

    def __init__(self, db, disks, model, sessions, master_address, timing=None, stopping=None):
        self.db = db
        self.disks = disks
        self.model = model
        self.sessions = sessions
        self.master_address = master_address
        self.timing = timing or Timing()
        self.stopping = stopping or threading.Event()
        self.cancel_requests = set()
        self.event_sessions = set()  # sessions that called event.from
        # class -> how many times event.from sent all its records (from the empty token)
        self.full_loads = collections.Counter()
        # host.call_plugin's plugins: name -> handler(op, host, function, args)
        self.plugins = {"trim": storageops.trim_plugin}
        self.down_hosts = {}  # host ref -> key of its pending shutdown, while it is off
        self.slave_of = None  # the master's address once this pool's host joined another pool
        self.scheme = "http"
        # What the pool's API does when its master goes down or comes back (the
        # simulator's front ends its sessions and stops answering meanwhile).
        self.master_down = lambda seconds: None
        self.master_up = lambda: None
        self._special = {
            ("VDI", "snapshot"): lambda vdi, _cfg: operations.snapshot_vdi(self.db, self.disks, vdi),
            ("VDI", "clone"): lambda vdi, _cfg: operations.clone_vdi(self.db, self.disks, vdi),
            ("VDI", "create"): lambda record: operations.create_vdi(self.db, self.disks, record),
            ("task", "create"): self._task_create,
            ("task", "cancel"): self._task_cancel,
            ("task", "destroy"): self._task_destroy,
            ("task", "set_status"): lambda t, v: self._task_set(t, status=v),
            ("task", "set_progress"): lambda t, v: self._task_set(t, progress=float(v)),
            ("task", "set_result"): lambda t, v: self._task_set(t, result=v),
            ("task", "set_error_info"): lambda t, v: self._task_set(t, error_info=list(v)),
            ("event", "from"): self._event_from,
            ("event", "inject"): self._event_inject,
            ("event", "get_current_id"): lambda: str(self.db.generation),
        }

    # dispatch ------------------------------------------------------------

    def split_method(self, method):
        """``(is_async, class, message)`` from ``Class.msg``, ``Class_msg`` or ``Async.Class.msg``."""
        is_async = method.startswith("Async.")
        if is_async:
            method = method[6:]
        if "." in method:
            cls, _, msg = method.partition(".")
            return is_async, cls, msg
        for cls in sorted(self.model.classes, key=len, reverse=True):
            if method.startswith(cls + "_"):
                return is_async, cls, method[len(cls) + 1:]
        return is_async, None, method

    def list_methods(self):
        names = []
        for cls, model in self.model.classes.items():
            names.extend(f"{cls}.{msg}" for msg in model.messages)
        names.append("system.listMethods")
        return sorted(names)

    def call(self, method, params, role="master"):
        """Run one call as XAPI would on a host with this ``role``."""
        if method == "system.listMethods":
            return self.list_methods()
        if role != "master":
            raise XapiFailure("HOST_IS_SLAVE", self.master_address)
        if self.slave_of is not None:  # XAPI names the master's address only (no port)
            raise XapiFailure("HOST_IS_SLAVE", self.slave_of.rsplit("://", 1)[-1].rsplit(":", 1)[0])
        is_async, cls, msg = self.split_method(method)
        if cls is None or cls not in self.model.classes:
            raise XapiFailure("MESSAGE_METHOD_UNKNOWN", method)
        if cls == "session":
            return self._session_call(method, msg, params)
        expected = self.model.classes[cls].messages.get(msg)
        if expected is None:
            raise XapiFailure("MESSAGE_METHOD_UNKNOWN", method)
        if len(params) != expected + 1:
            raise XapiFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", method, expected + 1, len(params))
        self.sessions.check(params[0])
        args = params[1:]
        if (cls, msg) == ("event", "from"):
            args = [*args, params[0]]
        if is_async:
            if cls in NO_ASYNC_CLASSES or (msg.startswith(("get_", "set_")) and (cls, msg) not in OPERATIONS):
                raise XapiFailure("MESSAGE_METHOD_UNKNOWN", method)
            return self._run_async(method, cls, msg, args)
        return self._invoke(cls, msg, args)

    def _invoke(self, cls, msg, args, task=None):
        operation = OPERATIONS.get((cls, msg))
        if operation is not None:
            return runner.execute(self, f"{cls}.{msg}", operation, args, task)
        handler = self._special.get((cls, msg))
        with self.db.lock:
            try:
                if handler is not None:
                    return handler(*args)
                return self._generic(cls, msg, args)
            finally:
                self.db.commit()

    def _session_call(self, method, msg, params):
        if msg in ("login_with_password", "slave_local_login_with_password"):
            if not 2 <= len(params) <= 4:
                raise XapiFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", method, 4, len(params))
            originator = params[3] if len(params) == 4 else ""
            return self.sessions.login(params[0], params[1], originator)
        if not params:
            raise XapiFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", method, 1, 0)
        self.sessions.check(params[0])
        if msg in ("logout", "local_logout"):
            self.sessions.logout(params[0])
            return ""
        if msg == "get_this_host":
            return self.db.tables["pool"][next(iter(self.db.tables["pool"]))]["master"]
        if msg == "get_this_user":
            return NULL_REF
        raise XapiFailure("MESSAGE_METHOD_UNKNOWN", method)

    # generic messages ------------------------------------------------------

    def _field(self, cls, name):
        return self.model.classes[cls].fields.get(name)

    def typed(self, cls, fields):
        """``fields`` with wire values (int64 as strings...) turned into the datamodel's types."""
        model = self.model.classes[cls].fields
        return {k: self._coerce(model[k], v) if k in model else v for k, v in fields.items()}

    def _coerce(self, field, value):
        if field.type == "int" and isinstance(value, str):
            return int(value)
        if field.type == "float" and isinstance(value, (str, int)):
            return float(value)
        if field.type == "datetime" and isinstance(value, str):
            return DateTime(value)
        return value

    def _generic(self, cls, msg, args):
        db = self.db
        table = db.tables.get(cls)
        if table is None:
            raise XapiFailure("MESSAGE_METHOD_UNKNOWN", f"{cls}.{msg}")
        if msg == "get_all":
            return list(table)
        if msg == "get_all_records":
            return dict(table)
        if msg == "get_all_records_where":
            return dict(table)
        if msg == "get_by_uuid":
            return db.by_uuid(cls, args[0])
        if msg == "get_by_name_label":
            return [ref for ref, rec in table.items() if rec.get("name_label") == args[0]]
        if msg == "get_record":
            return db.record(cls, args[0])
        if msg in ("add_tags", "remove_tags"):
            tags = db.record(cls, args[0])["tags"]
            kept = [t for t in tags if t != args[1]]
            db.update(cls, args[0], tags=kept + [args[1]] if msg == "add_tags" else kept)
            return ""
        for prefix in ("get_", "set_", "add_to_", "remove_from_", "add_", "remove_"):
            if msg.startswith(prefix):
                field = self._field(cls, msg[len(prefix):])
                if field is not None:
                    return self._field_call(cls, prefix, field, args)
        raise XapiFailure("NOT_IMPLEMENTED", f"{cls}.{msg}")

    def _field_call(self, cls, prefix, field, args):
        db, ref = self.db, args[0]
        record = db.record(cls, ref)
        current = record[field.name]
        if prefix == "get_":
            return current
        if prefix == "set_":
            db.update(cls, ref, **{field.name: self._coerce(field, args[1])})
        elif prefix == "add_to_":
            if args[1] in current:
                raise XapiFailure("MAP_DUPLICATE_KEY", cls, field.name, record["uuid"], args[1])
            db.update(cls, ref, **{field.name: {**current, args[1]: args[2]}})
        elif prefix == "remove_from_":
            db.update(cls, ref, **{field.name: {k: v for k, v in current.items() if k != args[1]}})
        elif prefix == "add_":
            if args[1] not in current:
                db.update(cls, ref, **{field.name: current + [args[1]]})
        elif prefix == "remove_":
            db.update(cls, ref, **{field.name: [v for v in current if v != args[1]]})
        return ""

    # tasks -----------------------------------------------------------------

    def create_task(self, label, description="", cancellable=False):
        """A pending task, as ``task.create`` and the HTTP handlers make them."""
        master = self.db.tables["pool"][next(iter(self.db.tables["pool"]))]["master"]
        with self.db.lock:
            ref = self.db.create("task", {
                "name_label": label, "name_description": description, "created": now(),
                "status": "pending", "resident_on": master, "progress": 0.0,
                "allowed_operations": ["cancel"] if cancellable else [],
            })
            self.db.commit()
        return ref

    def _task_create(self, label, description):
        return self.create_task(label, description)

    def finish_task(self, ref, result="", failure=None):
        """Complete a task with a result string, or fail or cancel it with ``failure``."""
        with self.db.lock:
            if ref not in self.db.tables["task"]:
                return
            changes = {"progress": 1.0, "finished": now(), "allowed_operations": [],
                       "current_operations": {}}
            if failure is None:
                changes.update(status="success", result=result)
            else:
                status = "cancelled" if failure.code == "TASK_CANCELLED" else "failure"
                changes.update(status=status, error_info=failure.description)
            self.db.update("task", ref, **changes)
            self.db.commit()
        self.cancel_requests.discard(ref)

    def progress(self, ref, value):
        with self.db.lock:
            if ref in self.db.tables["task"]:
                self.db.update("task", ref, progress=float(value))
                self.db.commit()

    def is_cancelling(self, ref):
        return ref in self.cancel_requests

    def _task_cancel(self, ref):
        record = self.db.record("task", ref)
        if "cancel" not in record["allowed_operations"] or record["status"] != "pending":
            raise XapiFailure("OPERATION_NOT_ALLOWED", "task cannot be cancelled")
        self.cancel_requests.add(ref)
        self.db.update("task", ref, status="cancelling")
        return ""

    def _task_destroy(self, ref):
        """XAPI destroys an ended task; one still running (or cancelling) is only marked."""
        record = self.db.record("task", ref)
        if record["status"] in ("pending", "cancelling"):
            self.db.update("task", ref, current_operations={**record["current_operations"],
                                                             ref: "destroy"})
        else:
            self.db.destroy("task", ref)
        return ""

    def _task_set(self, ref, **changes):
        self.db.record("task", ref)
        self.db.update("task", ref, **changes)
        return ""

    def _run_async(self, method, cls, msg, args):
        # XAPI can cancel the tasks of the calls it carries out in steps.
        task = self.create_task(f"Async.{cls}.{msg}", "", cancellable=(cls, msg) in OPERATIONS)

        def run():
            try:
                value = self._invoke(cls, msg, args, task)
                self.finish_task(task, result=xml_value(value) if value != "" else "")
            except XapiFailure as failure:
                self.finish_task(task, failure=failure)
            except Exception as exc:  # a simulator bug must still settle the task
                log.exception("async %s failed", method)
                self.finish_task(task, failure=XapiFailure("INTERNAL_ERROR", str(exc)))

        threading.Thread(target=run, name=f"async-{msg}", daemon=True).start()
        return task

    # events ------------------------------------------------------------------

    def _event_from(self, classes, token, timeout, session=None):
        db = self.db
        try:
            timeout = float(timeout)
        except (TypeError, ValueError):
            raise XapiFailure("FIELD_TYPE_ERROR", "timeout") from None
        if token == "":
            since = None
        else:
            try:
                since = int(str(token).split(",")[0])
            except ValueError:
                raise XapiFailure("EVENT_FROM_TOKEN_PARSE_FAILURE", token) from None
        wanted = {str(c).lower() for c in classes}
        if session is not None:  # who follows the events (observed by tests, as a pool's admin would)
            self.event_sessions.add(session)
            if since is None:
                self.full_loads.update(cls.lower() for cls in db.tables if "*" in wanted or cls.lower() in wanted)
        deadline = time.monotonic() + max(0.0, min(timeout, 3600.0))
        while True:
            if session is not None and not self.sessions.is_valid(session):
                raise XapiFailure("SESSION_INVALID", session)
            events = self._collect(since, wanted)
            remaining = deadline - time.monotonic()
            if events or remaining <= 0:
                break
            db.changed.wait(remaining)
        return {"events": events, "valid_ref_counts": db.ref_counts(),
                "token": TOKEN_FORMAT % (db.generation, 0)}

    def _wants(self, wanted, cls, ref):
        lower = cls.lower()
        return "*" in wanted or lower in wanted or f"{lower}/{ref}" in wanted

    def _event(self, gen, cls, op, ref, snapshot=None):
        event = {"id": str(gen), "timestamp": "0.0", "class": cls.lower(), "operation": op,
                 "ref": ref}
        if snapshot is not None:
            event["snapshot"] = snapshot
        return event

    def _collect(self, since, wanted):
        db = self.db
        if since is None:
            return [self._event(db.generation, cls, "add", ref, record)
                    for cls, table in db.tables.items()
                    for ref, record in table.items() if self._wants(wanted, cls, ref)]
        events = []
        for ref, gen in db.changes_since(since):
            cls = db.class_of.get(ref)
            if cls is not None:
                if self._wants(wanted, cls, ref):
                    op = "add" if db.created_gen.get(ref, 0) > since else "mod"
                    events.append(self._event(gen, cls, op, ref, db.tables[cls][ref]))
            elif ref in db.tombstones:
                cls, created = db.tombstones[ref]
                if created <= since and self._wants(wanted, cls, ref):
                    events.append(self._event(gen, cls, "del", ref))
        return events

    def _event_inject(self, cls, ref):
        real = self.db.real_class(cls)
        if real is None or ref not in self.db.tables[real]:
            raise XapiFailure("HANDLE_INVALID", cls, ref)
        self.db.update(real, ref)
        return TOKEN_FORMAT % (self.db.generation - 1, 0)
