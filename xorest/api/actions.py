"""``POST /rest/v0/<collection>/<id>/actions/<action>``: one route per action of the
catalogue (``services/actions``), each with its body's schema.

Asynchronous by default, as Xen Orchestra: ``202``, ``Location: /rest/v0/tasks/<id>``,
``{"taskId": ...}``.  With ``?sync=true`` the answer waits for the end: ``204``, or the
new object's id (``201`` with ``Location``) for snapshots, clones and creations.
"""
from flask import Blueprint, Response, g

from ..services.actions import ActionService
from . import BASE_URL, bodies, services
from .output import json_response
from .routes import NEW_ID, TASK_STARTED, Answer, operation

bp = Blueprint("actions", __name__)

_ASYNC = Answer(202, "started: the task's id (also in Location)", TASK_STARTED, headers=("Location",))
_REFUSED = (Answer(400, "invalid body or query"), Answer(404, "no such object (also one the body names)"),
            Answer(409, "the pool refused: wrong state, another operation in progress..."),
            Answer(502, "the pool failed the operation (XAPI's code and parameters in data)"),
            Answer(501, "an option xorest does not support (named in data)"),
            Answer(503, "the pool is not reachable"))


def _answer(action, outcome):
    if not outcome.sync:
        response = json_response({"taskId": outcome.task_id}, status=202)
        response.headers["Location"] = f"{BASE_URL}/tasks/{outcome.task_id}"
        return response
    if outcome.result is None:
        return Response(status=204)
    response = json_response(outcome.result, status=action.sync_status)
    if action.created and "id" in outcome.result:
        response.headers["Location"] = f"{BASE_URL}/{action.created}/{outcome.result['id']}"
    return response


def _register(action):
    def view(key, query, body):
        outcome = services().actions.start(action.collection, action.name, key, body, g.user, query["sync"])
        return _answer(action, outcome)

    view.__name__ = f"{action.collection.replace('-', '_')}_{action.name}"
    view.__doc__ = action.run.__doc__
    done = (Answer(action.sync_status, "done (sync=true): the new object's id", NEW_ID, headers=("Location",))
            if action.created else Answer(204, "done (sync=true)"))
    unprocessable = (Answer(422, action.unprocessable),) if action.unprocessable else ()
    operation(bp, f"/{action.collection}/<key>/actions/{action.name}", methods=("POST",),
              permission=action.permission, summary=action.summary, tags=("actions", action.collection),
              query=bodies.ACTION_QUERY, body=bodies.action_body(action.collection, action.name),
              answers=(_ASYNC, done, *_REFUSED, *unprocessable))(view)


for _action in ActionService.catalogue().values():
    _register(_action)


@operation(bp, "/<collection>/<key>/actions/<name>", methods=("POST",), permission="read", tags=("actions",),
           summary="An action that does not exist",
           answers=(Answer(404, "no such action (the existing ones listed)"),
                    Answer(501, "one of Xen Orchestra's actions that xorest leaves out (rolling_update), with "
                                "the reason")))
def unknown_action(collection, key, name):
    """A 404 naming the actions the collection has, or a 501 for one of Xen Orchestra's
    that xorest leaves out (``pools/rolling_update``: it needs XO's update plugin)."""
    services().actions.find(collection, name)
    return Response(status=404)  # not reached: find raises for an unknown action
