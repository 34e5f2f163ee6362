"""SQLite backend: WAL mode, one connection per thread, parameterised SQL only.

Pool passwords must be usable to connect, so they are encrypted (Fernet) with a key kept
in a separate file of the data directory: a dump of the database alone reveals none.
The directory is created 0700 and the files 0600 (SQLite gives its -wal and -shm files
the database file's mode).
"""
import contextlib
import logging
import os
import sqlite3
import stat
import threading
import time
import uuid

from cryptography.fernet import Fernet

from ..config import private_directory
from . import Store, StoreUnavailable, login_wait
from .migrations import migrate

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10000


def _private_file(path):
    """Create ``path`` empty with mode 0600 if it is missing; tighten it if it is wider."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            log.warning("%s was readable by others (mode %o); now 0600", path, mode)
            os.chmod(path, 0o600)


@contextlib.contextmanager
def _unavailable(action):
    """SQLite's failures (disk full, unreadable file...) as :class:`StoreUnavailable`."""
    try:
        yield
    except sqlite3.IntegrityError:
        raise
    except sqlite3.Error as exc:
        log.error("the data store cannot %s: %s", action, exc)
        raise StoreUnavailable(f"the data store cannot {action}: {exc}") from None


def _key(folder):
    path = os.path.join(folder, "secret.key")
    try:
        with open(path, "rb") as fh:
            return fh.read().strip()
    except FileNotFoundError:
        key = Fernet.generate_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return key
    except FileExistsError:  # another process created it meanwhile
        return _key(folder)


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


