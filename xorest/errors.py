"""The gateway's error hierarchy: each error knows its HTTP status and JSON body.

This is the floor of the import graph: it imports neither flask nor any xorest module.
"""


class XorestError(Exception):
    """Base class: ``status`` and ``message`` become ``{"error": message}`` with that status."""

    status = 500
    message = "internal error"

    def __init__(self, message=None, **data):
        super().__init__(message or self.message)
        self.message = message or self.message
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


class Conflict(XorestError):
    status = 409
    message = "conflict"


class LengthRequired(XorestError):
    status = 411
    message = "Content-Length required"


class PayloadTooLarge(XorestError):
    status = 413
    message = "the body is too large"


class TooManyRequests(XorestError):
    status = 429
    message = "too many attempts, retry later"


class UpstreamError(XorestError):
    status = 502
    message = "the pool answered with an error"


class Unavailable(XorestError):
    status = 503
    message = "the pool is not reachable"


class ConfigError(XorestError):
    """An invalid configuration value; stops start-up."""


class FilterError(BadRequest):
    """An invalid filter; ``position`` is the UTF-16 offset reported by Xen Orchestra."""

    def __init__(self, message, position=None):
        super().__init__(message)
        self.position = position
        if position is not None:
            self.data = {"position": position}
