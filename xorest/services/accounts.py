"""The services of an instance that need no pool: the store, users and tokens, the audit
trail.  The CLI's commands use only these, and import nothing of the request services
(a command starts in a fraction of the time)."""
import functools

from ..store import open_store
from .audit import AuditService


class AccountServices:
    """The store, accounts (:attr:`auth`, made on first use) and the audit trail."""

    def __init__(self, config):
        self.config = config
        self.store = open_store(config)
        self.audit = AuditService(self.store, config)

    @functools.cached_property
    def auth(self):
        """Users, tokens and logins (:class:`~.auth.AuthService`)."""
        from .auth import AuthService

        return AuthService(self.store, self.config)
