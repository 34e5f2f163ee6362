"""The audit trail: what was done, by whom, from where, with what outcome.

Every state-changing request, every export, every token creation or revocation, and every
command of the ``xorest`` CLI that changes users or tokens is recorded in the store (so
every instance sees one trail) and logged (``xorest.audit``).  A request that starts a task
is recorded twice: when it is answered (an asynchronous action's ``202``), and when the
task ends (method ``TASK``, path ``/rest/v0/tasks/<id>``, the task's outcome).  Entries
hold no secrets: paths are redacted (a token named in a path, a session), bodies and query
strings are never kept.
"""
import contextvars
import getpass
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Optional

from ..errors import StoreUnavailable, redact

log = logging.getLogger(__name__)

#: One recording in this many also drops the entries older than the retention.
PRUNE_EVERY = 500
#: The method of the entry recording how a task ended, and where the task is read.
TASK_METHOD, TASKS_PATH = "TASK", "/rest/v0/tasks"
#: The method and address of the CLI's entries.
CLI_METHOD, CLI_ADDRESS = "CLI", "cli"

_origin = contextvars.ContextVar("xorest_audit_origin", default=None)


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

    def record_cli(self, command, operation, status, error=None):
        """Record a command of the ``xorest`` CLI, as the local account running it."""
        self.record(user=local_operator(), token=None, address=CLI_ADDRESS, method=CLI_METHOD, path=command,
                    operation=operation, status=status, error=error)


@dataclass(frozen=True)
class Origin:
    """The audited call being served: who, with which token, from where, what.  A task
    started by the call keeps it, and records its own end with it."""

    audit: AuditService
    user: Optional[dict]
    token: Optional[dict]
    address: str
    method: str
    path: str
    operation: str

    def record(self, status, error=None):
        """The call's own entry: how it was answered."""
        self.audit.record(user=self.user, token=self.token, address=self.address, method=self.method,
                          path=self.path, operation=self.operation, status=status, error=error)

    def task_ended(self, task):
        """The entry of a task's end (``task``: its log, ended): ``200``, or its error's status."""
        result = task.get("result") if isinstance(task.get("result"), dict) else {}
        failed = task["status"] != "success"
        self.audit.record(user=self.user, token=self.token, address=self.address, method=TASK_METHOD,
                          path=f"{TASKS_PATH}/{task['id']}", operation=self.operation,
                          status=(result.get("status") or 500) if failed else 200,
                          error=(result.get("message") or task["status"]) if failed else None)


def use(origin):
    """Make ``origin`` (an :class:`Origin`, or ``None``) the current call's."""
    _origin.set(origin)


def current():
    """The current audited call's :class:`Origin`, or ``None``."""
    return _origin.get()


def local_operator():
    """The user the CLI's entries name: the local account running it (``local:<login>``)."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no login name for this uid (a container)
        login = f"uid {os.getuid()}"
    return {"id": None, "email": f"local:{login}"}
