"""What every JSON-RPC method shares: Xen Orchestra's errors, the method registry and the
parameter checks.

Errors carry Xen Orchestra's codes (``xo-common/api-errors``) and JSON-RPC's; a method is
declared once with :func:`method`: its parameters as Xen Orchestra describes them (what
``system.getMethodsInfo`` shows), the permission it needs (the decision is
``permissions.authorize``, as for every REST route) and the REST operation it mirrors.
"""
import logging

from ...errors import (BadRequest, Conflict, Forbidden, NotFound, NotSupported, TooManyRequests, Unauthorized,
                       Unavailable, Unprocessable, Unsupported, UpstreamError)
from ..permissions import PERMISSIONS

log = logging.getLogger(__name__)


class RpcError(Exception):
    """A JSON-RPC error object: ``code``, ``message``, ``data``; ``status`` is the HTTP
    status the REST API would answer (for the audit trail)."""

    def __init__(self, code, message, data=None, status=400):
        super().__init__(message)
        self.code, self.message, self.data, self.status = code, message, data, status

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
    return RpcError(-32601, f"method not found: {name}", name, status=404)


def unauthorized(permission=None):
    """Xen Orchestra's ``unauthorized`` (2): not signed in, or not allowed."""
    return RpcError(2, "not enough permissions", {"permission": permission, "object": {}}, status=403)


def invalid_parameters(errors, message="invalid parameters"):
    return RpcError(10, message, {"errors": errors})


def no_such_object(key, kind=None):
    return RpcError(1, f"no such {kind or 'object'} {key}", {"id": key, "type": kind}, status=404)


#: XAPI's codes that Xen Orchestra's API answers with an error of its own (its
#: ``XAPI_ERROR_TO_XO_ERROR``): code -> (XO code, message, data from the XAPI parameters).
XAPI_ERRORS = {
    "VM_BAD_POWER_STATE": (13, lambda p: f"VM state is {_at(p, 2)} but should be {_at(p, 1)}",
                           lambda p: {"objectId": _at(p, 0), "expected": _at(p, 1), "actual": _at(p, 2)}),
    "OPERATION_BLOCKED": (19, lambda p: "operation blocked", lambda p: {"objectId": _at(p, 0), "code": _at(p, 1)}),
    "NO_HOSTS_AVAILABLE": (7, lambda p: "no hosts available", lambda p: None),
    "HOST_OFFLINE": (18, lambda p: "host offline", lambda p: {"objectId": _at(p, 0)}),
    "VM_IS_TEMPLATE": (12, lambda p: "VM is a template", lambda p: {"objectId": _at(p, 0)}),
    "VM_LACKS_FEATURE": (14, lambda p: "VM lacks feature ", lambda p: {"objectId": _at(p, 0)}),
    "VM_LACKS_FEATURE_SHUTDOWN": (14, lambda p: "VM lacks feature shutdown",
                                  lambda p: {"objectId": _at(p, 0), "feature": "shutdown"}),
    "VM_MISSING_PV_DRIVERS": (11, lambda p: "missing PV drivers", lambda p: {"objectId": _at(p, 0)}),
    "VDI_IN_USE": (17, lambda p: "VDI in use", lambda p: {"objectId": _at(p, 0), "operation": _at(p, 1)}),
}


def _at(params, index):
    return params[index] if isinstance(params, list) and len(params) > index else None


def from_xorest(error, object_id=lambda ref: ref):
    """A :class:`~xorest.errors.XorestError` as Xen Orchestra's API error; ``object_id``
    gives the id of an object named by its XAPI reference (as Xen Orchestra tells them)."""
    status = error.status
    data = error.data or {}
    xapi = XAPI_ERRORS.get(data.get("code"))
    if xapi is not None:
        code, message, details = xapi
        params = [object_id(p) if isinstance(p, str) and p.startswith("OpaqueRef:") else p
                  for p in data.get("params") or []]
        return RpcError(code, message(params), details(params), status)
    if isinstance(error, TooManyRequests):
        return RpcError(3, "invalid credentials: too many failed attempts, retry later", data, status)
    if isinstance(error, Unauthorized):
        return RpcError(3, "invalid credentials", None, status)
    if isinstance(error, Forbidden):
        return RpcError(2, "not enough permissions", {"permission": data.get("permission"), "object": {}}, status)
    if isinstance(error, NotFound):
        return RpcError(1, error.message, {"id": data.get("id"), "type": data.get("type")}, status)
    if isinstance(error, (BadRequest, Unprocessable)):
        return RpcError(10, error.message, {"errors": [{"message": error.message, **data}]}, status)
    if isinstance(error, (NotSupported, Unsupported)):
        return RpcError(0, f"not implemented: {error.message}", data or None, status)
    if isinstance(error, Conflict) and {"actual", "expected", "property"} <= set(data):
        return RpcError(25, "incorrect state", {k: data.get(k) for k in ("actual", "expected", "object", "property")},
                        status)
    if isinstance(error, (Conflict, Unavailable, UpstreamError)):
        # Xen Orchestra answers its admins the error's own message and data (JSON-RPC's
        # generic code); xorest does so for every user: no secret is in them.
        return RpcError(-32000, error.message, data or None, status)
    return RpcError(-32000, "unknown error from the peer", None, status)


