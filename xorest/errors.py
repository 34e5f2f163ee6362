"""The gateway's error hierarchy: each error knows its HTTP status and JSON body.

This is the floor of the import graph: it imports neither flask nor any xorest module.
"""
import re

#: XAPI session references in URLs (transfer handlers take ``session_id=``) and in
#: ``SESSION_INVALID`` errors: whoever holds one acts as xorest on the pool.
#: And xorest's own tokens where clients put them in a path (Xen Orchestra's clients name a
#: token by its value to revoke it).
_SECRETS = re.compile(r"(session_id=)[^&\s'\"<>]+|(SESSION_INVALID[\s,:'\"\[]+)OpaqueRef:[0-9a-fA-F-]+"
                      r"|(authentication_tokens/)[A-Za-z0-9_-]{40,}")


def redact(text):
    """``text`` without XAPI session references or tokens (for messages, logs, error bodies)."""
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "<redacted>", str(text))


class XorestError(Exception):
    """Base class: ``status`` and ``message`` become ``{"error": message}`` with that status."""

    status = 500
    message = "internal error"

    def __init__(self, message=None, **data):
        message = redact(message) if message else self.message
        super().__init__(message)
        self.message = message
        self.data = data

    def to_dict(self):
        body = {"error": self.message}
        if self.data:
            body["data"] = self.data
        return body


class BadRequest(XorestError):
    status = 400
    message = "bad request"


class Unauthorized(XorestError):
    status = 401
    message = "authentication required"


class Forbidden(XorestError):
    status = 403
    message = "forbidden"


class NotFound(XorestError):
    status = 404
    message = "not found"


class ClientTimeout(XorestError, TimeoutError):
    """The client stopped sending (its body) for longer than ``XOREST_CLIENT_TIMEOUT``.

    Also a :class:`TimeoutError`, so the server's own socket code treats it as one."""

    status = 408
    message = "the client stopped sending"


class Conflict(XorestError):
    status = 409
    message = "conflict"


class LengthRequired(XorestError):
    status = 411
    message = "Content-Length required"


class PayloadTooLarge(XorestError):
    status = 413
    message = "the body is too large"


class Unprocessable(XorestError):
    """Well-formed parameters that name something unusable (a snapshot of another VM...)."""

    status = 422
    message = "invalid parameters"


class TooManyRequests(XorestError):
    status = 429
    message = "too many attempts, retry later"


class Unsupported(XorestError):
    status = 501
    message = "not supported here"


class UpstreamError(XorestError):
    status = 502
    message = "the pool answered with an error"


class Unavailable(XorestError):
    status = 503
    message = "the pool is not reachable"


class NotSupported(XorestError):
    """What Xen Orchestra's API offers and xorest does not do (cross-pool copies...)."""

    status = 501
    message = "not supported by xorest"


class StoreUnavailable(Unavailable):
    """The data store cannot be read or written (disk full, file unreadable...)."""

    message = "the data store is not available"


class ConfigError(XorestError):
    """An invalid configuration value; stops start-up."""


class FilterError(BadRequest):
    """An invalid filter; ``position`` is the UTF-16 offset reported by Xen Orchestra."""

    def __init__(self, message, position=None):
        super().__init__(message)
        self.position = position
        if position is not None:
            self.data = {"position": position}
