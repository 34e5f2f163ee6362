"""The SQLite store under concurrency, secrets at rest, migrations; configuration loading."""
import multiprocessing
import os
import sqlite3
import threading

import pytest

from xorest import config as config_module
from xorest.errors import ConfigError, Unauthorized
from xorest.services.auth import AuthService
from xorest.store.sqlite import SqliteStore


def _worker(path, email, rounds, queue):
    store = SqliteStore(path)
    auth = AuthService(store, config_module.load({"data_dir": os.path.dirname(path)}, environ={}))
    user = store.get_user(email)
    errors, created = [], 0

    def run():
        nonlocal created
        for _ in range(rounds):
            try:
                token, row = auth.issue_token(user, 3600, "concurrency")
                assert auth.authenticate(token)[1]["id"] == row["id"]
                auth.revoke_token(row["id"])
                try:
                    auth.authenticate(token)
                    errors.append("revoked token accepted")
                except Unauthorized:
                    pass
                created += 1
            except Exception as exc:  # "database is locked" would land here
                errors.append(repr(exc))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put((created, errors))


def test_many_processes_and_threads_share_the_store(tmp_path):
    path = str(tmp_path / "xorest.sqlite3")
    store = SqliteStore(path)
    auth = AuthService(store, config_module.load({"data_dir": str(tmp_path)}, environ={}))
    auth.add_user("admin@example.com", "admin-password", True)
    queue = multiprocessing.get_context("fork").Queue()
    procs = [multiprocessing.get_context("fork").Process(target=_worker, args=(path, "admin@example.com", 15, queue))
             for _ in range(4)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    assert all(not errors for _, errors in results), results
    assert sum(created for created, _ in results) == 4 * 8 * 15
    assert len(store.list_tokens()) == 4 * 8 * 15  # nothing lost


def test_secrets_at_rest(tmp_path):
    store = SqliteStore(str(tmp_path / "db.sqlite3"))
    auth = AuthService(store, config_module.load({"data_dir": str(tmp_path)}, environ={}))
    user = auth.add_user("admin@example.com", "a-secret-password", True)
    token, _ = auth.issue_token(user)
    store.add_server("https://pool", "root", "pool-secret-password", None, False, "p")
    dump = "\n".join(sqlite3.connect(str(tmp_path / "db.sqlite3")).iterdump())
    for secret in (token, "a-secret-password", "pool-secret-password"):
        assert secret not in dump
    assert store.list_servers(with_secrets=True)[0]["password"] == "pool-secret-password"
    assert "password" not in store.list_servers()[0]
    assert oct(os.stat(tmp_path / "secret.key").st_mode & 0o777) == "0o600"


def test_migrations_are_recorded(tmp_path):
    SqliteStore(str(tmp_path / "db.sqlite3"))
    SqliteStore(str(tmp_path / "db.sqlite3"))  # idempotent
    version = sqlite3.connect(str(tmp_path / "db.sqlite3")).execute("PRAGMA user_version").fetchone()[0]
    assert version == 1


def test_config_precedence_and_validation(tmp_path):
    path = tmp_path / "xorest.conf"
    path.write_text("TOKEN_TTL = 7d\nlog_level = DEBUG  # comment\n")
    config = config_module.load({"log_level": "WARNING"}, environ={"XOREST_TOKEN_TTL": "2d",
                                                                  "XOREST_CONFIG": str(path)})
    assert config.token_ttl == 2 * 86400 and config.log_level == "WARNING"
    assert config_module.load(environ={"XOREST_CONFIG": str(path)}).token_ttl == 7 * 86400
    with pytest.raises(ConfigError, match="XOREST_TOKEN_TTL"):
        config_module.load(environ={"XOREST_TOKEN_TTL": "soon"})
    with pytest.raises(ConfigError, match="unknown setting"):
        config_module.load({"nope": 1}, environ={})
    with pytest.raises(ConfigError, match="COMPRESSION"):
        config_module.load({"compression": "fast"}, environ={})
    assert config_module.load({"trusted_proxies": "127.0.0.1, ::1"}, environ={}).trusted_proxies == (
        "127.0.0.1", "::1")
