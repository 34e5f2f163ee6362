"""``/rest/v0/tasks``: the task log in Xen Orchestra's shape (listed, watched, waited for,
deleted); an object's tasks are a sub-collection (:mod:`.related`).  Aborting is an action
(``POST /tasks/<id>/actions/abort``, see :mod:`.actions`)."""
from flask import Blueprint, Response

from .. import filter as live_filter
from ..errors import BadRequest
from ..services import scopes
from ..services.schemas import object_schema
from . import bodies, services
from .listing import listing, listing_answer
from .output import json_response, ndjson_response, parse_fields, projector, with_links
from .routes import Answer, operation
from .streaming import WATCH_INTERVAL, client_socket, poll_client, stopping_check

bp = Blueprint("tasks", __name__)


@operation(bp, "/tasks", permission="read", tags=("tasks",), summary="The task log",
           query=bodies.TASK_LIST_QUERY,
           answers=(listing_answer("the tasks' URLs, or the chosen fields of each; with watch=true&ndjson=true, "
                                   "their changes as they happen", "tasks"),))
def list_tasks(query):
    """Tasks in id (start) order; ``watch=true`` (with ``ndjson=true``) streams their
    changes as ``["update", task]`` and ``["remove", {"id": ...}]`` lines, as Xen Orchestra."""
    if query["watch"]:
        if not query["ndjson"]:
            raise BadRequest("watch=true requires ndjson=true")
        return _watch(query)
    return listing("tasks", query)


def _watch(query):
    svc = services()
    tasks, collections = svc.tasks, svc.collections
    node = live_filter.parse(query["filter"]) if query["filter"] else None
    item = projector("tasks", parse_fields(query["fields_"]))  # as Xen Orchestra: URLs unless fields=
    sock, stopping = client_socket(), stopping_check()
    since = tasks.last_change()
    scope = scopes.current()
    # a scoped token is told the removal of the tasks it could see only (others are absent)
    shown = {task["id"] for task in collections.select("tasks")[0]} if scope else None

    def lines():  # until the client leaves (a write to a client that stopped reading times out)
        nonlocal since
        while (sock is None or poll_client(sock, 0) != "gone") and not stopping():
            events, since = tasks.wait_change(since, WATCH_INTERVAL)
            snapshot = collections.cache.snapshot()
            for event, obj in events:
                if event == "update":
                    with scopes.applied(scope):
                        visible = bool(collections.select_objects("tasks", [obj], snapshot=snapshot)[0])
                    if not visible:  # out of scope, or leaving it with its object
                        event, obj = "remove", {"id": obj["id"]}
                if shown is not None:
                    if event == "remove" and obj["id"] not in shown:
                        continue
                    (shown.add if event == "update" else shown.discard)(obj["id"])
                if event == "update" and node is not None:
                    try:
                        with live_filter.evaluation_budget(svc.config.regex_timeout):
                            matched = node.match(obj)
                    except live_filter.RegexTimeout as exc:  # the stream ends visibly, never stalls
                        yield ["error", {"error": f"the filter is too costly: {exc}"}]
                        return
                    if not matched:
                        continue
                yield [event, item(obj) if event == "update" else obj]
    return ndjson_response(lines())


@operation(bp, "/tasks/<key>", permission="read", tags=("tasks",), summary="One task", query=bodies.TASK_QUERY,
           answers=(Answer(200, "the task (with wait=true: once it ended, or as it is after the wait's bound)",
                           object_schema("tasks")),
                    Answer(404, "no such task")))
def get_task(key, query):
    """One task; ``wait=true`` (or ``result``) answers once it ended, or after
    ``XOREST_TASK_WAIT`` seconds (or when the client leaves) as it is then."""
    svc = services()
    task = svc.collections.get("tasks", key)  # out of the token's scope is absent
    if query["wait"] in ("true", "1", "", "result"):
        sock, stopping = client_socket(), stopping_check()
        gone = (lambda: poll_client(sock, 0) == "gone" or stopping()) if sock is not None else (lambda: False)
        task = svc.tasks.wait(key, svc.config.task_wait, gone)
    return json_response(with_links(task, "tasks"))


@operation(bp, "/tasks", methods=("DELETE",), permission="vm.operate", tags=("tasks",),
           summary="Delete every ended task", answers=(Answer(204, "deleted"),))
def delete_tasks():
    """Delete every task that ended (running ones stay)."""
    visible = [task["id"] for task in services().collections.select("tasks")[0]]  # the token's scope
    services().tasks.delete_ended(visible)
    return Response(status=204)


@operation(bp, "/tasks/<key>", methods=("DELETE",), permission="vm.operate", tags=("tasks",),
           summary="Delete an ended task",
           answers=(Answer(204, "deleted"), Answer(404, "no such task"), Answer(409, "the task still runs")))
def delete_task(key):
    """Delete a task that ended (a running task must be aborted first: 409)."""
    services().tasks.delete(services().collections.get("tasks", key)["id"])
    return Response(status=204)
