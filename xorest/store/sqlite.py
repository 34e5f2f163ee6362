"""SQLite backend (the default, for one machine): WAL mode, one connection per thread.

Writers run one at a time (``BEGIN IMMEDIATE``), across threads, gunicorn workers and
processes on the same file: every read-then-write of :class:`~xorest.store.sql.SqlStore`
is atomic without further locks.  The directory is created 0700 and the files 0600
(SQLite gives its -wal and -shm files the database file's mode).
"""
import contextlib
import logging
import os
import sqlite3
import threading
import time

from ..config import private_directory
from . import StoreUnavailable
from .sql import LOCK_TIMEOUT, SqlStore, rolled_back_on_error, tighten

log = logging.getLogger(__name__)


def _private_file(path):
    """Create ``path`` empty with mode 0600 if it is missing; tighten it if it is wider."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        tighten(path)


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


def _dict_row(cursor, row):
    return {column[0]: value for column, value in zip(cursor.description, row)}


def _enter_wal(conn):
    """Switch a connection's database to WAL, retrying while others hold it: the switch
    needs the file to itself, and SQLite refuses it at once (no busy wait) when processes
    opening a new database at the same moment collide."""
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SqliteStore(SqlStore):
    """Everything persistent in one SQLite file."""

    IntegrityError = sqlite3.IntegrityError

    def __init__(self, path, secret_path=None):
        folder = os.path.dirname(os.path.abspath(path))
        private_directory(folder)
        self.path = path
        _private_file(path)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(path + suffix):
                _private_file(path + suffix)
        super().__init__(secret_path or folder)
        self._local = threading.local()
        with _unavailable("be opened"):
            self._open()

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT, isolation_level=None, check_same_thread=False)
            conn.row_factory = _dict_row
            conn.execute(f"PRAGMA busy_timeout={int(LOCK_TIMEOUT * 1000)}")
            _enter_wal(conn)
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextlib.contextmanager
    def _reading(self):
        with _unavailable("be read"):
            yield self._connection()

    @contextlib.contextmanager
    def _begun(self, begin, action):
        with _unavailable(action):
            conn = self._connection()
            with rolled_back_on_error(lambda: conn.execute(begin), lambda: conn.execute("COMMIT"),
                                      lambda: conn.execute("ROLLBACK"), lambda: conn.in_transaction):
                yield conn

    def _transaction(self):
        """One write transaction (``BEGIN IMMEDIATE``: writers queue, readers go on)."""
        return self._begun("BEGIN IMMEDIATE", "be written")

    def _snapshot(self):
        return self._begun("BEGIN", "be read")

    def _migration(self):
        return self._transaction()

    def _schema_version(self, conn):
        return conn.execute("PRAGMA user_version").fetchone()["user_version"]

    def _set_schema_version(self, conn, number):
        conn.execute(f"PRAGMA user_version = {int(number)}")
