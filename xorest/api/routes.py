"""Every operation of the API, declared once.

A view is registered with :func:`operation`: its path and methods, the permission it
needs, its query and body schemas (marshmallow), the answers it gives and its
documentation.  Flask's routing, the permission check (``auth.authenticate``), the
validation of parameters and the OpenAPI document all read this one declaration, so
none of them can drift from the others.
"""
import functools
from dataclasses import dataclass, field
from typing import Optional

from flask import request

from . import params

#: Body kinds that are not a JSON object validated by a schema.
BINARY, NO_BODY = "binary", None
#: The answer naming a new object (a creation, an action making one): ``{"id": <its id>}``.
NEW_ID = {"type": "object", "required": ["id"], "additionalProperties": False,
          "properties": {"id": {"type": "string", "description": "the new object's id (its uuid)"}}}
#: The answer of a started asynchronous action: ``{"taskId": <id in /rest/v0/tasks>}``.
TASK_STARTED = {"type": "object", "required": ["taskId"], "additionalProperties": False,
                "properties": {"taskId": {"type": "string", "description": "the task's id in /rest/v0/tasks"}}}


@dataclass(frozen=True)
class Answer:
    """One documented response of an operation.

    ``schema`` is a marshmallow schema (class or instance), a :class:`Listing`, a plain JSON
    schema (a dict), ``BINARY``, ``"text"``, or ``None``: no body for a success, the JSON
    error shape for a status of 400 and above.  It may also be a function of the values of
    the path's expanded variables (see :class:`Variable`) returning one of these.
    """

    status: int
    description: str
    schema: object = None
    headers: tuple = ()  # names of response headers (described in ``openapi.HEADERS``)
    content_type: object = "application/json"  # or a function of the expanded variables
    #: other media types of the same answer (``application/x-ndjson`` for listings)
    alternatives: tuple = ()
    example: object = None


@dataclass(frozen=True)
class Listing:
    """A collection's answer: the objects' URLs, or (with ``fields``) the chosen fields of
    each object of ``schema`` (``fields=*``: whole objects)."""

    schema: object


@dataclass(frozen=True)
class Variable:
    """Documentation of a URL variable (``<name>`` in the rule).

    :param values: the values it takes (an enum), or a function of the expanded variables
        before it returning them; an ``any(...)`` converter gives its own.
    :param expand: the document gets one path per value (``/vms``, ``/hosts``...) instead of
        a parameter, so that each can have its own answers; ``any(...)`` variables expand
        unless told otherwise.
    :param schema: extra JSON schema keywords (``pattern``, ``maxLength``...).
    :param describe: for an expanded variable named by a tag (``"{collection}"``): a
        function of a value giving that tag's description.
    """

    description: str = ""
    values: object = None
    expand: Optional[bool] = None
    schema: dict = field(default_factory=dict)
    example: object = None
    describe: object = None


@dataclass(frozen=True)
class Header:
    """A request header an operation reads (``If-None-Match``, ``Content-Length``...)."""

    name: str
    description: str
    required: bool = False
    schema: dict = field(default_factory=lambda: {"type": "string"})


@dataclass
class Operation:
    """What one endpoint is, for routing, permissions, validation and documentation."""

    endpoint: str
    rule: str
    methods: tuple
    permission: str
    summary: str
    description: str = ""
    query: object = None
    body: object = None
    answers: tuple = ()
    tags: tuple = ()
    others: Optional[str] = None  # the permission needed for another user's things (a "self" route)
    view: Optional[object] = field(default=None, repr=False)
    variables: dict = field(default_factory=dict)
    request_headers: tuple = ()
    body_description: str = ""
    websocket: bool = False  # matched by WebSocket upgrade requests only


#: endpoint -> :class:`Operation`, for every route of the app.
OPERATIONS = {}


def operation(bp, rule, *, permission, summary, methods=("GET",), query=None, body=NO_BODY, answers=(),
              tags=(), websocket=False, others=None, variables=None, request_headers=(), body_description=""):
    """Register the decorated view on ``bp`` at ``rule`` and declare it.

    The view receives the URL's variables, plus ``query`` (the loaded ``query`` schema)
    and ``body`` (the loaded ``body`` schema, from a JSON object) when they are declared;
    a ``BINARY`` body is left to the view (``request.stream``).  ``websocket`` routes
    match only WebSocket upgrade requests.  ``others`` is the permission a ``self`` route
    needs when it is about another user (the view calls ``auth.authorize_others()``).

    The rest only documents the operation (``xorest/api/openapi.py``): ``variables``
    (name -> :class:`Variable`), ``request_headers`` (:class:`Header`), ``body_description``;
    a tag may name a variable (``"{collection}"``) to group expanded paths by its value.
    ``methods`` lists ``HEAD`` where it answers differently from a ``GET`` without body
    (every ``GET`` route also answers ``HEAD``).
    """
    def decorate(view):
        endpoint = f"{bp.name}.{view.__name__}"
        if endpoint in OPERATIONS:
            raise ValueError(f"{endpoint} is declared twice")

        @functools.wraps(view)
        def run(**variables):
            if query is not None:
                variables["query"] = params.load(query, request.args)
            if body not in (NO_BODY, BINARY):
                variables["body"] = params.load(body, params.json_body())
            return view(**variables)

        OPERATIONS[endpoint] = Operation(endpoint, rule, tuple(methods), permission, summary,
                                         (view.__doc__ or "").strip(), query, body, tuple(answers), tuple(tags),
                                         others, view, dict(variables or {}), tuple(request_headers),
                                         body_description, websocket)
        bp.add_url_rule(rule, endpoint=view.__name__, view_func=run, methods=list(methods), websocket=websocket)
        return view
    return decorate


def current():
    """The :class:`Operation` the current request is routed to, or ``None``."""
    return OPERATIONS.get(request.endpoint) if request.endpoint else None
