"""Request bodies of actions, edits and creations, and the queries of actions and tasks, as
Xen Orchestra's OpenAPI document declares them; marshmallow checks them strictly (a
missing, unknown or ill-typed field is a 400 naming it, see :func:`xorest.api.params.load`)."""
from marshmallow import EXCLUDE, Schema, fields, validate

from ..params import CollectionQuery, FlagField
from .actions import ACTION_BODIES, NO_BODY, action_body
from .edits import CREATION_BODIES, EDIT_BODIES, UPDATE_NAMES


class ActionQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    sync = FlagField(load_default=False)


class TaskListQuery(CollectionQuery):
    watch = FlagField(load_default=False)


class TaskQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    # ``result`` is the older API's spelling of the same wait
    wait = fields.String(load_default=None, validate=validate.OneOf(["true", "false", "1", "0", "", "result"]))


TASK_LIST_QUERY = TaskListQuery()
TASK_QUERY = TaskQuery()
ACTION_QUERY = ActionQuery()

__all__ = ["ACTION_BODIES", "ACTION_QUERY", "CREATION_BODIES", "EDIT_BODIES", "NO_BODY", "TASK_LIST_QUERY",
           "TASK_QUERY", "UPDATE_NAMES", "action_body"]
