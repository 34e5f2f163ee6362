"""Xen Orchestra's JSON-RPC API (``/api/``), as ``xo-cli`` and ``xo-lib`` speak it.

One :class:`RpcSession` per WebSocket connection: it holds who signed in, runs calls
(:meth:`RpcSession.handle` takes one decoded JSON-RPC message and gives the answer to
send), and tells which objects changed for the ``all`` notifications.  Methods are
declared once with :func:`method`, with the permission they need; the decision is
``permissions.authorize``, as for every REST route, and the token's scope applies as it
does there.  Errors carry Xen Orchestra's codes (``xo-common/api-errors``) and JSON-RPC's.
"""
import logging
import time

from importlib import metadata

from .. import filter as live_filter
from ..config import parse_client_duration
from ..errors import (BadRequest, Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized, Unavailable,
                      UpstreamError, XorestError)
from . import scopes
from .auth import public_user, token_scope
from .permissions import PERMISSIONS, authorize

log = logging.getLogger(__name__)

def _version():
    try:
        return metadata.version("xorest")
    except metadata.PackageNotFoundError:
        return "unknown"


#: What ``system.getServerVersion`` answers: the xo-server API this one speaks.
SERVER_VERSION = f"5.207.2 (xorest {_version()})"


class RpcError(Exception):
    """A JSON-RPC error object: ``code``, ``message``, ``data``."""

    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def to_dict(self):
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def invalid_json():
    return RpcError(-32700, "invalid JSON")


def invalid_request(message="invalid JSON-RPC request"):
    return RpcError(-32600, message)


def method_not_found(name):
    return RpcError(-32601, f"method not found: {name}", name)


def unauthorized(permission=None):
    """Xen Orchestra's ``unauthorized`` (2): not signed in, or not allowed."""
    return RpcError(2, "not enough permissions", {"permission": permission, "object": {}})


def invalid_parameters(errors, message="invalid parameters"):
    return RpcError(10, message, {"errors": errors})


def from_xorest(error):
    """A :class:`~xorest.errors.XorestError` as Xen Orchestra's API error."""
    if isinstance(error, Unauthorized):
        return RpcError(3, "invalid credentials")
    if isinstance(error, TooManyRequests):
        return RpcError(3, "invalid credentials: too many failed attempts, retry later", error.data)
    if isinstance(error, Forbidden):
        return RpcError(2, "not enough permissions", {"permission": error.data.get("permission"), "object": {}})
    if isinstance(error, NotFound):
        return RpcError(1, error.message, {"id": error.data.get("id"), "type": error.data.get("type")})
    if isinstance(error, BadRequest):
        return invalid_parameters([{"message": error.message, **error.data}], error.message)
    if isinstance(error, Conflict):
        return RpcError(5, f"forbidden operation: {error.message}", error.data)
    if isinstance(error, (Unavailable, UpstreamError)):
        return RpcError(-32000, error.message, error.data or None)
    return RpcError(-32000, "unknown error from the peer")


class Method:
    """One API method: its function, the permission it needs, its parameters' description,
    whether its calls go into the audit trail."""

    def __init__(self, name, fn, permission, params, description, audit=False):
        self.name, self.fn, self.permission, self.params, self.description = (name, fn, permission, params,
                                                                             description)
        self.audit = audit


#: name -> :class:`Method`, every method served.
METHODS = {}


def method(name, *, permission, params=None, description="", audit=False):
    """Declare a JSON-RPC method: ``fn(session, **params)``; ``permission`` is a key of
    :data:`~.permissions.PERMISSIONS`; ``params`` maps names to ``{"type": ..., "optional": bool}``
    as Xen Orchestra describes them (they are checked before the call); ``audit``: its calls
    change something and go into the audit trail."""
    if permission not in PERMISSIONS:
        raise ValueError(f"undeclared permission {permission!r}")

    def decorate(fn):
        METHODS[name] = Method(name, fn, permission, params or {}, description or (fn.__doc__ or "").strip(),
                               audit)
        return fn
    return decorate


def _is(kind, value):
    """JSON Schema's types, as Xen Orchestra's parameter checks use them."""
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"string": str, "boolean": bool, "object": dict, "array": list}[kind])


def _check_params(spec, params):
    """Xen Orchestra's parameter errors for ``params`` against ``spec``."""
    errors = []
    for name, rule in spec.items():
        kinds = rule.get("type", [])
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if name not in params:
            if not rule.get("optional"):
                errors.append({"instancePath": "", "message": f"must have required property '{name}'"})
            continue
        if kinds and not any(_is(kind, params[name]) for kind in kinds):
            errors.append({"instancePath": f"/{name}", "message": f"must be {' or '.join(kinds)}"})
    unknown = set(params) - set(spec)
    for name in sorted(unknown):
        errors.append({"instancePath": "", "message": f"must NOT have additional property '{name}'"})
    if errors:
        raise invalid_parameters(errors)