class Method:
    """One API method.

    :param fn: ``fn(session, **params)``; its result is the answer (``None``: ``true``).
    :param permission: a key of :data:`~..permissions.PERMISSIONS`.
    :param params: name -> ``{"type": ..., "optional": bool, "default": value}``, as Xen
        Orchestra describes them (checked before the call).
    :param audit: its calls change something and go into the audit trail.
    :param rest: the REST operation it does the same as (``"POST /vms/<key>/actions/start"``),
        whose permission it must declare.
    """

    def __init__(self, name, fn, permission, params, description, audit=False, rest=None):
        if permission not in PERMISSIONS:
            raise ValueError(f"undeclared permission {permission!r}")
        self.name, self.fn, self.permission, self.params = name, fn, permission, params or {}
        self.description = description or (fn.__doc__ or "").strip().splitlines()[0]
        self.audit, self.rest = audit, rest
        self.body_loader = None  # set by the API layer for methods that take a REST body (vm.set)

    def info(self):
        """What ``system.getMethodsInfo`` shows (``permission`` ``null``: anyone, as XO)."""
        return {"description": self.description, "params": self.params,
                "permission": None if self.permission == "public" else self.permission}


#: name -> :class:`Method`, every method served.
METHODS = {}


def method(name, *, permission, params=None, description="", audit=False, rest=None, aliases=()):
    """Declare a JSON-RPC method (see :class:`Method`); ``aliases`` are other names of it
    (Xen Orchestra's deprecated spellings)."""
    def decorate(fn):
        for each in (name, *aliases):
            if each in METHODS:
                raise ValueError(f"JSON-RPC method {each} declared twice")
            METHODS[each] = Method(each, fn, permission, params, description, audit, rest)
        return fn
    return decorate


def _is(kind, value):
    """JSON Schema's types, as Xen Orchestra's parameter checks use them."""
    if kind == "null":
        return value is None
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"string": str, "boolean": bool, "object": dict, "array": list}[kind])


def check_params(name, spec, params):
    """``params`` checked against ``spec`` as Xen Orchestra checks them; returns them with
    defaults filled in.  As there: a method with an ``id`` parameter takes its namespace's
    name for it (``vm.start vm=<id>``), and a parameter suffixed with ``?`` is left out
    when the method does not know it."""
    params = dict(params)
    for key in [k for k in params if k.endswith("?")]:
        value = params.pop(key)
        if key[:-1] in params:
            raise invalid_parameters([{"message": f"conflicting keys: {key[:-1]} and {key}"}])
        if key[:-1] in spec:
            params[key[:-1]] = value
    namespace = name.split(".", 1)[0]
    if "id" not in params and "id" in spec and namespace not in spec and isinstance(params.get(namespace), str):
        params["id"] = params.pop(namespace)
    errors = []
    for key, rule in spec.items():
        kinds = rule.get("type", [])
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if key not in params:
            if "default" in rule:
                params[key] = rule["default"]
            elif not rule.get("optional"):
                errors.append({"instancePath": "", "message": f"must have required property '{key}'"})
            continue
        if kinds and not any(_is(kind, params[key]) for kind in kinds):
            errors.append({"instancePath": f"/{key}", "message": f"must be {','.join(kinds)}"})
        elif "enum" in rule and params[key] not in rule["enum"]:
            errors.append({"instancePath": f"/{key}", "message": "must be equal to one of the allowed values"})
    for key in sorted(set(params) - set(spec)):
        errors.append({"instancePath": "", "message": f"must NOT have additional properties ({key})"})
    if errors:
        raise invalid_parameters(errors)
    return params
