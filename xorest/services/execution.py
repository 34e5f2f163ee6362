"""A task as the process running it sees it: its log, its XAPI calls, its end.

Every change of the log is written to the store (progress at most a few times a
second), so other processes show it as it goes.  XAPI calls made through the task are
linked to it (their uuids in ``properties.xapiTasks``; the ones running now in the
store, so that any process can cancel them), report their progress, and stop when an
abort is requested.  Before a task succeeds, the pools it wrote to are settled: a read
that follows its end shows what it changed.  A task acts for the call that started it,
in whichever thread it runs: within that call's token scope, and its end goes into the
audit trail with that call (:mod:`.audit`).
"""
import contextlib
import logging
import secrets
import threading
import time

import orjson

from ..errors import Conflict, XorestError
from ..xapi import XapiError, XapiUnreachable
from ..xapi.tasks import AsyncCall
from . import audit, scopes
from .failures import translate
from .liveness import owner_mark
from .sweeper import TASK_MARK

log = logging.getLogger(__name__)

#: At most one progress write per this many seconds (the end of a task always writes).
SAVE_INTERVAL = 0.25
#: Seconds between two looks at the store for an abort request.
ABORT_CHECK_INTERVAL = 0.2
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
#: XAPI messages that change nothing (no need to settle the pool after them).
READ_ONLY_PREFIXES = ("get_", "assert_", "compute_", "retrieve_")


def task_marks():
    """The mark of an XAPI task this process follows: if the process dies, the sweep of
    any other process cancels and removes it (no task of xorest's stays pending)."""
    return {TASK_MARK: owner_mark()}


def now_ms():
    return int(time.time() * 1000)


def new_task_id():
    """Xen Orchestra's form: the start time in ms in base 36 on 9 characters, a random part."""
    stamp, text = now_ms(), ""
    while stamp:
        stamp, rest = divmod(stamp, 36)
        text = _DIGITS[rest] + text
    return f"{text:0>9}-{''.join(secrets.choice(_DIGITS) for _ in range(10))}"


class TaskAborted(Conflict):
    message = "the task was aborted"


def error_result(exc):
    """A failure as a task's ``result`` (Xen Orchestra serialises the error object)."""
    if isinstance(exc, XorestError):
        return {"name": type(exc).__name__, "message": exc.message, "status": exc.status, **exc.data}
    return {"name": "InternalError", "message": "internal error (see the server's log)", "status": 500}


def read_only(method):
    """Whether an XAPI method changes nothing (no need to settle the pool after it)."""
    return method.split(".")[-1].startswith(READ_ONLY_PREFIXES)


@contextlib.contextmanager
def tracked(tasks, name, obj, params=None):
    """A transfer (export, import) shown in the task log while it runs; ``tasks`` may be
    ``None`` (a service used without a log)."""
    if tasks is None:
        yield None
        return
    task = tasks.begin(f"REST API: {name}", object_id=obj.get("id"), object_type=obj.get("type"), params=params,
                       kind="xo:rest-api:transfer")
    try:
        yield task
    except BaseException as exc:
        task.fail(exc)
        raise
    task.succeed()


