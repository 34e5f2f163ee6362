"""XAPI failures as Python exceptions, translated once at the client boundary."""
from ..errors import redact


class XapiError(Exception):
    """An API failure: ``code`` and ``params`` from XAPI's ErrorDescription."""

    def __init__(self, code, params=()):
        self.code = str(code)
        self.params = [str(p) for p in params]
        super().__init__(self.code, *self.params)

    def __str__(self):
        return redact(" ".join([self.code, *self.params]))

    @classmethod
    def from_description(cls, description):
        """The most specific subclass for ``[code, *params]``."""
        if isinstance(description, dict):  # JSON-RPC 2.0 error object
            code, params = description.get("message", "INTERNAL_ERROR"), description.get("data") or []
        elif isinstance(description, (list, tuple)) and description:
            code, params = description[0], description[1:]
        else:
            code, params = "INTERNAL_ERROR", [repr(description)]
        return _BY_CODE.get(code, cls)(code, params)


class SessionInvalid(XapiError):
    pass


class HostIsSlave(XapiError):
    @property
    def master(self):
        return self.params[0] if self.params else ""


class HandleInvalid(XapiError):
    pass


class AuthenticationFailed(XapiError):
    pass


class TaskCancelled(XapiError):
    pass


class XapiUnreachable(Exception):
    """The pool could not be reached, timed out, or answered something that is not XAPI.

    Its message never holds a session reference (they appear in transfer URLs)."""

    def __init__(self, message):
        super().__init__(redact(message))


_BY_CODE = {
    "SESSION_INVALID": SessionInvalid,
    "HOST_IS_SLAVE": HostIsSlave,
    "HANDLE_INVALID": HandleInvalid,
    "UUID_INVALID": HandleInvalid,
    "SESSION_AUTHENTICATION_FAILED": AuthenticationFailed,
    "TASK_CANCELLED": TaskCancelled,
}
