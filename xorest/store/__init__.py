"""Persistent state: users, tokens, pool servers, login throttling and the task log.

:class:`Store` is the interface; :class:`~xorest.store.sql.SqlStore` holds its queries
for both backends: :class:`~xorest.store.sqlite.SqliteStore`, the default (one file, WAL,
safe across gunicorn workers and threads of one machine), and
:class:`~xorest.store.postgres.PostgresStore` (one database for several instances).  A
backend that cannot read or write raises :class:`~xorest.errors.StoreUnavailable` (a
503), never its own exceptions.
"""
import abc
from typing import NamedTuple

from ..errors import StoreUnavailable

__all__ = ["Store", "StoreUnavailable", "LoginLimit", "login_wait", "open_store"]

#: The longest pause between two password attempts on one throttling key.
MAX_LOGIN_DELAY = 60.0


class LoginLimit(NamedTuple):
    """One throttling key: at most ``attempts`` in a window, and after a failure a pause
    of ``delay`` seconds, doubling with each further failure (0: no pause)."""

    key: str
    attempts: int
    delay: float = 0.0


def login_wait(row, limit, now, window):
    """Seconds before ``limit.key`` allows another attempt (0: now), given its ``row``
    (``count``, ``last_at``, ``failed_at``; ``None`` when it has none)."""
    if row is None or now - row["last_at"] > window:
        return 0.0
    if row["count"] >= limit.attempts:
        return window - (now - row["last_at"])
    if limit.delay and row["failed_at"] is not None and row["count"] > 0:
        ready = row["failed_at"] + min(MAX_LOGIN_DELAY, limit.delay * 2 ** (row["count"] - 1))
        return max(0.0, ready - now)
    return 0.0