class RpcSession:
    """One client connection: who signed in, and what it saw of the pools.

    :param services: the :class:`~.registry.Services` of the instance.
    :param address: the client's address (for throttling and the audit trail).
    """

    def __init__(self, services, address):
        self.services = services
        self.address = address
        self.user = None
        self.token = None
        self.generation = None  # the cache generation the client's objects reflect

    # calls --------------------------------------------------------------------

    def handle(self, message):
        """The answer (a dict) to one decoded message, or ``None`` for a notification."""
        if not isinstance(message, dict):
            return {"jsonrpc": "2.0", "id": None, "error": invalid_request().to_dict()}
        request_id = message.get("id")
        is_notification = "id" not in message and message.get("jsonrpc") == "2.0"
        try:
            name, params = self._parse(message)
            result = self.call(name, params)
        except RpcError as error:
            return None if is_notification else {"jsonrpc": "2.0", "id": request_id, "error": error.to_dict()}
        return None if is_notification else {"jsonrpc": "2.0", "id": request_id,
                                             "result": None if result is None else result}

    @staticmethod
    def _parse(message):
        if message.get("jsonrpc", "2.0") != "2.0":
            raise invalid_request("invalid version: only 2.0 is served")
        name, params = message.get("method"), message.get("params", {})
        if not isinstance(name, str):
            raise invalid_request("invalid method: a string is required")
        if "id" in message and not isinstance(message["id"], (str, int, float)) or isinstance(message.get("id"),
                                                                                              bool):
            raise invalid_request("invalid identifier: number or string required")
        if isinstance(params, list):  # JSON-RPC 1.0 style: one object, positionally
            params = params[0] if len(params) == 1 and isinstance(params[0], dict) else {}
        if not isinstance(params, dict):
            raise invalid_request("invalid params: an object is required")
        return name, params

    def call(self, name, params):
        """Run method ``name`` for this session, with the token's scope, as the API's."""
        found = METHODS.get(name)
        if found is None:
            raise method_not_found(name)
        if found.permission != "public":
            if self.user is None:
                raise unauthorized(found.permission)
            self._check_still_valid()
        _check_params(found.params, params)
        scopes.use(token_scope(self.token) if self.token else None)
        outcome = None
        try:
            if found.permission != "public":
                authorize(self.user, self.token, found.permission)
            return found.fn(self, **params)
        except XorestError as error:
            outcome = from_xorest(error)
            raise outcome from None
        except live_filter.FilterError as error:
            outcome = invalid_parameters([{"message": str(error)}], str(error))
            raise outcome from None
        except RpcError as error:
            outcome = error
            raise
        finally:
            scopes.use(None)
            if found.audit:
                self.services.audit.record(user=self.user, token=self.token, address=self.address, method="RPC",
                                           path=f"/api/ {name}", operation=name,
                                           status=outcome.code if outcome else 0,
                                           error=outcome.message if outcome else None)

    def _check_still_valid(self):
        """A token revoked or expired since sign-in ends the session (as on the REST API)."""
        if self.token is None:
            return
        row = self.services.store.get_token(self.token["id"])
        if row is None or row["revoked_at"] is not None or row["expires_at"] <= time.time():
            self.user = self.token = None
            raise unauthorized()

    # notifications --------------------------------------------------------------

    def updates(self):
        """The ``all`` notifications for what changed since the client's last look:
        ``[{"type": "enter", "items": {id: object}}, {"type": "exit", "items": {id: 0}}]``
        (an empty list when nothing changed or nobody signed in)."""
        if self.user is None:
            return []
        cache = self.services.cache
        if self.generation is None:
            self.generation = cache.snapshot().generation
            return []
        changes = cache.changes_since(self.generation)
        if changes is None:  # too far behind: everything it may see enters again
            snapshot = cache.snapshot()
            changed = {key: name for name, objects in snapshot.collections.items() for key in objects}
            snapshot, changed, removed = snapshot, changed, {}
        else:
            snapshot, changed, removed = changes
        self.generation = snapshot.generation
        if not changed and not removed:
            return []
        scopes.use(token_scope(self.token) if self.token else None)
        try:
            visible = self.services.collections.scopes
            entered = {}
            for key, name in changed.items():
                obj = snapshot.collection(name).get(key)
                if obj is not None and visible.allows(name, obj, snapshot):
                    entered[key] = obj
            exited = {key: 0 for key in removed}
        finally:
            scopes.use(None)
        messages = []
        if entered:
            messages.append({"type": "enter", "items": entered})
        if exited:
            messages.append({"type": "exit", "items": exited})
        return messages


# session ----------------------------------------------------------------------------

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
    session.user, session.token, session.generation = user, row, None
    log.info("JSON-RPC sign-in of user %s from %s", user["id"], session.address)
    return _user_properties(user)


METHODS["session.signInWithPassword"] = Method("session.signInWithPassword", sign_in, "public",
                                               {"email": {"type": "string"}, "password": {"type": "string"}},
                                               "sign in (deprecated: use session.signIn)")
