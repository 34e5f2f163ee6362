"""The store's queries, written once for every SQL backend.

:class:`SqlStore` holds every statement, in SQL that SQLite and PostgreSQL both run
(``?`` placeholders, ``INSERT ... ON CONFLICT ... DO UPDATE``, a recursive common table
expression); a backend subclass connects, runs transactions and names the few words that
differ (:attr:`~SqlStore.GREATEST`, :attr:`~SqlStore.NO_LIMIT`, :attr:`~SqlStore.FOR_UPDATE`).

What each method guarantees across threads, processes and instances rests on two hooks:
``_transaction()`` (SQLite: ``BEGIN IMMEDIATE``, one writer at a time; PostgreSQL: a
transaction whose row locks serialise what touches the same rows) and ``_lock()`` (names
that concurrent transactions take in turn: a no-op where writers are serialised anyway).

Pool passwords must be usable to connect, so they are encrypted (Fernet) with a key kept
in a file of the data directory: a dump of the database alone reveals none.  Every
instance sharing a database needs the same key; one with another key is refused at
start-up (migration 7 keeps a value encrypted with it).
"""
import abc
import contextlib
import logging
import os
import stat
import time
import uuid

from cryptography.fernet import Fernet, InvalidToken

from ..config import private_directory
from ..errors import ConfigError
from . import Store, login_wait
from .migrations import migrate, statements

log = logging.getLogger(__name__)

#: Seconds a writer waits for another's lock before the store is "unavailable" (a 503).
LOCK_TIMEOUT = 10.0

#: Revoke a token's family and, recursively, the families of the tokens made with any
#: member (standard SQL: a recursive common table expression over families).
REVOKE_TREE = """
UPDATE tokens SET revoked_at = ? WHERE revoked_at IS NULL AND family_id IN (
    WITH RECURSIVE doomed(family_id) AS (
        SELECT family_id FROM tokens WHERE id = ?
        UNION
        SELECT child.family_id FROM tokens AS child JOIN tokens AS parent ON child.parent_id = parent.id
        JOIN doomed ON parent.family_id = doomed.family_id
    )
    SELECT family_id FROM doomed
)
"""

#: What the key check decrypts.
KEY_CHECK = b"xorest"

#: The lock that revocations take in turn (they update overlapping sets of token rows).
TOKENS_LOCK = "tokens"


def key_path(folder):
    return os.path.join(folder, "secret.key")


