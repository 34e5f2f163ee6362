"""``system.*`` (what the API serves, its version) and ``xo.getAllObjects``."""
import time
from importlib import metadata

from ... import filter as live_filter
from .core import METHODS, RpcError, invalid_parameters, method, no_such_object


def _version():
    try:
        return metadata.version("xorest")
    except metadata.PackageNotFoundError:
        return "unknown"


#: What ``system.getServerVersion`` answers: the xo-server API this one speaks.
SERVER_VERSION = f"5.207.2 (xorest {_version()})"


@method("system.getMethodsInfo", permission="public",
        description="returns the signatures of all available API methods")
def get_methods_info(session):
    return {name: found.info() for name, found in sorted(METHODS.items())}


@method("system.listMethods", permission="public", description="returns the name of all available API methods")
def list_methods(session):
    return sorted(METHODS)


@method("system.methodSignature", permission="public", params={"method": {"type": "string"}},
        description="returns the signature of an API method")
def method_signature(session, method):  # noqa: A002 (Xen Orchestra's parameter name)
    found = METHODS.get(method)
    if found is None:
        raise no_such_object(method)
    return [{"name": method, **found.info()}]


@method("system.getServerVersion", permission="public", description="return the version of xo-server")
def get_server_version(session):
    return SERVER_VERSION


@method("system.getVersion", permission="public", description="API version (unstable)")
def get_version(session):
    return "0.1"


@method("system.getServerTimezone", permission="self", description="return the timezone of the server")
def get_server_timezone(session):
    return time.strftime("%Z") or "UTC"


def _matches(value, pattern):
    """lodash ``isMatch``: every key of ``pattern`` matches (objects partially, recursively)."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and _matches(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(_matches(item, p) for item in value) for p in pattern)
    return value == pattern


#: Collections of the store, not objects of the pools: not in Xen Orchestra's ``all``.
_NOT_OBJECTS = ("servers", "users", "audit", "tasks")


@method("xo.getAllObjects", permission="read", description="Returns all XO objects",
        rest="GET /<collection>",
        params={"filter": {"type": ["object", "string"], "optional": True},
                "limit": {"type": "number", "optional": True}, "ndjson": {"type": "boolean", "optional": True}})
def get_all_objects(session, filter=None, limit=None, ndjson=False):  # noqa: A002
    """``{id: object}`` of every object the session may see; ``filter`` is a live filter
    (a string) or a partial object (``{"type": "VM", "power_state": "Running"}``)."""
    if ndjson:
        raise RpcError(0, "not implemented: ndjson (use GET /rest/v0/<collection>?ndjson=true)", status=501)
    services = session.services
    if isinstance(filter, str):
        accept = live_filter.parse(filter).match
    elif isinstance(filter, dict):
        accept = lambda obj: _matches(obj, filter)  # noqa: E731
    else:
        accept = lambda obj: True  # noqa: E731
    generation = services.cache.snapshot().generation  # what changes after it is notified
    result = {}
    left = float("inf") if limit is None else max(0, int(limit))
    with live_filter.evaluation_budget(services.config.regex_timeout):
        try:
            for name in services.collections.names():
                if name in _NOT_OBJECTS or left <= 0:
                    continue
                for obj in services.collections.select(name)[0]:
                    if accept(obj):
                        result[obj["id"]] = obj
                        left -= 1
                        if left <= 0:
                            break
        except live_filter.RegexTimeout as exc:
            raise invalid_parameters([{"message": str(exc)}], str(exc)) from None
    session.generation = generation
    session.showed(result)
    return result
