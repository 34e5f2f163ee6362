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


@dataclass(frozen=True)
class Answer:
    """One documented response of an operation."""

    status: int
    description: str
    schema: object = None  # a marshmallow schema, BINARY, "text", or None (no body / error shape)
    headers: tuple = ()  # names of response headers worth documenting
    content_type: str = "application/json"


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


#: endpoint -> :class:`Operation`, for every route of the app.
OPERATIONS = {}


def operation(bp, rule, *, permission, summary, methods=("GET",), query=None, body=NO_BODY, answers=(),
              tags=(), websocket=False, others=None):
    """Register the decorated view on ``bp`` at ``rule`` and declare it.

    The view receives the URL's variables, plus ``query`` (the loaded ``query`` schema)
    and ``body`` (the loaded ``body`` schema, from a JSON object) when they are declared;
    a ``BINARY`` body is left to the view (``request.stream``).  ``websocket`` routes
    match only WebSocket upgrade requests.  ``others`` is the permission a ``self`` route
    needs when it is about another user (the view calls ``auth.authorize_others()``).
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
                                         others, view)
        bp.add_url_rule(rule, endpoint=view.__name__, view_func=run, methods=list(methods), websocket=websocket)
        return view
    return decorate


def current():
    """The :class:`Operation` the current request is routed to, or ``None``."""
    return OPERATIONS.get(request.endpoint) if request.endpoint else None