METHODS["session.signInWithToken"] = Method("session.signInWithToken", sign_in, "public",
                                            {"token": {"type": "string"}}, "sign in (deprecated: use session.signIn)")


@method("session.signOut", permission="public", description="sign out the user from the current session")
def sign_out(session):
    session.user = session.token = None


@method("session.getUser", permission="public", description="return the currently connected user")
def get_user(session):
    return None if session.user is None else _user_properties(session.user)


# tokens -------------------------------------------------------------------------------

@method("token.create", audit=True, permission="self", description="create a new authentication token",
        params={"description": {"type": "string", "optional": True}, "expiresIn": {"type": ["number", "string"],
                                                                                     "optional": True},
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


@method("token.deleteOwn", audit=True, permission="self", description="delete the current user's matching tokens",
        params={"tokens": {"type": "array", "optional": True}, "pattern": {"type": "object", "optional": True}})
def delete_own_tokens(session, tokens=None, pattern=None):
    _delete_tokens(session, tokens, pattern, session.user)


@method("token.delete", audit=True, permission="pool.admin", description="delete matching tokens of any user",
        params={"tokens": {"type": "array", "optional": True}, "pattern": {"type": "object", "optional": True}})
def delete_tokens(session, tokens=None, pattern=None):
    _delete_tokens(session, tokens, pattern, None)


def _delete_tokens(session, tokens, pattern, owner):
    """Revoke the tokens named (by value or id), or those matching ``pattern`` (a partial
    object, e.g. ``{"description": "x"}``)."""
    auth = session.services.auth
    if tokens is None and pattern is None:
        raise invalid_parameters([{"message": "tokens or pattern is required"}])
    for key in tokens or ():
        auth.revoke_token(str(key), owner or session.user)
    if pattern is not None:
        for row in auth.list_tokens(owner["id"] if owner else None):
            if row["revoked_at"] is None and all(row.get(k) == v for k, v in pattern.items()):
                auth.revoke_token(row["id"], owner or session.user)


# system -------------------------------------------------------------------------------

@method("system.getMethodsInfo", permission="public", description="returns the signatures of all available API methods")
def get_methods_info(session):
    return {name: {"description": m.description, "params": m.params, "permission": m.permission}
            for name, m in sorted(METHODS.items())}


@method("system.listMethods", permission="public", description="returns the name of all available API methods")
def list_methods(session):
    return sorted(METHODS)


@method("system.methodSignature", permission="public", params={"method": {"type": "string"}},
        description="returns the signature of an API method")
def method_signature(session, method):  # noqa: A002 (Xen Orchestra's parameter name)
    found = METHODS.get(method)
    if found is None:
        raise RpcError(1, f"no such object {method}", {"id": method})
    return [{"name": method, "description": found.description, "params": found.params,
             "permission": found.permission}]


@method("system.getServerVersion", permission="public", description="return the version of xo-server")
def get_server_version(session):
    return SERVER_VERSION


@method("system.getVersion", permission="public", description="API version (unstable)")
def get_version(session):
    return "0.1"


@method("system.getServerTimezone", permission="self", description="return the timezone of the server")
def get_server_timezone(session):
    return time.strftime("%Z") or "UTC"


# objects ------------------------------------------------------------------------------

def _matches(value, pattern):
    """lodash ``isMatch``: every key of ``pattern`` matches (objects partially, recursively)."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and _matches(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(_matches(item, p) for item in value) for p in pattern)
    return value == pattern


@method("xo.getAllObjects", permission="read", description="Returns all XO objects",
        params={"filter": {"type": ["object", "string"], "optional": True},
                "limit": {"type": "number", "optional": True}, "ndjson": {"type": "boolean", "optional": True}})
def get_all_objects(session, filter=None, limit=None, ndjson=False):  # noqa: A002
    """``{id: object}`` of every object the session may see; ``filter`` is a live filter
    (a string) or a partial object (``{"type": "VM", "power_state": "Running"}``)."""
    if ndjson:
        raise RpcError(0, "not implemented: ndjson (use GET /rest/v0/<collection>?ndjson)")
    services = session.services
    if isinstance(filter, str):
        node = live_filter.parse(filter)
        accept = node.match
    elif isinstance(filter, dict):
        accept = lambda obj: _matches(obj, filter)  # noqa: E731
    else:
        accept = lambda obj: True  # noqa: E731
    result = {}
    left = float("inf") if limit is None else max(0, int(limit))
    with live_filter.evaluation_budget(services.config.regex_timeout):
        try:
            for name in services.collections.names():
                if name in ("servers", "users", "audit") or left <= 0:
                    continue
                for obj in services.collections.select(name)[0]:
                    if accept(obj):
                        result[obj["id"]] = obj
                        left -= 1
                        if left <= 0:
                            break
        except live_filter.RegexTimeout as exc:
            raise invalid_parameters([{"message": str(exc)}], str(exc)) from None
    session.generation = services.cache.snapshot().generation
    return result
