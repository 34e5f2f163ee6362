"""Authentication of every request, token routes, and token renewal through ``Set-Cookie``.

Credentials, in order of precedence when several are sent: the ``authenticationToken``
cookie, the legacy ``token`` cookie, ``Authorization: Bearer``, then ``Authorization: Basic``
(email and password).  The first one present is the only one checked.
"""
import base64
import binascii
import time
from datetime import datetime, timezone

from flask import Blueprint, g, request
from marshmallow import RAISE, Schema, fields

from ..errors import BadRequest, Forbidden, Unauthorized
from ..services import audit, scopes
from ..services.auth import token_scope
from ..services.permissions import authorize
from . import BASE_URL, params, routes, services
from .output import json_response
from .routes import Answer, Variable, operation

bp = Blueprint("auth", __name__)

COOKIE = "authenticationToken"
EXPIRY_HEADER = "X-Token-Expires"
#: What a route nobody declared needs (Flask's own ``static``...): the most there is.
UNDECLARED = "pool.admin"


def _credentials():
    cookie = request.cookies.get(COOKIE) or request.cookies.get("token")
    if cookie:
        return "token", cookie
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if not header:
        return None, None
    if scheme.lower() == "bearer":
        return "token", value.strip()
    if scheme.lower() == "basic":
        try:
            email, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest("malformed Basic credentials") from None
        if not sep:
            raise BadRequest("malformed Basic credentials")
        return "basic", (email, password)
    raise BadRequest(f"unsupported authorization scheme {scheme!r}: use Bearer or Basic")


@bp.before_app_request
def authenticate():
    """Every request is checked against its operation's declared permission, through the
    one decision (:func:`~xorest.services.permissions.authorize`)."""
    scopes.use(None)  # a request thread serves many requests: never inherit a scope
    audit.use(None)
    op = routes.current()
    if op is None and request.endpoint is None:
        return  # unknown paths give a JSON 404 from the error handler
    permission = op.permission if op is not None else UNDECLARED  # an undeclared route fails closed
    if permission == "public":
        return
    svc = services()
    svc.start()
    kind, value = _credentials()
    if kind is None:
        raise Unauthorized("authentication required: send the authenticationToken cookie")
    if kind == "token":
        user, token = svc.auth.authenticate(value)
        g.token = token
    else:
        user = svc.auth.check_password(value[0], value[1], request.remote_addr or "-")
        g.token = None
    g.user = user
    authorize(user, g.token, permission)
    scopes.use(token_scope(g.token))
    if op is not None and _audited(op):
        audit.use(_origin(svc))  # tasks the request starts record their end with it


def _audited(op):
    """Whether a request goes into the audit trail: every state-changing one, and exports."""
    return request.method not in ("GET", "HEAD", "OPTIONS") or "exports" in op.tags


def _origin(svc):
    return audit.Origin(svc.audit, g.get("user"), g.get("token"), request.remote_addr or "-", request.method,
                        request.path, request.endpoint)


def authorize_others():
    """The current ``self`` operation is about another user: check its declared ``others``
    permission, through the same decision as every route."""
    authorize(g.user, g.get("token"), routes.current().others)


@bp.after_app_request
def record_audit(response):
    """Every state-changing request and every export goes into the audit trail, whatever
    its outcome (a refused one too)."""
    op = routes.current()
    if op is not None and _audited(op):
        error = None
        if response.status_code >= 400 and response.is_json:
            error = (response.get_json(silent=True) or {}).get("error")
        _origin(services()).record(response.status_code, error)
    return response


@bp.after_app_request
def renew_token(response):
    """Tell the client when its token expires, and hand it a fresh one past the threshold.

    Only successful reads renew: a request that changes something may end the session
    (revoking the token itself, signing out), and must not hand out its successor.
    """
    token = g.get("token")
    if token is None or response.status_code >= 400:
        return response
    renewed = None
    if request.method in ("GET", "HEAD"):
        renewed = services().auth.maybe_renew(g.user, token)
    expires_at = token["expires_at"]
    if renewed is not None:
        new_token, row = renewed
        expires_at = row["expires_at"]
        response.set_cookie(COOKIE, new_token, max_age=int(row["expires_at"] - time.time()),
                            path=BASE_URL, httponly=True, samesite="Strict", secure=request.is_secure)
    response.headers[EXPIRY_HEADER] = datetime.fromtimestamp(expires_at, timezone.utc).isoformat()
    return response


class _Strict(Schema):
    class Meta:
        unknown = RAISE


_ROLE = "its role, at most its user's (null: its user's, whatever it becomes)"
_SCOPE = "what it may see: `pools` (uuids) and `filter` (a live filter over VMs); empty: everything"