class RunningTask:
    """A pending task owned by this process.

    :param service: the :class:`~xorest.services.tasks.TaskService`.
    :param properties: Xen Orchestra's ``properties`` (``name``, ``type``, ``objectId``...).
    """

    def __init__(self, service, task_id, properties):
        self.service, self.store, self.id = service, service.store, task_id
        start = now_ms()
        self.log = {"id": task_id, "properties": properties, "start": start, "status": "pending",
                    "updatedAt": start, "progress": 0}
        self.written = set()  # pool connections written through (settled before success)
        self._open = [self.log]  # the innermost open sub-task last
        self._span = (0.0, 100.0)  # the part of the progress XAPI calls move now
        self._links = []
        self._lock = threading.RLock()
        self._saved_at, self._abort_checked_at, self._aborted = 0.0, 0.0, False
        self.scope, self.origin = scopes.current(), audit.current()  # the starting call's
        self.store.add_task(task_id, owner_mark(), "pending", properties.get("objectId"), self._body(), start / 1000)
        service.notify()

    def _body(self):
        return orjson.dumps(self.log).decode()

    def _save(self, force=True):
        with self._lock:
            if not force and time.monotonic() - self._saved_at < SAVE_INTERVAL:
                return
            self.log["updatedAt"] = now_ms()
            self.store.update_task(self.id, body=self._body(), status=self.log["status"],
                                   links=orjson.dumps(self._links).decode())
            self._saved_at = time.monotonic()
        self.service.notify()

    # what the log shows --------------------------------------------------------

    def progress(self, percent):
        percent = round(max(0.0, min(100.0, percent)), 1)
        if percent != self.log["progress"]:
            self.log["progress"] = self.log["properties"]["progress"] = percent
            self._save(force=False)

    @contextlib.contextmanager
    def span(self, start, end):
        """XAPI calls inside move the progress from ``start`` to ``end`` percent."""
        previous, self._span = self._span, (start, end)
        try:
            yield
        finally:
            self._span = previous
            self.progress(end)

    def info(self, message, data=None):
        self._open[-1].setdefault("infos", []).append({"message": message, "data": data})
        self._save()

    def warning(self, message, data=None):
        self._open[-1].setdefault("warnings", []).append({"message": message, "data": data})
        self._save()

    @contextlib.contextmanager
    def subtask(self, name, **properties):
        """A step shown as a sub-task (Xen Orchestra's ``Task.run`` inside a task)."""
        sub = {"id": new_task_id(), "properties": {"name": name, **properties}, "start": now_ms(),
               "status": "pending"}
        with self._lock:
            self._open[-1].setdefault("tasks", []).append(sub)
            self._open.append(sub)
        self._save()
        try:
            yield sub
        except BaseException as exc:
            sub.update(status="failure", end=now_ms(), result=error_result(exc))
            raise
        else:
            sub.update(status="success", end=now_ms())
        finally:
            with self._lock:
                self._open.remove(sub)
            self._save()

    # aborts --------------------------------------------------------------------

    def aborted(self):
        """Whether an abort was requested (from any process); the store is read at most
        every :data:`ABORT_CHECK_INTERVAL`."""
        if not self._aborted and time.monotonic() - self._abort_checked_at >= ABORT_CHECK_INTERVAL:
            self._look_for_abort()
        return self._aborted

    def _look_for_abort(self):
        self._abort_checked_at = time.monotonic()
        row = self.store.get_task(self.id)
        if row is not None and row["abort_requested_at"] is not None:
            self._aborted = True
            self.log["abortionRequestedAt"] = int(row["abort_requested_at"] * 1000)
            self._save()

    def check_aborted(self):
        """Between two steps: stop here if an abort was requested."""
        if self.aborted():
            raise TaskAborted(f"the task {self.id} was aborted")

    # XAPI calls ------------------------------------------------------------------

    def call(self, conn, method, *args):
        """A synchronous XAPI call (short ones), its failure translated."""
        self.check_aborted()
        try:
            result = conn.rpc.call(method, *args)
        except (XapiError, XapiUnreachable) as exc:
            raise translate(exc, method) from None
        if not read_only(method):
            self.written.add(conn)
        return result

    def run(self, conn, method, *args):
        """``Async.<method>``: followed to its end, its progress shown, cancelled on abort."""
        self.check_aborted()
        start, end = self._span
        try:
            call = AsyncCall(conn.rpc, method, *args, marks=task_marks())
            link = {"server": conn.key, "ref": call.task}
            with self._lock:
                self._links.append(link)
                uuid = call.task_uuid()
                self.log["properties"].setdefault("xapiTasks", []).append(
                    {"id": uuid, "method": method, "href": f"/rest/v0/xapi-tasks/{uuid}"})
            self._save()
            self.written.add(conn)
            try:
                return call.wait(on_progress=lambda p: self.progress(start + (end - start) * p),
                                 should_cancel=self.aborted)
            finally:
                with self._lock:
                    self._links.remove(link)
        except (XapiError, XapiUnreachable) as exc:
            raise translate(exc, method) from None

    def link(self, uuid, method):
        """Show an XAPI task this task drives without :meth:`run` (a transfer's)."""
        if uuid:
            self.log["properties"].setdefault("xapiTasks", []).append(
                {"id": uuid, "method": method, "href": f"/rest/v0/xapi-tasks/{uuid}"})
            self._save()

    # the end ---------------------------------------------------------------------

    def succeed(self, result=None):
        """End in success, once the pools written to show the changes (bounded wait)."""
        if self.written and not self.service.pools.settle(self.written):
            self.warning("the pool's events are late: a read may not show this change yet")
        self.log.update(status="success", end=now_ms(), progress=100)
        self.log["properties"]["progress"] = 100
        if result is not None:
            self.log["result"] = result
        self._ended()

    def fail(self, exc):
        if self.written:
            self.service.pools.settle(self.written)  # a failure may have changed things too
        if not self._aborted:
            # an abort from another process cancels the XAPI task at once: the failure it
            # causes may come before this process's next (throttled) look at the request
            self._look_for_abort()
        self.log.update(status="failure", end=now_ms(), result=error_result(exc))
        self._ended()

    def _ended(self):
        """Every end of a task comes here: saved, audited with its starting call, pruned."""
        self._save()
        if self.origin is not None:
            self.origin.task_ended(self.log)
        self.service.prune()

    def execute(self, function):
        """Run ``function(self)`` as this task, within its starting call's scope; returns
        its result, raises its error."""
        try:
            with scopes.applied(self.scope):
                result = function(self)
        except BaseException as exc:
            if not isinstance(exc, XorestError):
                log.exception("task %s (%s) failed", self.id, self.log["properties"].get("name"))
            self.fail(exc)
            raise
        self.succeed(result)
        return result
