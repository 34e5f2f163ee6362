"""The task log, in Xen Orchestra's shape, shared by every process through the store.

A task is run by the process that started it (its ``owner``, named as the sweep's
marks name processes); any process reads it, waits for it, aborts it or deletes it.
A pending task whose owner no longer exists (on this machine, or with its machine: see
:mod:`.liveness`) is ``interrupted``.
Tasks look like Xen Orchestra's: ``id``, ``properties`` (``name``, ``type``,
``objectId``, ``objectType``, ``userId``, ``params``), ``start``, ``end``, ``updatedAt``,
``status``, ``progress``, ``result``, ``infos``, ``warnings`` and sub-``tasks``.
"""
import functools
import logging
import threading
import time

import orjson

from ..errors import Conflict, NotFound
from .execution import RunningTask, new_task_id, now_ms
from .liveness import owner_is_gone

log = logging.getLogger(__name__)

#: Seconds between two looks at the store while waiting for a task of another process.
POLL_INTERVAL = 0.2


def _task(row):
    return orjson.loads(row["body"])


class TaskService:
    """Reads and changes the task log; :meth:`begin` starts a task owned by this process.

    :param store: the store (tasks table).
    :param pools: the :class:`~xorest.services.pools.PoolService` (to cancel XAPI tasks).
    """

    def __init__(self, store, pools, config):
        self.store = store
        self.pools = pools
        self.config = config
        self._changed = threading.Condition()  # this process's tasks changed (waits wake at once)

    # reading --------------------------------------------------------------------

    def _settled(self, row, hosts_alive=None):
        """A row, made ``interrupted`` first if its owner died while it was pending: its
        process on this machine, or its machine (``hosts_alive``: a function giving the
        store's notes, read only for another machine's task)."""
        if row["status"] != "pending" or not owner_is_gone(row["owner"], hosts_alive or self.store.hosts_alive):
            return row
        task = _task(row)
        task.update(status="interrupted", updatedAt=now_ms())
        if self.store.update_task(row["id"], body=orjson.dumps(task).decode(), status="interrupted",
                                  links="[]", only_pending=True):
            log.warning("task %s (%s) was interrupted: its process %s (or its machine) is gone", row["id"],
                        task["properties"].get("name"), row["owner"])
        return self.store.get_task(row["id"]) or row

    def tasks(self, object_id=None):
        """``id -> task`` in id (start) order, optionally those about one object."""
        rows = self.store.list_tasks(object_id=object_id)
        hosts_alive = functools.cache(self.store.hosts_alive)  # read once at most per listing
        return {row["id"]: _task(self._settled(row, hosts_alive)) for row in rows}

    def about(self, object_id):
        """The tasks of one object: about it, or given its id as a parameter (as Xen Orchestra)."""
        return [task for task in self.tasks().values() if concerns(task, object_id)]

    def get(self, task_id):
        row = self.store.get_task(task_id)
        if row is None:
            raise NotFound(f"no such task {task_id}", id=task_id, type="task")
        return _task(self._settled(row))

    def wait(self, task_id, timeout, client_gone=lambda: False):
        """The task once it ended, or as it is after ``timeout`` seconds (or when the
        client went away): a waiting request never holds its thread for ever."""
        deadline = time.monotonic() + timeout
        while True:
            task = self.get(task_id)
            left = deadline - time.monotonic()
            if task["status"] != "pending" or left <= 0 or client_gone():
                return task
            with self._changed:
                self._changed.wait(min(left, POLL_INTERVAL))

    def changes(self, since):
        """``(events, last)``: ``["update", task]`` and ``["remove", {"id": id}]`` after
        the change number ``since``, as Xen Orchestra's ``watch`` streams them."""
        rows, removed, last = self.store.task_changes(since)
        events = [["update", _task(self._settled(row))] for row in rows]
        return events + [["remove", {"id": task_id}] for task_id in removed], last

    def last_change(self):
        return self.store.task_changes(2**62)[2]

    def wait_change(self, since, timeout):
        """Wait up to ``timeout`` for a change after ``since`` (of this process at once,
        of others within :data:`POLL_INTERVAL`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events, last = self.changes(since)
            if events:
                return events, last
            with self._changed:
                self._changed.wait(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        return [], since

    # changing -------------------------------------------------------------------

    def notify(self):
        with self._changed:
            self._changed.notify_all()

    def begin(self, name, *, object_id=None, object_type=None, user_id=None, params=None,
              kind="xo:rest-api:action"):
        """A new pending task owned by this process (see :mod:`.execution`)."""
        return RunningTask(self, new_task_id(), {
            "name": name, "type": kind, "objectId": object_id, "objectType": object_type, "userId": user_id,
            **({"params": params} if params is not None else {})})

    def abort(self, task_id):
        """Ask for a task's abortion: its process notices, and the XAPI tasks it drives
        are cancelled from here at once (whichever process asked).

        :raises NotFound: no such task.  :raises Conflict: it ended already.
        """
        row = self.store.get_task(task_id)
        if row is None:
            raise NotFound(f"no such task {task_id}", id=task_id, type="task")
        if not self.store.request_task_abort(task_id, time.time()):
            raise Conflict(f"the task {task_id} has ended: nothing to abort", status=self._settled(row)["status"])
        for link in orjson.loads(self.store.get_task(task_id)["links"]):
            conn = self.pools.connection_by_key(link["server"])
            if conn is None:
                continue  # not connected here: its owner cancels it
            try:
                conn.rpc.call("task.cancel", link["ref"])
            except Exception as exc:  # an ended task cannot be cancelled: nothing to do
                log.info("cancelling XAPI task %s of %s: %s", link["ref"], task_id, exc)
        self.notify()

    def delete(self, task_id):
        """Delete an ended task. :raises NotFound: unknown. :raises Conflict: still running."""
        task = self.get(task_id)
        if task["status"] == "pending":
            raise Conflict(f"the task {task_id} is still running: abort it first", id=task_id)
        self.store.delete_tasks([task_id])
        self.notify()

    def delete_ended(self, task_ids=None):
        """Delete every ended task (of ``task_ids``, when given); returns how many."""
        self.tasks()  # interrupted tasks are ended too
        deleted = self.store.delete_tasks(task_ids)
        self.notify()
        return len(deleted)

    def prune(self):
        """Keep the newest ``task_keep`` ended tasks, as Xen Orchestra's log does."""
        if self.store.delete_tasks(keep=self.config.task_keep):
            self.notify()


def concerns(task, object_id):
    """Whether ``task`` is about object ``object_id``, or was given its id as a parameter
    (as Xen Orchestra lists an object's tasks)."""
    properties = task["properties"]
    return properties.get("objectId") == object_id or (properties.get("params") or {}).get("id") == object_id
