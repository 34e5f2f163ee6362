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
    auth.add_user("admin@example.com", "admin-password", "pool-admin")
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
    user = auth.add_user("admin@example.com", "a-secret-password", "pool-admin")
    token, _ = auth.issue_token(user)
    store.add_server("https://pool", "root", "pool-secret-password", None, False, "p")
    dump = "\n".join(sqlite3.connect(str(tmp_path / "db.sqlite3")).iterdump())
    for secret in (token, "a-secret-password", "pool-secret-password"):
        assert secret not in dump
    assert store.list_servers(with_secrets=True)[0]["password"] == "pool-secret-password"
    assert "password" not in store.list_servers()[0]
    assert oct(os.stat(tmp_path / "secret.key").st_mode & 0o777) == "0o600"


def test_migrations_are_recorded(tmp_path):
    from xorest.store.migrations import MIGRATIONS

    SqliteStore(str(tmp_path / "db.sqlite3"))
    SqliteStore(str(tmp_path / "db.sqlite3"))  # idempotent
    version = sqlite3.connect(str(tmp_path / "db.sqlite3")).execute("PRAGMA user_version").fetchone()[0]
    assert version == len(MIGRATIONS)


def test_a_first_version_database_is_migrated_with_its_renewals_in_families(tmp_path):
    from xorest.store.migrations import MIGRATIONS

    path = str(tmp_path / "db.sqlite3")
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
    old.execute("INSERT INTO users VALUES ('u1', 'a@example.com', 'x', 1, 0)")
    old.execute("INSERT INTO tokens (id, token_hash, user_id, description, created_at, expires_at) "
                "VALUES ('t1', 'h1', 'u1', 'cli', 0, 9e9), ('t2', 'h2', 'u1', 'renewal of t1', 1, 9e9), "
                "('t3', 'h3', 'u1', 'other', 2, 9e9)")
    old.commit()
    old.close()
    store = SqliteStore(path)
    assert store.revoke_token("t2") == 2  # the renewal and the token it renewed
    assert [t["id"] for t in store.list_tokens() if t["revoked_at"] is None] == ["t3"]


def test_revoking_a_token_revokes_the_tokens_made_with_it(tmp_path):
    store = SqliteStore(str(tmp_path / "db.sqlite3"))
    auth = AuthService(store, config_module.load({"data_dir": str(tmp_path)}, environ={}))
    user = auth.add_user("admin@example.com", "admin-password", "pool-admin")
    parent, parent_row = auth.issue_token(user, 3600, "cli")
    child, child_row = auth.issue_token(user, 3600, "made with the parent", creator=parent_row)
    renewal, renewal_row = auth.issue_token(user, 3600, "the child's renewal", child_row["family_id"],
                                            creator=child_row)
    grandchild, _ = auth.issue_token(user, 3600, "made with the renewal", creator=renewal_row)
    sibling, sibling_row = auth.issue_token(user, 3600, "made with the parent too", creator=parent_row)
    # revoking a token made with another leaves its maker alone
    assert auth.revoke_token(sibling_row["id"]) == 1
    auth.authenticate(parent)
    # revoking the maker reaches everything made from it, through renewals too
    assert auth.revoke_token(parent) == 4
    for token in (parent, child, renewal, grandchild):
        with pytest.raises(Unauthorized):
            auth.authenticate(token)


def test_a_new_password_revokes_the_user_s_tokens_in_the_same_write(tmp_path):
    store = SqliteStore(str(tmp_path / "db.sqlite3"))
    auth = AuthService(store, config_module.load({"data_dir": str(tmp_path)}, environ={}))
    user = auth.add_user("user@example.com", "user-password", "read-only")
    tokens = [auth.issue_token(user, 3600, str(n))[0] for n in range(3)]
    assert store.set_password_hash(user["id"], "new-hash") == 3
    assert store.get_user(user["id"])["password_hash"] == "new-hash"
    for token in tokens:
        with pytest.raises(Unauthorized):
            auth.authenticate(token)
    assert store.set_password_hash("no-such-user", "hash") is None


def test_revoking_any_token_of_a_family_revokes_them_all(tmp_path):
    store = SqliteStore(str(tmp_path / "db.sqlite3"))
    auth = AuthService(store, config_module.load({"data_dir": str(tmp_path)}, environ={}))
    user = auth.add_user("admin@example.com", "admin-password", "pool-admin")
    first, row = auth.issue_token(user, 3600, "cli")
    second, renewal = auth.issue_token(user, 3600, "renewal", row["family_id"])
    third, _ = auth.issue_token(user, 3600, "renewal of the renewal", renewal["family_id"])
    other, _ = auth.issue_token(user, 3600, "unrelated")
    assert auth.revoke_token(first) == 3  # by value
    for token in (first, second, third):
        with pytest.raises(Unauthorized):
            auth.authenticate(token)
    auth.authenticate(other)
    assert auth.set_password("admin@example.com", "a-new-password") == 1
    with pytest.raises(Unauthorized):
        auth.authenticate(other)