class Store(abc.ABC):
    """What services need from persistent storage.  Rows are plain dicts."""

    # users (``role``: one of ``services.permissions.ROLES`` or ``None``)
    @abc.abstractmethod
    def add_user(self, email, password_hash, role): ...
    @abc.abstractmethod
    def update_user(self, user_id, email=None, role=...): ...  # ``role=...``: unchanged
    @abc.abstractmethod
    def get_user(self, key): ...  # by id or email
    @abc.abstractmethod
    def list_users(self): ...
    @abc.abstractmethod
    def remove_user(self, user_id): ...
    @abc.abstractmethod
    def set_password_hash(self, user_id, password_hash):
        """Set the hash and revoke every token of the user, in one transaction (a new
        password without the revocation would fail open); returns how many were revoked,
        or ``None`` for an unknown user."""

    # tokens
    @abc.abstractmethod
    def add_token(self, token_hash, user_id, expires_at, description, family_id=None, role=None, scope=None,
                  parent_id=None):
        """``role``: at most the user's (``None``: the user's); ``scope``: JSON text or ``None``;
        ``parent_id``: the token it was made with."""
    @abc.abstractmethod
    def get_token_by_hash(self, token_hash): ...
    @abc.abstractmethod
    def get_token(self, token_id): ...
    @abc.abstractmethod
    def list_tokens(self, user_id=None): ...
    @abc.abstractmethod
    def revoke_token(self, token_id):
        """Revoke a token, every token of its family (renewals), and, recursively, every
        token made with any of them; returns how many were revoked."""
    @abc.abstractmethod
    def revoke_user_tokens(self, user_id): ...  # returns how many
    @abc.abstractmethod
    def touch_token(self, token_id, when): ...
    @abc.abstractmethod
    def mark_renewed(self, token_id, when): ...

    # servers
    @abc.abstractmethod
    def add_server(self, url, username, password, ca_file, insecure, label): ...
    @abc.abstractmethod
    def list_servers(self, with_secrets=False): ...
    @abc.abstractmethod
    def remove_server(self, server_id): ...
    @abc.abstractmethod
    def set_server_enabled(self, server_id, enabled):
        """Connect to a server or not (a change its connections notice); ``False`` if unknown."""

    # tasks: rows are {id, owner, status, object_id, body (the task as JSON text), links
    # (JSON text: the XAPI tasks it drives now), abort_requested_at, started_at, updated_at, seq}
    @abc.abstractmethod
    def add_task(self, task_id, owner, status, object_id, body, started_at): ...
    @abc.abstractmethod
    def update_task(self, task_id, body=None, status=None, links=None, only_pending=False):
        """Change a task (``None`` leaves a column as it is); ``False`` if no row changed
        (unknown, or ended already when ``only_pending``)."""
    @abc.abstractmethod
    def get_task(self, task_id): ...
    @abc.abstractmethod
    def list_tasks(self, object_id=None, status=None): ...
    @abc.abstractmethod
    def task_changes(self, since):
        """``(changed rows, removed ids, last seq)`` after the change number ``since``."""
    @abc.abstractmethod
    def request_task_abort(self, task_id, when):
        """Mark a pending task for abortion; ``False`` if it is unknown or ended."""
    @abc.abstractmethod
    def delete_tasks(self, task_ids=None, keep=None):
        """Delete ended tasks (these ids, or all; with ``keep``, all but the newest
        ``keep`` ended ones); returns the ids deleted."""

    # writes made through each pool (event tokens), which reads wait to see
    @abc.abstractmethod
    def note_pool_write(self, server_id, token): ...
    @abc.abstractmethod
    def pool_writes(self): ...  # {server_id: (token, written_at)}
    @abc.abstractmethod
    def forget_pool_write(self, server_id, token): ...  # if it is still that token

    # machines running xorest on this database, and when each last said it is alive
    @abc.abstractmethod
    def note_host_alive(self, host, when): ...
    @abc.abstractmethod
    def hosts_alive(self): ...  # {host: seen_at}

    # audit trail
    @abc.abstractmethod
    def add_audit(self, entry): ...  # a dict of the audit table's columns but ``id``
    @abc.abstractmethod
    def list_audit(self, since=None, limit=None): ...  # oldest first
    @abc.abstractmethod
    def prune_audit(self, before): ...

    # event streams
    @abc.abstractmethod
    def add_event_stream(self, stream_id, user_id, now): ...
    @abc.abstractmethod
    def get_event_stream(self, stream_id): ...
    @abc.abstractmethod
    def touch_event_stream(self, stream_id, now): ...
    @abc.abstractmethod
    def remove_event_stream(self, stream_id): ...
    @abc.abstractmethod
    def prune_event_streams(self, before): ...
    @abc.abstractmethod
    def set_subscription(self, stream_id, collection, fields, filter_text): ...  # fields: JSON text
    @abc.abstractmethod
    def remove_subscription(self, stream_id, collection): ...  # True if it existed
    @abc.abstractmethod
    def list_subscriptions(self, stream_id): ...

    # login throttling: an attempt is counted before the password is checked
    @abc.abstractmethod
    def take_login_attempt(self, limits, now, window):
        """Atomically: when every :class:`LoginLimit` allows an attempt now (see
        :func:`login_wait`), count one on each and return 0; else count nothing and
        return the seconds to wait."""
    @abc.abstractmethod
    def record_login_failure(self, keys, now): ...
    @abc.abstractmethod
    def record_login_success(self, clear, release):
        """Forget the keys in ``clear``; give back the attempt counted on those in ``release``."""


def open_store(config):
    """The store configured for this instance: PostgreSQL when ``XOREST_DATABASE_URL`` is
    set (several instances share it), else SQLite in the data directory.  The key that
    encrypts pool passwords is ``<data dir>/secret.key`` either way."""
    if config.database_url:
        from .postgres import PostgresStore

        return PostgresStore(config.database_url, secret_path=config.data_dir)
    from .sqlite import SqliteStore

    return SqliteStore(config.database_path, secret_path=config.data_dir)