class SqliteStore(Store):
    """Everything persistent in one SQLite file."""

    def __init__(self, path, secret_path=None):
        folder = os.path.dirname(os.path.abspath(path))
        private_directory(folder)
        if secret_path:
            private_directory(secret_path)
        self.path = path
        _private_file(path)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(path + suffix):
                _private_file(path + suffix)
        self._fernet = Fernet(_key(secret_path or folder))
        self._local = threading.local()
        with _unavailable("be opened"):
            migrate(self._connection())

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _query(self, sql, params=()):
        with _unavailable("be read"):
            return [dict(row) for row in self._connection().execute(sql, params)]

    def _one(self, sql, params=()):
        rows = self._query(sql, params)
        return rows[0] if rows else None

    @contextlib.contextmanager
    def _transaction(self):
        """One write transaction (``BEGIN IMMEDIATE``: writers queue, readers go on)."""
        with _unavailable("be written"):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (disk full) may have rolled back already: a second
                # rollback would hide the real error behind "no transaction is active".
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _write(self, sql, params=()):
        with self._transaction() as conn:
            return conn.execute(sql, params).rowcount

    # users -----------------------------------------------------------------

    def add_user(self, email, password_hash, role):
        user_id = uuid.uuid4().hex[:16]
        try:
            self._write("INSERT INTO users (id, email, password_hash, is_admin, role, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (user_id, email, password_hash, int(role == "pool-admin"), role, time.time()))
        except sqlite3.IntegrityError:
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
        except sqlite3.IntegrityError:
            return None
        return self.get_user(user_id)

    def get_user(self, key):
        return self._one("SELECT * FROM users WHERE id = ? OR email = ?", (key, key))

    def list_users(self):
        return self._query("SELECT * FROM users ORDER BY created_at")

    def remove_user(self, user_id):
        return self._write("DELETE FROM users WHERE id = ?", (user_id,)) > 0

    def set_password_hash(self, user_id, password_hash):
        with self._transaction() as conn:
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
            return self._query("SELECT * FROM tokens ORDER BY created_at")
        return self._query("SELECT * FROM tokens WHERE user_id = ? ORDER BY created_at", (user_id,))

    def revoke_token(self, token_id):
        return self._write(REVOKE_TREE, (time.time(), token_id))

    def revoke_user_tokens(self, user_id):
        return self._write("UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                           (time.time(), user_id))

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
        secret = self._fernet.encrypt(password.encode("utf-8")).decode("ascii")
        self._write("INSERT INTO servers (id, url, username, password_enc, ca_file, insecure, label, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (server_id, url, username, secret, ca_file, int(insecure), label, now, now))
        return server_id

    def list_servers(self, with_secrets=False):
        rows = self._query("SELECT * FROM servers ORDER BY created_at")
        for row in rows:
            secret = row.pop("password_enc")
            row["insecure"] = bool(row["insecure"])
            row["enabled"] = bool(row["enabled"])
            if with_secrets:
                row["password"] = self._fernet.decrypt(secret.encode("ascii")).decode("utf-8")
        return rows

    def remove_server(self, server_id):
        return self._write("DELETE FROM servers WHERE id = ?", (server_id,)) > 0

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

    def set_server_enabled(self, server_id, enabled):
        # updated_at changes too: running processes reconnect servers whose row changed
        return self._write("UPDATE servers SET enabled = ?, updated_at = ? WHERE id = ?",
                           (int(enabled), time.time(), server_id)) > 0

    # tasks ---------------------------------------------------------------------

    @staticmethod
    def _next_seq(conn):
        conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'task_seq'")
        return conn.execute("SELECT value FROM counters WHERE name = 'task_seq'").fetchone()[0]

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
        with _unavailable("be read"):
            conn = self._connection()
            # one read transaction: the rows, the removals and the last number agree
            conn.execute("BEGIN")
            try:
                rows = [dict(r) for r in conn.execute("SELECT * FROM tasks WHERE seq > ? ORDER BY seq", (since,))]
                removed = [r[0] for r in conn.execute("SELECT id FROM task_removals WHERE seq > ? ORDER BY seq",
                                                      (since,))]
                last = conn.execute("SELECT value FROM counters WHERE name = 'task_seq'").fetchone()[0]
            finally:
                conn.execute("COMMIT")
            return rows, removed, last

    def request_task_abort(self, task_id, when):
        return self._write("UPDATE tasks SET abort_requested_at = COALESCE(abort_requested_at, ?) "
                           "WHERE id = ? AND status = 'pending'", (when, task_id)) > 0

    def delete_tasks(self, task_ids=None, keep=None):
        with self._transaction() as conn:
            if task_ids is not None:
                marks = ",".join("?" * len(task_ids))
                rows = conn.execute(f"SELECT id FROM tasks WHERE status != 'pending' AND id IN ({marks})",
                                    list(task_ids)).fetchall() if task_ids else []
            else:
                rows = conn.execute("SELECT id FROM tasks WHERE status != 'pending' ORDER BY updated_at DESC "
                                    "LIMIT -1 OFFSET ?", (keep or 0,)).fetchall()
            ids = [r[0] for r in rows]
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
                    "ON CONFLICT(server_id) DO UPDATE SET token = MAX(token, excluded.token), "
                    "written_at = excluded.written_at", (server_id, token, time.time()))

    def pool_writes(self):
        return {row["server_id"]: (row["token"], row["written_at"])
                for row in self._query("SELECT server_id, token, written_at FROM pool_writes")}

    def forget_pool_write(self, server_id, token):
        self._write("DELETE FROM pool_writes WHERE server_id = ? AND token = ?", (server_id, token))

    # login throttling ----------------------------------------------------------

    def take_login_attempt(self, limits, now, window):
        with self._transaction() as conn:  # one writer at a time: the count holds across processes
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
            for key in keys:
                conn.execute("UPDATE login_failures SET failed_at = ?, last_at = ? WHERE key = ?", (now, now, key))

    def record_login_success(self, clear, release):
        with self._transaction() as conn:
            for key in clear:
                conn.execute("DELETE FROM login_failures WHERE key = ?", (key,))
            for key in release:
                conn.execute("UPDATE login_failures SET count = MAX(count - 1, 0) WHERE key = ?", (key,))