def test_concurrent_attempts_are_counted_before_any_is_checked(tmp_path):
    """40 threads guess at once: only login_max_failures of them get a password check."""
    from xorest.errors import TooManyRequests

    store = SqliteStore(str(tmp_path / "db.sqlite3"))
    auth = AuthService(store, config_module.load({"data_dir": str(tmp_path), "login_delay_base": 0}, environ={}))
    auth.add_user("admin@example.com", "admin-password", "pool-admin")
    outcomes = []
    barrier = threading.Barrier(40)

    def guess():
        barrier.wait()
        try:
            auth.check_password("admin@example.com", "wrong-password", "10.0.0.1")
            outcomes.append("accepted")
        except Unauthorized:
            outcomes.append("checked")
        except TooManyRequests as exc:
            assert exc.data["retry_after"] >= 1
            outcomes.append("refused")

    threads = [threading.Thread(target=guess) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("checked") == auth.config.login_max_failures
    assert outcomes.count("refused") == 40 - auth.config.login_max_failures
    with pytest.raises(TooManyRequests):  # locked out, even with the right password
        auth.check_password("admin@example.com", "admin-password", "10.0.0.1")
    assert auth.check_password("admin@example.com", "admin-password", "10.0.0.2")  # another address


def test_a_failure_makes_the_next_attempt_wait_without_sleeping(tmp_path):
    from xorest.errors import TooManyRequests

    store = SqliteStore(str(tmp_path / "db.sqlite3"))
    auth = AuthService(store, config_module.load({"data_dir": str(tmp_path), "login_delay_base": 30},
                                                 environ={}))
    auth.add_user("admin@example.com", "admin-password", "pool-admin")
    with pytest.raises(Unauthorized):
        auth.check_password("admin@example.com", "wrong", "10.0.0.1")
    with pytest.raises(TooManyRequests) as refused:
        auth.check_password("admin@example.com", "admin-password", "10.0.0.1")
    assert 29 <= refused.value.data["retry_after"] <= 30
    # successful logins give their attempt back: a script using Basic auth is never capped
    for _ in range(3 * auth.config.login_max_failures * 10):
        store.record_login_success([], [f"address:10.0.0.9"])
    for _ in range(auth.config.login_max_failures * 10 + 5):
        assert auth.check_password("admin@example.com", "admin-password", "10.0.0.9")


def test_files_are_private(tmp_path):
    data = tmp_path / "data"
    store = SqliteStore(str(data / "xorest.sqlite3"), secret_path=str(data))
    store.add_user("a@example.com", "x", "pool-admin")
    assert oct(os.stat(data).st_mode & 0o777) == "0o700"
    for name in ("xorest.sqlite3", "xorest.sqlite3-wal", "xorest.sqlite3-shm", "secret.key"):
        assert oct(os.stat(data / name).st_mode & 0o777) == "0o600", name
    os.chmod(data / "xorest.sqlite3", 0o644)  # made by an older version
    SqliteStore(str(data / "xorest.sqlite3"), secret_path=str(data))
    assert oct(os.stat(data / "xorest.sqlite3").st_mode & 0o777) == "0o600"


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


def _task_writer(path, prefix, count):
    store = SqliteStore(path)
    for number in range(count):
        store.add_task(f"{prefix}{number:04d}", "host:1:0", "pending", "vm", "{}", 1.0)
        store.update_task(f"{prefix}{number:04d}", body='{"done": true}', status="success")


def test_the_task_log_orders_changes_across_processes(tmp_path):
    path = str(tmp_path / "db.sqlite3")
    SqliteStore(path)
    processes = [multiprocessing.Process(target=_task_writer, args=(path, prefix, 25)) for prefix in "ab"]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    store = SqliteStore(path)
    rows, removed, last = store.task_changes(0)
    assert len(rows) == 50 and removed == [] and last == 100  # one number per change, none twice
    assert len({row["seq"] for row in rows}) == 50 and all(row["status"] == "success" for row in rows)
    assert store.task_changes(last) == ([], [], last)
    store.add_task("pending", "host:1:0", "pending", "vm2", "{}", 2.0)
    assert store.update_task("pending", status="success", only_pending=True)
    assert not store.update_task("pending", status="failure", only_pending=True)  # it ended: left as it is
    assert not store.request_task_abort("pending", 3.0)
    store.add_task("running", "host:1:0", "pending", "vm2", "{}", 2.0)
    assert store.request_task_abort("running", 3.0) and store.get_task("running")["abort_requested_at"] == 3.0
    assert [r["id"] for r in store.list_tasks(object_id="vm2")] == ["pending", "running"]
    assert store.delete_tasks(["running", "pending"]) == ["pending"]  # a running task stays
    assert len(store.delete_tasks(keep=10)) == 40
    rows, removed, _ = store.task_changes(last)
    assert "pending" in removed and len(removed) == 41


def test_pool_writes_keep_the_latest_token(tmp_path):
    store = SqliteStore(str(tmp_path / "db.sqlite3"))
    store.note_pool_write("s", "00000000000000000009,00000000000000000000")
    store.note_pool_write("s", "00000000000000000007,00000000000000000000")  # noted late: the later write stays
    token, written_at = store.pool_writes()["s"]
    assert token.startswith("00000000000000000009")
    store.forget_pool_write("s", "00000000000000000001,00000000000000000000")  # not that token: kept
    assert "s" in store.pool_writes()
    store.forget_pool_write("s", token)
    assert store.pool_writes() == {}
    server = store.add_server("https://pool", "root", "secret", None, False, "")
    assert store.list_servers()[0]["enabled"] is True
    assert store.set_server_enabled(server, False) and store.list_servers()[0]["enabled"] is False
    assert not store.set_server_enabled("nope", True)
