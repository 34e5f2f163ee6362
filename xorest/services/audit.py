"""The audit trail: what was done, by whom, from where, with what outcome.

Every state-changing request, every export, and every token creation or revocation is
recorded in the store (so every instance sees one trail) and logged (``xorest.audit``).
Entries hold no secrets: paths are redacted (a token named in a path, a session), bodies
and query strings are never kept.
"""
import logging
import random
import time

from ..errors import StoreUnavailable, redact

log = logging.getLogger(__name__)

#: One recording in this many also drops the entries older than the retention.
PRUNE_EVERY = 500


class AuditService:
    """Records and prunes the trail.

    :param store: the store holding it.
    :param config: ``audit_retention`` (seconds) is how long entries are kept.
    """

    def __init__(self, store, config):
        self.store = store
        self.config = config

    def record(self, *, user, token, address, method, path, operation, status, error=None):
        """Record one request; a failure to record is logged, never the request's failure."""
        entry = {"at": time.time(), "user_id": user["id"] if user else None,
                 "user_email": user["email"] if user else None, "token_id": token["id"] if token else None,
                 "address": address, "method": method, "path": redact(path)[:1024], "operation": operation,
                 "status": status, "error": redact(error)[:500] if error else None}
        log.info("%s %s %s by %s (token %s) from %s: %s%s", method, entry["path"], operation,
                 entry["user_email"] or "-", entry["token_id"] or "-", address, status,
                 f" ({entry['error']})" if error else "")
        try:
            self.store.add_audit(entry)
            if random.randrange(PRUNE_EVERY) == 0:
                self.store.prune_audit(time.time() - self.config.audit_retention)
        except StoreUnavailable as exc:
            log.error("audit entry not recorded: %s", exc)