class NewToken(_Strict):
    id = fields.String(required=True, metadata={"description": "the token itself: send it as the "
                                                "authenticationToken cookie or as a Bearer token"})
    token_id = fields.String(required=True, metadata={"description": "the token's id (token list, revocation)"})
    user_id = fields.String(required=True, metadata={"description": "its user's id"})
    description = fields.String(required=True, metadata={"description": "what it is for"})
    created_at = fields.Integer(required=True, metadata={"description": "creation, Unix time in milliseconds"})
    expiration = fields.Integer(required=True, metadata={"description": "expiry, Unix time in milliseconds"})
    role = fields.String(required=True, allow_none=True, metadata={"description": _ROLE})
    scope = fields.Dict(required=True, metadata={"description": _SCOPE})


class CreatedToken(_Strict):
    token = fields.Nested(NewToken, required=True)


class TokenInfo(_Strict):
    """A token as listed: never its value."""

    id = fields.String(required=True, metadata={"description": "the token's id"})
    user_id = fields.String(required=True, metadata={"description": "its user's id"})
    description = fields.String(required=True, metadata={"description": "what it is for"})
    created_at = fields.Float(required=True, metadata={"description": "creation, Unix seconds"})
    expires_at = fields.Float(required=True, metadata={"description": "expiry, Unix seconds"})
    last_used_at = fields.Float(required=True, allow_none=True, metadata={"description": "last use, Unix seconds"})
    renewed_at = fields.Float(required=True, allow_none=True,
                              metadata={"description": "when a renewal was handed out, Unix seconds"})
    revoked_at = fields.Float(required=True, allow_none=True, metadata={"description": "revocation, Unix seconds"})
    family_id = fields.String(required=True, metadata={
        "description": "the first token of its renewals (revoking one revokes them all)"})
    parent_id = fields.String(required=True, allow_none=True, metadata={
        "description": "the token this one was made with (revoking that one revokes this one), if any"})
    role = fields.String(required=True, allow_none=True, metadata={"description": _ROLE})
    scope = fields.Dict(required=True, metadata={"description": _SCOPE})


_USER = Variable("`me`, or your own user id", example="me")


def _token_body(token, row):
    return {"id": token, "token_id": row["id"], "user_id": row["user_id"], "role": row.get("role"),
            "scope": token_scope(row).to_dict(),
            "description": row["description"], "created_at": int(row["created_at"] * 1000),
            "expiration": int(row["expires_at"] * 1000)}


@operation(bp, "/users/<user>/authentication_tokens", methods=("POST",), permission="self", tags=("tokens",),
           summary="Create a token for yourself", body=params.TOKEN_REQUEST, variables={"user": _USER},
           answers=(Answer(201, "the new token (its value is `token.id`)", CreatedToken, ("ETag",)),))
def create_token(user, body):
    """Create a token for yourself (``me`` or your own id), as ``xo-cli create-token`` does."""
    if user not in ("me", g.user["id"]):
        raise Forbidden("tokens can only be created for yourself")
    token, row = services().auth.issue_token(g.user, body["expiresIn"], body["description"], role=body["role"],
                                             scope=scopes.Scope.requested(body["scope"]), creator=g.token)
    return json_response({"token": _token_body(token, row)}, status=201)


@operation(bp, "/users/<user>/authentication_tokens", permission="self", others="pool.admin", tags=("tokens",),
           summary="List your tokens", variables={"user": _USER},
           answers=(Answer(200, "your tokens, without their values", TokenInfo(many=True), ("ETag",)),))
def list_tokens(user):
    """Your tokens (a pool-admin: anyone's): ids, roles, scopes, descriptions, creation,
    expiry, last use (never the values)."""
    if user not in ("me", g.user["id"]):
        authorize_others()
    return json_response(services().auth.list_tokens(g.user["id"] if user == "me" else user))


@operation(bp, "/users/<user>/authentication_tokens/<token_id>", methods=("DELETE",), permission="self",
           others="pool.admin", tags=("tokens",), summary="Revoke one of your tokens",
           variables={"user": _USER, "token_id": Variable("the token's id, or the token itself")},
           answers=(Answer(204, "revoked"), Answer(404, "no such token of yours, or already revoked")))
def revoke_token(user, token_id):
    """Revoke one of your tokens (a pool-admin: anyone's), by id or by value, and its renewals."""
    if user in ("me", g.user["id"]):
        owner = g.user
    else:
        authorize_others()
        owner = user
    services().auth.revoke_token(token_id, owner)
    return "", 204
