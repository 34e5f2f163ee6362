"""Users and the audit trail (``/rest/v0/users``, ``/rest/v0/audit``): for pool-admins."""
from flask import Blueprint, Response, g

from ..services.schemas import object_schema
from . import BASE_URL, params, services
from .auth import authorize_others
from .listing import listing, listing_answer
from .output import json_response, with_links
from .routes import NEW_ID, Answer, operation

bp = Blueprint("users", __name__)


@operation(bp, "/users", permission="pool.admin", tags=("users",), summary="List the users",
           query=params.COLLECTION_QUERY, answers=(listing_answer("the users' URLs, or the chosen fields of each", "users"),))
def list_users(query):
    """Users with their role (``permission`` is Xen Orchestra's: admin or none)."""
    return listing("users", query)


@operation(bp, "/users/<key>", permission="self", others="pool.admin", tags=("users",),
           summary="One user (yourself, or any for a pool-admin)",
           answers=(Answer(200, "the user", object_schema("users")), Answer(404, "no such user")))
def get_user(key):
    """A user by id (or email): yours for anyone, any user's for a pool-admin."""
    if key not in (g.user["id"], g.user["email"]):
        authorize_others()
    return json_response(with_links(services().collections.get("users", key), "users"))


@operation(bp, "/users", methods=("POST",), permission="pool.admin", tags=("users",), summary="Add a user",
           body=params.USER_CREATION, answers=(Answer(201, "the new user's id", NEW_ID, headers=("Location",)),
                                              Answer(409, "a user with this email exists")))
def create_user(body):
    """A new user: ``name`` (or ``email``), ``password``, and ``role`` (or Xen Orchestra's
    ``permission``: ``admin`` is ``pool-admin``, ``none`` no role)."""
    row = services().auth.add_user(body["email"], body["password"], body["role"])
    response = json_response({"id": row["id"]}, status=201)
    response.headers["Location"] = f"{BASE_URL}/users/{row['id']}"
    return response


@operation(bp, "/users/<key>", methods=("PATCH",), permission="pool.admin", tags=("users",),
           summary="Change a user", body=params.USER_UPDATE,
           answers=(Answer(204, "changed"), Answer(404, "no such user"), Answer(409, "the email is taken")))
def update_user(key, body):
    """Email (``name``), role (or ``permission``), password (which revokes the user's tokens)."""
    services().auth.update_user(key, email=body["email"], role=body["role"], password=body["password"])
    return Response(status=204)


@operation(bp, "/users/<key>", methods=("DELETE",), permission="pool.admin", tags=("users",),
           summary="Remove a user", answers=(Answer(204, "removed, with the user's tokens"),))
def delete_user(key):
    """Remove a user and every token of theirs."""
    services().auth.remove_user(services().collections.get("users", key)["id"])
    return Response(status=204)


@operation(bp, "/audit", permission="pool.admin", tags=("audit",), summary="The audit trail",
           query=params.COLLECTION_QUERY,
           answers=(listing_answer("what was done, by whom, from where, with what outcome", "audit"),))
def list_audit(query):
    """Every state-changing request, export, and token creation or revocation: ``time`` (ms),
    ``user_id``, ``user_email``, ``token_id``, ``address``, ``method``, ``path``,
    ``operation``, ``status``, ``error``.  Filterable like any collection."""
    return listing("audit", query)


@operation(bp, "/audit/<key>", permission="pool.admin", tags=("audit",), summary="One audit entry",
           answers=(Answer(200, "the entry", object_schema("audit")), Answer(404, "no such entry")))
def get_audit(key):
    """One entry of the audit trail."""
    return json_response(with_links(services().collections.get("audit", key), "audit"))
