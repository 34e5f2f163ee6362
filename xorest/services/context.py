"""What actions, edits, creations and deletions work with: one pool's XAPI calls (failures
translated, writes remembered so that reads see them), object lookups, and the task when
there is one (progress, aborts)."""
import logging
import time

from ..errors import BadRequest, Unavailable
from ..xapi import SessionInvalid, XapiError, XapiUnreachable
from ..xapi.tasks import AsyncCall
from .execution import read_only, task_marks
from .failures import translate

log = logging.getLogger(__name__)


class Context:
    """Calls and lookups around one object (``obj``), optionally as a task.

    :param collections: the :class:`~xorest.services.collections.CollectionService`.
    :param pools: the :class:`~xorest.services.pools.PoolService`.
    :param task: the :class:`~xorest.services.execution.RunningTask` doing the work, if any.
    :param tasks: the :class:`~xorest.services.tasks.TaskService` (for actions on tasks).
    """

    def __init__(self, collections, pools, store, obj, task=None, tasks=None):
        self.collections, self.pools, self.store = collections, pools, store
        self.obj, self.task, self.tasks = obj, task, tasks
        self.written = set()  # without a task: what to settle at the end
        self._conns = {}  # pool uuid -> its connection, looked up once

    def conn(self, obj=None):
        """The connection to ``obj``'s pool (default: the context's object): refused (503)
        if the pool is down when the work starts; kept afterwards, when its events may
        stop for a while (a master rebooting in a rolling reboot) but its calls work."""
        obj = obj or self.obj
        conn = self._conns.get(obj.get("$pool"))
        if conn is None:
            conn = self._conns[obj.get("$pool")] = self.pools.connection_for(obj)
        return conn

    def get(self, collection, key, same_pool=True, parameter=None):
        """An object by id (404); in the context's pool unless ``same_pool`` is false (400)."""
        found = self.collections.get(collection, key)
        if same_pool and self.obj is not None and found.get("$pool") != self.obj.get("$pool"):
            raise BadRequest(f"{found['type']} {key} is not in the pool of {self.obj['id']}",
                             parameter=parameter)
        return found

    def call(self, method, *args, obj=None):
        """A short XAPI call on the object's pool (or ``obj``'s)."""
        conn = self.conn(obj)
        if self.task is not None:
            return self.task.call(conn, method, *args)
        try:
            result = conn.rpc.call(method, *args)
        except (XapiError, XapiUnreachable) as exc:
            raise translate(exc, method) from None
        if not read_only(method):
            self.written.add(conn)
        return result

    def run(self, method, *args, obj=None):
        """An ``Async.`` XAPI call, followed to its end (progress and aborts with a task)."""
        conn = self.conn(obj)
        if self.task is not None:
            return self.task.run(conn, method, *args)
        try:
            self.written.add(conn)
            return AsyncCall(conn.rpc, method, *args, marks=task_marks()).wait()
        except (XapiError, XapiUnreachable) as exc:
            raise translate(exc, method) from None

    def field(self, cls, ref, name, obj=None):
        return self.call(f"{cls}.get_{name}", ref, obj=obj)

    def map_entry(self, cls, ref, field, key, value):
        """Set (or, with ``None``, remove) one entry of a map field, as ``update_<field>``."""
        self.call(f"{cls}.remove_from_{field}", ref, key)
        if value is not None:
            self.call(f"{cls}.add_to_{field}", ref, key, str(value))

    def warning(self, message, data=None):
        if self.task is not None:
            self.task.warning(message, data)
        else:
            log.warning("%s: %s %s", (self.obj or {}).get("id"), message, data or "")

    def check_aborted(self):
        if self.task is not None:
            self.task.check_aborted()

    def settle(self):
        """Without a task: wait until reads show the writes (a task does it at its end)."""
        if self.written and not self.pools.settle(self.written):
            log.warning("the pool's events are late: a read may not show the last change yet")
        self.written = set()

    def wait_until(self, what, check, timeout, obj=None):
        """Poll ``check(call)`` until it is true; the pool may be away meanwhile (a master
        rebooting): unreachable or new-session answers are waited through.

        :raises Unavailable: not true after ``timeout`` seconds.
        """
        conn, deadline, delay = self.conn(obj), time.monotonic() + timeout, 0.1
        while True:
            self.check_aborted()
            try:
                if check(lambda method, *args: conn.rpc.call(method, *args)):
                    return
            except (XapiUnreachable, SessionInvalid):
                pass
            if time.monotonic() > deadline:
                raise Unavailable(f"{what}: still not done after {timeout:g} s")
            time.sleep(delay)
            delay = min(1.0, delay * 1.5)
