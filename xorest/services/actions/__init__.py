"""Actions, as Xen Orchestra's REST API names them: ``POST /<collection>/<id>/actions/<name>``.

Each action is an :class:`Action` of the catalogue (one module per kind of object);
:class:`ActionService` runs it as a task of the log, in the background (the client gets
the task's id) or in the request (``sync``).  An action function receives a
:class:`~xorest.services.context.Context`, the object and the validated body; it makes the XAPI calls
Xen Orchestra makes, through the context (failures translated, progress and aborts
handled, pools settled before success), and returns ``None`` or ``{"id": new uuid}``.
"""
import logging
import threading
from dataclasses import dataclass
from typing import Callable, Optional

from ...errors import NotFound, NotSupported, XorestError
from ...objects import COLLECTIONS
from ..context import Context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Action:
    """One action of one collection.

    :param title: the task's name, after ``REST API: `` (Xen Orchestra's words).
    :param permission: what the route requires (see ``services/permissions.py``).
    :param created: the collection of the object whose id a synchronous call answers
        (``201`` with ``Location``); ``None`` when the action answers nothing (``204``).
    :param sync_status: the status of a synchronous answer.
    :param unprocessable: when the action answers ``422`` (a parameter naming an object that
        exists but cannot serve), for its documentation; ``None``: never.
    """

    collection: str
    name: str
    title: str
    run: Callable
    permission: str
    created: Optional[str] = None
    sync_status: int = 204
    unprocessable: Optional[str] = None

    @property
    def summary(self):
        return (self.run.__doc__ or self.title).strip().splitlines()[0]


@dataclass
class Outcome:
    """What an action answers: its task, and its result when it ran synchronously."""

    task_id: str
    sync: bool
    result: Optional[dict] = None


def _xo_type(obj):
    return obj.get("type") if isinstance(obj, dict) else None


class ActionService:
    """Runs actions of :data:`CATALOGUE` as tasks.

    :param collections: the :class:`~xorest.services.collections.CollectionService`.
    :param pools: the :class:`~xorest.services.pools.PoolService`.
    :param tasks: the :class:`~xorest.services.tasks.TaskService`.
    """

    def __init__(self, collections, pools, tasks, store, config):
        self.collections, self.pools, self.tasks = collections, pools, tasks
        self.store, self.config = store, config

    @staticmethod
    def catalogue():
        return CATALOGUE

    @staticmethod
    def find(collection, name):
        action = CATALOGUE.get((collection, name))
        if action is None:
            names = sorted(a.name for a in CATALOGUE.values() if a.collection == collection)
            if (collection, name) in UNSUPPORTED:
                raise NotSupported(UNSUPPORTED[collection, name], actions=names)
            raise NotFound(f"no action {name!r} on {collection}", actions=names)
        return action

    def start(self, collection, name, key, body, user, sync=False, title=None):
        """Start an action on the object ``key`` (404 before any task if it is unknown).

        :param title: the task's name (default ``REST API: <the action's title>``; the
            JSON-RPC API names its calls' tasks as Xen Orchestra: ``API call: vm.start``).
        :returns: an :class:`Outcome`; a synchronous run raises the action's error.
        """
        action = self.find(collection, name)
        obj = self.collections.get(collection, key)
        task = self.tasks.begin(title or f"REST API: {action.title}", object_id=obj["id"],
                                object_type=_xo_type(obj) or COLLECTIONS.get(collection),
                                user_id=user.get("id") if user else None, params=body or None)
        context = Context(self.collections, self.pools, self.store, obj, task, self.tasks)

        def work(running):
            return action.run(context, obj, body or {})
        if sync:
            return Outcome(task.id, True, task.execute(work))
        threading.Thread(target=self._background, args=(task, work), name=f"task-{task.id[:9]}",
                         daemon=True).start()
        return Outcome(task.id, False)

    @staticmethod
    def _background(task, work):
        try:
            task.execute(work)
        except XorestError as exc:
            log.info("task %s failed: %s", task.id, exc)
        except Exception:
            pass  # logged by the task with its traceback


#: Actions Xen Orchestra's API has and xorest does not do, with the reason: a ``501``, as
#: every option xorest leaves out (a ``404`` would tell a client the action does not exist).
UNSUPPORTED = {
    ("pools", "rolling_update"): "rolling_update needs Xen Orchestra's update plugin and its package "
                                 "repositories; xorest does not provide it",
}


def _catalogue():
    from . import hosts, network, pools, servers, storage, tasks, vms

    actions = {}
    for module in (vms, hosts, pools, storage, network, servers, tasks):
        for action in module.ACTIONS:
            if (action.collection, action.name) in actions:
                raise ValueError(f"action {action.collection}/{action.name} declared twice")
            actions[action.collection, action.name] = action
    return actions


CATALOGUE = _catalogue()
