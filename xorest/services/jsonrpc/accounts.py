"""``session.*`` and ``token.*``: signing in and out, and authentication tokens, with the
REST API's rules (the same password checks, throttling, lifetimes, roles and scopes)."""
import logging

from ...config import parse_client_duration
from ...errors import NotFound
from .. import scopes
from ..auth import public_user
from .core import Method, METHODS, invalid_parameters, method

log = logging.getLogger(__name__)


def _user_properties(user):
    public = public_user(user)
    return {"id": public["id"], "email": public["email"], "permission": public["permission"], "groups": [],
            "preferences": {}}


@method("session.signIn", permission="public", description="sign in",
        params={"email": {"type": "string", "optional": True}, "password": {"type": "string", "optional": True},
                "otp": {"type": "string", "optional": True}, "token": {"type": "string", "optional": True}})
def sign_in(session, email=None, password=None, otp=None, token=None):
    """Sign in with ``{email, password}`` or ``{token}``: the same checks, throttling and
    lock-out as the REST API's."""
    auth = session.services.auth
    if token is not None:
        user, row = auth.authenticate(token)
    elif email is not None and password is not None:
        user, row = auth.check_password(email, password, session.address), None
    else:
        raise invalid_parameters([{"message": "email and password, or token, are required"}])
    session.sign_in(user, row)
    log.info("JSON-RPC sign-in of user %s from %s", user["id"], session.address)
    return _user_properties(user)


for _name, _params in (("session.signInWithPassword", {"email": {"type": "string"}, "password": {"type": "string"}}),
                       ("session.signInWithToken", {"token": {"type": "string"}})):
    METHODS[_name] = Method(_name, sign_in, "public", _params, "sign in (deprecated: use session.signIn)")


@method("session.signOut", permission="public", description="sign out the user from the current session")
def sign_out(session):
    session.sign_out()


@method("session.getUser", permission="public", description="return the currently connected user")
def get_user(session):
    return None if session.user is None else _user_properties(session.user)


@method("token.create", audit=True, permission="self", description="create a new authentication token",
        rest="POST /users/<user>/authentication_tokens",
        params={"description": {"type": "string", "optional": True},
                "expiresIn": {"type": ["number", "string"], "optional": True},
                "client": {"type": "object", "optional": True}, "role": {"type": "string", "optional": True},
                "scope": {"type": "object", "optional": True}})
def create_token(session, description=None, expiresIn=None, client=None, role=None, scope=None):  # noqa: N803
    """A new token for the signed-in user (its value is the answer), with the REST API's
    rules: lifetime bounds, a role at most the user's, a scope no wider than the token used."""
    ttl = None
    if expiresIn is not None:
        try:
            ttl = parse_client_duration(expiresIn)
        except ValueError as exc:
            raise invalid_parameters([{"instancePath": "/expiresIn", "message": str(exc)}]) from None
    value, _ = session.services.auth.issue_token(session.user, ttl, description or "JSON-RPC token.create",
                                                 role=role, scope=scopes.Scope.requested(scope),
                                                 creator=session.token)
    return value


@method("token.getAll", permission="self", description="the authentication tokens of the current user")
def get_tokens(session):
    return session.services.auth.list_tokens(session.user["id"])


_MATCHING = {"tokens": {"type": "array", "optional": True}, "pattern": {"type": "object", "optional": True}}


@method("token.deleteOwn", audit=True, permission="self", params=_MATCHING,
        description="delete matching authentication tokens for the current user",
        rest="DELETE /users/<user>/authentication_tokens/<token_id>")
def delete_own_tokens(session, tokens=None, pattern=None):
    _delete_tokens(session, tokens, pattern, session.user)


@method("token.delete", audit=True, permission="pool.admin", params=_MATCHING,
        description="delete matching authentication tokens for all users")
def delete_tokens(session, tokens=None, pattern=None):
    _delete_tokens(session, tokens, pattern, None)


def _delete_tokens(session, tokens, pattern, owner):
    """Revoke the tokens named (by value or id) or matching ``pattern`` (a partial token,
    e.g. ``{"description": "x"}``), of ``owner`` (``None``: of any user).  As Xen
    Orchestra's, a token that matches nothing is no error."""
    auth = session.services.auth
    if tokens is None and pattern is None:
        raise invalid_parameters([{"message": "tokens or pattern is required"}])
    keys = [str(key) for key in tokens or ()]
    if pattern is not None:
        keys += [row["id"] for row in auth.list_tokens(owner["id"] if owner else None)
                 if row["revoked_at"] is None and all(row.get(k) == v for k, v in pattern.items())]
    for key in keys:
        try:
            auth.revoke_token(key, owner)
        except NotFound:
            pass