def tighten(path):
    """Make an existing private file 0600 if its mode lets others read it (it was made
    outside xorest, or by an older version)."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); now 0600", path, mode)
        os.chmod(path, 0o600)


def load_key(folder):
    """The key of ``folder``'s ``secret.key``, created (0600) when it is missing, made
    0600 when it is wider."""
    path = key_path(folder)
    try:
        with open(path, "rb") as fh:
            key = fh.read().strip()
        tighten(path)
        return key
    except FileNotFoundError:
        pass
    # written whole under another name, then linked into place: a process starting at the
    # same moment reads either no file or the whole key, never an empty one, and one key wins
    key = Fernet.generate_key()
    draft = f"{path}.{os.getpid()}.{uuid.uuid4().hex}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        os.link(draft, path)
    except FileExistsError:  # another process's key is in place
        return load_key(folder)
    finally:
        os.unlink(draft)
    return key


class SqlStore(Store):
    """Every query of the store; subclasses provide connections and transactions."""

    #: The larger of two values (SQLite's scalar ``MAX``, PostgreSQL's ``GREATEST``).
    GREATEST = "MAX"
    #: A ``LIMIT`` that does not limit, before an ``OFFSET``.
    NO_LIMIT = "LIMIT -1"
    #: Appended to a ``SELECT`` whose rows the transaction goes on to change.
    FOR_UPDATE = ""
    #: The backend's exception for a broken constraint (a taken email).
    IntegrityError = Exception

    def __init__(self, secret_path):
        private_directory(secret_path)
        self._key_file = key_path(secret_path)
        self._fernet = Fernet(load_key(secret_path))

    def _open(self):
        """Migrate, then check the key (the backend's ``__init__`` calls it once connected)."""
        migrate(self)
        self._check_key()

    # what a backend provides ------------------------------------------------------

    @abc.abstractmethod
    def _reading(self):
        """A context manager: a connection whose statements each see committed data."""

    @abc.abstractmethod
    def _transaction(self):
        """A context manager: a connection in a write transaction, committed at the end
        (rolled back on an exception); the backend's errors become ``StoreUnavailable``,
        but ``IntegrityError``."""

    @abc.abstractmethod
    def _snapshot(self):
        """A context manager: a connection in a read transaction that sees one state."""

    @abc.abstractmethod
    def _migration(self):
        """A context manager: a transaction that one process at a time may hold."""

    @abc.abstractmethod
    def _schema_version(self, conn): ...

    @abc.abstractmethod
    def _set_schema_version(self, conn, number): ...

    def _schema_statements(self, script):
        """A migration script as this backend's statements."""
        return statements(script)

    def _lock(self, conn, names):
        """Wait until no other transaction holds any of ``names``, and hold them until
        this one ends (no-op here: writers run one at a time)."""

    # helpers ----------------------------------------------------------------------

    def _query(self, sql, params=()):
        with self._reading() as conn:
            return [dict(row) for row in conn.execute(sql, params)]

    def _one(self, sql, params=()):
        rows = self._query(sql, params)
        return rows[0] if rows else None

    def _write(self, sql, params=()):
        with self._transaction() as conn:
            return conn.execute(sql, params).rowcount

    def _check_key(self):
        """Refuse a key that is not the one the database's secrets were encrypted with."""
        with self._transaction() as conn:
            row = conn.execute("SELECT token FROM key_check WHERE id = 1").fetchone()
            if row is None:  # a new database, or one of a version without the check
                server = conn.execute("SELECT password_enc FROM servers LIMIT 1").fetchone()
                if server is not None:
                    self._decrypt(server["password_enc"])
                conn.execute("INSERT INTO key_check (id, token) VALUES (1, ?) ON CONFLICT(id) DO NOTHING",
                             (self._encrypt(KEY_CHECK.decode()),))
                row = conn.execute("SELECT token FROM key_check WHERE id = 1").fetchone()
        self._decrypt(row["token"])

    def _encrypt(self, text):
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def _decrypt(self, secret):
        try:
            return self._fernet.decrypt(secret.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ConfigError(f"the key in {self._key_file} is not the one this database's pool passwords "
                              "were encrypted with: every instance sharing a database needs the same "
                              "secret.key (copy the first instance's)") from None

    # users -----------------------------------------------------------------

    def add_user(self, email, password_hash, role):
        user_id = uuid.uuid4().hex[:16]
        try:
            self._write("INSERT INTO users (id, email, password_hash, is_admin, role, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (user_id, email, password_hash, int(role == "pool-admin"), role, time.time()))
        except self.IntegrityError:
            return None
        return self.get_user(user_id)

    def update_user(self, user_id, email=None, role=...):
        """Change a user's email and/or role; ``None`` if the email is taken."""
        try:
            with self._transaction() as conn:
                if email is not None:
                    conn.execute("UPDATE users SET email = ? WHERE id = ?", (email, user_id))
                if role is not ...:
                    conn.execute("UPDATE users SET role = ?, is_admin = ? WHERE id = ?",
                                 (role, int(role == "pool-admin"), user_id))
        except self.IntegrityError:
            return None
        return self.get_user(user_id)

    def get_user(self, key):
        return self._one("SELECT * FROM users WHERE id = ? OR email = ?", (key, key))

    def list_users(self):
        return self._query("SELECT * FROM users ORDER BY created_at, id")

    def remove_user(self, user_id):
        return self._write("DELETE FROM users WHERE id = ?", (user_id,)) > 0

    def set_password_hash(self, user_id, password_hash):
        with self._transaction() as conn:
            self._lock(conn, [TOKENS_LOCK])
            if not conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)).rowcount:
                return None
            return conn.execute("UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                                (time.time(), user_id)).rowcount

    # tokens ----------------------------------------------------------------

    def add_token(self, token_hash, user_id, expires_at, description, family_id=None, role=None, scope=None,
                  parent_id=None):
        token_id = uuid.uuid4().hex[:16]
        self._write("INSERT INTO tokens (id, token_hash, user_id, description, created_at, expires_at, "
                    "family_id, role, scope, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (token_id, token_hash, user_id, description, time.time(), expires_at, family_id or token_id,
                     role, scope, parent_id))
        return self.get_token(token_id)

    def get_token_by_hash(self, token_hash):
        return self._one("SELECT * FROM tokens WHERE token_hash = ?", (token_hash,))

    def get_token(self, token_id):
        return self._one("SELECT * FROM tokens WHERE id = ?", (token_id,))

    def list_tokens(self, user_id=None):
        if user_id is None:
            return self._query("SELECT * FROM tokens ORDER BY created_at, id")
        return self._query("SELECT * FROM tokens WHERE user_id = ? ORDER BY created_at, id", (user_id,))

    def revoke_token(self, token_id):
        with self._transaction() as conn:
            self._lock(conn, [TOKENS_LOCK])
            return conn.execute(REVOKE_TREE, (time.time(), token_id)).rowcount

    def revoke_user_tokens(self, user_id):
        with self._transaction() as conn:
            self._lock(conn, [TOKENS_LOCK])
            return conn.execute("UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                                (time.time(), user_id)).rowcount

    def touch_token(self, token_id, when):
        self._write("UPDATE tokens SET last_used_at = ? WHERE id = ?", (when, token_id))

    def mark_renewed(self, token_id, when):
        """Record a renewal; ``False`` if another request renewed it first."""
        return self._write("UPDATE tokens SET renewed_at = ? WHERE id = ? AND renewed_at IS NULL",
                           (when, token_id)) > 0

    # servers -----------------------------------------------------------------

    def add_server(self, url, username, password, ca_file, insecure, label):
        server_id = uuid.uuid4().hex[:16]
        now = time.time()
        self._write("INSERT INTO servers (id, url, username, password_enc, ca_file, insecure, label, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (server_id, url, username, self._encrypt(password), ca_file, int(insecure), label, now, now))
        return server_id

    def list_servers(self, with_secrets=False):
        rows = self._query("SELECT * FROM servers ORDER BY created_at, id")
        for row in rows:
            secret = row.pop("password_enc")
            row["insecure"] = bool(row["insecure"])
            row["enabled"] = bool(row["enabled"])
            if with_secrets:
                row["password"] = self._decrypt(secret)
        return rows

    def remove_server(self, server_id):
        return self._write("DELETE FROM servers WHERE id = ?", (server_id,)) > 0

    def set_server_enabled(self, server_id, enabled):
        # updated_at changes too: running processes reconnect servers whose row changed
        return self._write("UPDATE servers SET enabled = ?, updated_at = ? WHERE id = ?",
                           (int(enabled), time.time(), server_id)) > 0

    # audit trail -------------------------------------------------------------------

    _AUDIT_COLUMNS = ("at", "user_id", "user_email", "token_id", "address", "method", "path", "operation",
                      "status", "error")

    def add_audit(self, entry):
        self._write(f"INSERT INTO audit ({', '.join(self._AUDIT_COLUMNS)}) VALUES "
                    f"({', '.join('?' for _ in self._AUDIT_COLUMNS)})",
                    tuple(entry.get(column) for column in self._AUDIT_COLUMNS))

    def list_audit(self, since=None, limit=None):
        sql, params = "SELECT * FROM audit", []
        if since is not None:
            sql += " WHERE at >= ?"
            params.append(since)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return self._query(sql, params)

    def prune_audit(self, before):
        return self._write("DELETE FROM audit WHERE at < ?", (before,))

    # event streams ------------------------------------------------------------------

    def add_event_stream(self, stream_id, user_id, now):
        self._write("INSERT INTO event_streams (id, user_id, opened_at, seen_at) VALUES (?, ?, ?, ?)",
                    (stream_id, user_id, now, now))

    def get_event_stream(self, stream_id):
        return self._one("SELECT * FROM event_streams WHERE id = ?", (stream_id,))

    def touch_event_stream(self, stream_id, now):
        self._write("UPDATE event_streams SET seen_at = ? WHERE id = ?", (now, stream_id))

    def remove_event_stream(self, stream_id):
        self._write("DELETE FROM event_streams WHERE id = ?", (stream_id,))

    def prune_event_streams(self, before):
        return self._write("DELETE FROM event_streams WHERE seen_at < ?", (before,))

    def set_subscription(self, stream_id, collection, fields, filter_text):
        self._write("INSERT INTO event_subscriptions (stream_id, collection, fields, filter) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(stream_id, collection) DO UPDATE SET fields = excluded.fields, "
                    "filter = excluded.filter", (stream_id, collection, fields, filter_text))

    def remove_subscription(self, stream_id, collection):
        return self._write("DELETE FROM event_subscriptions WHERE stream_id = ? AND collection = ?",
                           (stream_id, collection)) > 0

    def list_subscriptions(self, stream_id):
        return self._query("SELECT collection, fields, filter FROM event_subscriptions WHERE stream_id = ? "
                           "ORDER BY collection", (stream_id,))

    # tasks ---------------------------------------------------------------------
    # Every change takes the next number of one counter row.  The row stays locked until
    # the change commits, so changes commit in the order of their numbers: a watcher that
    # saw number n has seen every change up to n, and asks for those after it.

    @staticmethod
    def _next_seq(conn):
        conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'task_seq'")
        return conn.execute("SELECT value FROM counters WHERE name = 'task_seq'").fetchone()["value"]

    def add_task(self, task_id, owner, status, object_id, body, started_at):
        with self._transaction() as conn:
            conn.execute("INSERT INTO tasks (id, owner, status, object_id, body, started_at, updated_at, seq) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (task_id, owner, status, object_id, body, started_at, time.time(), self._next_seq(conn)))

    def update_task(self, task_id, body=None, status=None, links=None, only_pending=False):
        with self._transaction() as conn:
            pending = " AND status = 'pending'" if only_pending else ""
            changed = conn.execute(
                "UPDATE tasks SET body = COALESCE(?, body), status = COALESCE(?, status), "
                "links = COALESCE(?, links), updated_at = ?, seq = ? WHERE id = ?" + pending,
                (body, status, links, time.time(), self._next_seq(conn), task_id)).rowcount
            return changed > 0

    def get_task(self, task_id):
        return self._one("SELECT * FROM tasks WHERE id = ?", (task_id,))

    def list_tasks(self, object_id=None, status=None):
        clauses, params = [], []
        for column, value in (("object_id", object_id), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        return self._query(f"SELECT * FROM tasks{where} ORDER BY id", params)

    def task_changes(self, since):
        # one read transaction: the rows, the removals and the last number agree
        with self._snapshot() as conn:
            rows = [dict(row) for row in conn.execute("SELECT * FROM tasks WHERE seq > ? ORDER BY seq", (since,))]
            removed = [row["id"] for row in conn.execute("SELECT id FROM task_removals WHERE seq > ? ORDER BY seq",
                                                         (since,))]
            last = conn.execute("SELECT value FROM counters WHERE name = 'task_seq'").fetchone()["value"]
        return rows, removed, last

    def request_task_abort(self, task_id, when):
        return self._write("UPDATE tasks SET abort_requested_at = COALESCE(abort_requested_at, ?) "
                           "WHERE id = ? AND status = 'pending'", (when, task_id)) > 0

    def delete_tasks(self, task_ids=None, keep=None):
        with self._transaction() as conn:
            # the counter first, as every change of the task log takes it: no two
            # transactions wait for each other's rows
            conn.execute("SELECT value FROM counters WHERE name = 'task_seq'" + self.FOR_UPDATE)
            if task_ids is not None:
                marks = ",".join("?" * len(task_ids))
                rows = conn.execute(f"SELECT id FROM tasks WHERE status != 'pending' AND id IN ({marks})",
                                    list(task_ids)).fetchall() if task_ids else []
            else:
                rows = conn.execute(f"SELECT id FROM tasks WHERE status != 'pending' ORDER BY updated_at DESC, id "
                                    f"{self.NO_LIMIT} OFFSET ?", (keep or 0,)).fetchall()
            ids = [row["id"] for row in rows]
            now = time.time()
            for task_id in ids:
                conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
                conn.execute("INSERT INTO task_removals (seq, id, removed_at) VALUES (?, ?, ?)",
                             (self._next_seq(conn), task_id, now))
            # watchers only need recent removals
            conn.execute("DELETE FROM task_removals WHERE removed_at < ?", (now - 3600,))
            return ids

    # pool writes ---------------------------------------------------------------

    def note_pool_write(self, server_id, token):
        # Tokens are zero-padded numbers: the larger string is the later write.
        self._write("INSERT INTO pool_writes (server_id, token, written_at) VALUES (?, ?, ?) "
                    f"ON CONFLICT(server_id) DO UPDATE SET token = {self.GREATEST}(pool_writes.token, excluded.token), "
                    "written_at = excluded.written_at", (server_id, token, time.time()))

    def pool_writes(self):
        return {row["server_id"]: (row["token"], row["written_at"])
                for row in self._query("SELECT server_id, token, written_at FROM pool_writes")}

    def forget_pool_write(self, server_id, token):
        self._write("DELETE FROM pool_writes WHERE server_id = ? AND token = ?", (server_id, token))

    # machines alive ------------------------------------------------------------

    def note_host_alive(self, host, when):
        self._write(f"INSERT INTO hosts_alive (host, seen_at) VALUES (?, ?) ON CONFLICT(host) DO UPDATE SET "
                    f"seen_at = {self.GREATEST}(hosts_alive.seen_at, excluded.seen_at)", (host, when))

    def hosts_alive(self):
        return {row["host"]: row["seen_at"] for row in self._query("SELECT host, seen_at FROM hosts_alive")}

    # login throttling ----------------------------------------------------------
    # Keys are taken in one order everywhere (sorted), so two transactions never wait for
    # each other's rows.

    def take_login_attempt(self, limits, now, window):
        limits = sorted(limits, key=lambda limit: limit.key)
        with self._transaction() as conn:
            # the same keys are read, decided on and counted by one transaction at a time
            self._lock(conn, [f"login:{limit.key}" for limit in limits])
            rows = {}
            for limit in limits:
                row = conn.execute("SELECT count, last_at, failed_at FROM login_failures WHERE key = ?",
                                   (limit.key,)).fetchone()
                rows[limit.key] = dict(row) if row else None
            wait = max(login_wait(rows[limit.key], limit, now, window) for limit in limits)
            if wait > 0:
                return wait
            for limit in limits:
                row = rows[limit.key]
                if row is None or now - row["last_at"] > window:
                    conn.execute("INSERT INTO login_failures (key, count, last_at, failed_at) VALUES (?, 1, ?, NULL) "
                                 "ON CONFLICT(key) DO UPDATE SET count = 1, last_at = excluded.last_at, "
                                 "failed_at = NULL", (limit.key, now))
                else:
                    conn.execute("UPDATE login_failures SET count = count + 1, last_at = ? WHERE key = ?",
                                 (now, limit.key))
            return 0.0

    def record_login_failure(self, keys, now):
        with self._transaction() as conn:
            for key in sorted(keys):
                conn.execute("UPDATE login_failures SET failed_at = ?, last_at = ? WHERE key = ?", (now, now, key))

    def record_login_success(self, clear, release):
        with self._transaction() as conn:
            for key in sorted(set(clear) | set(release)):
                if key in clear:
                    conn.execute("DELETE FROM login_failures WHERE key = ?", (key,))
                else:
                    conn.execute(f"UPDATE login_failures SET count = {self.GREATEST}(count - 1, 0) WHERE key = ?",
                                 (key,))


@contextlib.contextmanager
def rolled_back_on_error(begin, commit, rollback, in_transaction):
    """Run ``begin``, then the block, then ``commit``; on any exception ``rollback``
    unless the transaction already ended (a failed ``COMMIT`` may have rolled back: a
    second rollback would hide the real error behind "no transaction is active")."""
    begin()
    try:
        yield
        commit()
    except BaseException:
        if in_transaction():
            rollback()
        raise
