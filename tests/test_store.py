"""The store on both backends (SQLite, and PostgreSQL on a throwaway server): concurrency
across threads and processes, secrets at rest, migrations, the shared key; SQLite's files;
configuration loading."""
import dataclasses
import json
import multiprocessing
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time

import pytest

from xorest import config as config_module
from xorest.errors import ConfigError, StoreUnavailable, TooManyRequests, Unauthorized
from xorest.services.auth import AuthService
from xorest.store import open_store
from xorest.store.migrations import MIGRATIONS, migrate
from xorest.store.sql import SqlStore
from xorest.store.sqlite import SqliteStore

from .postgres import server_binaries

FORK = multiprocessing.get_context("fork")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """An instance's configuration on one backend: each ``open_store(backend)`` is one more
    store on the same database (another process's, another instance's)."""
    mapping = {"data_dir": str(tmp_path / "data")}
    if request.param == "postgres":
        mapping["database_url"] = request.getfixturevalue("postgres_url")
    return config_module.load(mapping, environ={})


def _auth(config, **settings):
    store = open_store(config)
    return store, AuthService(store, dataclasses.replace(config, **settings))


def _dump(config):
    """Everything the database holds, as text (what a stolen backup shows)."""
    if config.database_url:
        return subprocess.run([os.path.join(server_binaries(), "pg_dump"), "--no-owner", config.database_url],
                              capture_output=True, text=True, check=True, timeout=60).stdout
    return "\n".join(sqlite3.connect(config.database_path).iterdump())


def _in_processes(target, args_list, timeout=180):
    """Run ``target(*args, queue)`` in forked processes; their results, in no order."""
    queue = FORK.Queue()
    procs = [FORK.Process(target=target, args=(*args, queue)) for args in args_list]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=timeout) for _ in procs]
    for proc in procs:
        proc.join(30)
    return results


def _token_worker(config, email, rounds, queue):
    store, auth = _auth(config)
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
            except Exception as exc:  # "database is locked", a deadlock, would land here
                errors.append(repr(exc))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put((created, errors))


def test_many_processes_and_threads_share_the_store(backend):
    store, auth = _auth(backend)
    auth.add_user("admin@example.com", "admin-password", "pool-admin")
    results = _in_processes(_token_worker, [(backend, "admin@example.com", 15)] * 4)
    assert all(not errors for _, errors in results), results
    assert sum(created for created, _ in results) == 4 * 8 * 15
    assert len(store.list_tokens()) == 4 * 8 * 15  # nothing lost
    assert store.get_user("ADMIN@example.com")["email"] == "admin@example.com"  # the parent's store still works


def test_secrets_at_rest(backend):
    store, auth = _auth(backend)
    user = auth.add_user("admin@example.com", "a-secret-password", "pool-admin")
    token, _ = auth.issue_token(user)
    store.add_server("https://pool", "root", "pool-secret-password", None, False, "p")
    dump = _dump(backend)
    assert "https://pool" in dump  # the dump is complete...
    for secret in (token, "a-secret-password", "pool-secret-password"):
        assert secret not in dump  # ...and holds no secret
    assert store.list_servers(with_secrets=True)[0]["password"] == "pool-secret-password"
    assert "password" not in store.list_servers()[0]
    assert oct(os.stat(os.path.join(backend.data_dir, "secret.key")).st_mode & 0o777) == "0o600"


def test_instances_sharing_a_database_need_the_same_key(backend, tmp_path):
    store = open_store(backend)
    store.add_server("https://pool", "root", "pool-secret-password", None, False, "p")
    other = dataclasses.replace(backend, data_dir=str(tmp_path / "other"), database=backend.database_path)
    with pytest.raises(ConfigError, match="same secret.key"):
        open_store(other)  # a key of its own: refused before it fails to decrypt anything
    shutil.copy(os.path.join(backend.data_dir, "secret.key"), os.path.join(other.data_dir, "secret.key"))
    assert open_store(other).list_servers(with_secrets=True)[0]["password"] == "pool-secret-password"


def _schema_version(store):
    with store._transaction() as conn:
        return store._schema_version(conn)


def test_migrations_are_recorded(backend):
    store = open_store(backend)
    open_store(backend)  # idempotent
    assert _schema_version(store) == len(MIGRATIONS)


def _opener(config, barrier, queue):
    barrier.wait()
    try:
        store = open_store(config)
        queue.put(_schema_version(store))
    except Exception as exc:
        queue.put(repr(exc))


def test_instances_starting_at_once_migrate_one_after_the_other(backend):
    """Six processes open a new database at the same moment: each finds it migrated, once."""
    barrier = FORK.Barrier(6)
    assert _in_processes(_opener, [(backend, barrier)] * 6) == [len(MIGRATIONS)] * 6
    assert len(open_store(backend).list_users()) == 0


def test_a_first_version_database_is_migrated_with_its_renewals_in_families(backend, monkeypatch):
    with monkeypatch.context() as patch:  # the first release's schema
        patch.setattr(SqlStore, "_open", lambda store: migrate(store, target=1))
        old = open_store(backend)
    assert _schema_version(old) == 1
    with old._transaction() as conn:
        conn.execute("INSERT INTO users VALUES ('u1', 'a@example.com', 'x', 1, 0)")
        conn.execute("INSERT INTO tokens (id, token_hash, user_id, description, created_at, expires_at) "
                     "VALUES ('t1', 'h1', 'u1', 'cli', 0, 9e9), ('t2', 'h2', 'u1', 'renewal of t1', 1, 9e9), "
                     "('t3', 'h3', 'u1', 'other', 2, 9e9)")
    store = open_store(backend)
    assert store.get_user("u1")["role"] == "pool-admin"
    assert store.revoke_token("t2") == 2  # the renewal and the token it renewed
    assert [t["id"] for t in store.list_tokens() if t["revoked_at"] is None] == ["t3"]


def test_revoking_a_token_revokes_the_tokens_made_with_it(backend):
    store, auth = _auth(backend)
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


def test_a_new_password_revokes_the_user_s_tokens_in_the_same_write(backend):
    store, auth = _auth(backend)
    user = auth.add_user("user@example.com", "user-password", "read-only")
    tokens = [auth.issue_token(user, 3600, str(n))[0] for n in range(3)]
    assert store.set_password_hash(user["id"], "new-hash") == 3
    assert store.get_user(user["id"])["password_hash"] == "new-hash"
    for token in tokens:
        with pytest.raises(Unauthorized):
            auth.authenticate(token)
    assert store.set_password_hash("no-such-user", "hash") is None


def test_revoking_any_token_of_a_family_revokes_them_all(backend):
    store, auth = _auth(backend)
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


def test_emails_are_unique_whatever_their_case(backend):
    store, auth = _auth(backend)
    user = auth.add_user("Admin@Example.com", "admin-password", "pool-admin")
    assert store.add_user("admin@example.COM", "x", None) is None
    assert store.get_user("ADMIN@example.com")["id"] == user["id"]
    other = store.add_user("other@example.com", "x", None)
    assert store.update_user(other["id"], email="admin@EXAMPLE.com") is None  # taken
    assert store.update_user(other["id"], role="read-only")["role"] == "read-only"


def _guess(auth, outcomes, barrier):
    barrier.wait()
    try:
        auth.check_password("admin@example.com", "wrong-password", "10.0.0.1")
        outcomes.append("accepted")
    except Unauthorized:
        outcomes.append("checked")
    except TooManyRequests as exc:
        outcomes.append("refused" if exc.data["retry_after"] >= 1 else "refused without a wait")


def test_concurrent_attempts_are_counted_before_any_is_checked(backend):
    """40 threads guess at once: only login_max_failures of them get a password check."""
    store, auth = _auth(backend, login_delay_base=0)
    auth.add_user("admin@example.com", "admin-password", "pool-admin")
    outcomes = []
    barrier = threading.Barrier(40)
    threads = [threading.Thread(target=_guess, args=(auth, outcomes, barrier)) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("checked") == auth.config.login_max_failures
    assert outcomes.count("refused") == 40 - auth.config.login_max_failures
    with pytest.raises(TooManyRequests):  # locked out, even with the right password
        auth.check_password("admin@example.com", "admin-password", "10.0.0.1")
    assert auth.check_password("admin@example.com", "admin-password", "10.0.0.2")  # another address


def _guesser(config, barrier, queue):
    _, auth = _auth(config, login_delay_base=0)
    outcomes = []
    threads = [threading.Thread(target=_guess, args=(auth, outcomes, barrier)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(outcomes)


def test_attempts_from_several_instances_are_counted_once(backend):
    """5 processes of 8 threads (instances with their own connections) guess at once."""
    _, auth = _auth(backend)
    auth.add_user("admin@example.com", "admin-password", "pool-admin")
    barrier = FORK.Barrier(40)
    outcomes = sum(_in_processes(_guesser, [(backend, barrier)] * 5), [])
    assert len(outcomes) == 40
    assert outcomes.count("checked") == backend.login_max_failures
    assert outcomes.count("refused") == 40 - backend.login_max_failures


def test_a_failure_makes_the_next_attempt_wait_without_sleeping(backend):
    store, auth = _auth(backend, login_delay_base=30)
    auth.add_user("admin@example.com", "admin-password", "pool-admin")
    with pytest.raises(Unauthorized):
        auth.check_password("admin@example.com", "wrong", "10.0.0.1")
    with pytest.raises(TooManyRequests) as refused:
        auth.check_password("admin@example.com", "admin-password", "10.0.0.1")
    assert 29 <= refused.value.data["retry_after"] <= 30
    # successful logins give their attempt back: a script using Basic auth is never capped
    for _ in range(3 * auth.config.login_max_failures * 10):
        store.record_login_success([], ["address:10.0.0.9"])
    for _ in range(auth.config.login_max_failures * 10 + 5):
        assert auth.check_password("admin@example.com", "admin-password", "10.0.0.9")


def test_files_are_private(tmp_path):
    data = tmp_path / "data"
    store = SqliteStore(str(data / "xorest.sqlite3"), secret_path=str(data))
    store.add_user("a@example.com", "x", "pool-admin")
    assert oct(os.stat(data).st_mode & 0o777) == "0o700"
    for name in ("xorest.sqlite3", "xorest.sqlite3-wal", "xorest.sqlite3-shm", "secret.key"):
        assert oct(os.stat(data / name).st_mode & 0o777) == "0o600", name
    for name in ("xorest.sqlite3", "secret.key"):  # made by an older version, or by hand
        os.chmod(data / name, 0o644)
    SqliteStore(str(data / "xorest.sqlite3"), secret_path=str(data))
    for name in ("xorest.sqlite3", "secret.key"):
        assert oct(os.stat(data / name).st_mode & 0o777) == "0o600", name


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
    with pytest.raises(ConfigError, match="XOREST_DATABASE_URL"):
        config_module.load({"database_url": "mysql://db/xorest"}, environ={})
    assert config_module.load({"trusted_proxies": "127.0.0.1, ::1"}, environ={}).trusted_proxies == (
        "127.0.0.1", "::1")


def _task_writer(config, prefix, count, queue):
    store = open_store(config)
    for number in range(count):
        store.add_task(f"{prefix}{number:04d}", "host:1:0", "pending", "vm", "{}", 1.0)
        store.update_task(f"{prefix}{number:04d}", body='{"done": true}', status="success")
    queue.put(prefix)


def test_the_task_log_orders_changes_across_processes(backend):
    open_store(backend)
    _in_processes(_task_writer, [(backend, prefix, 25) for prefix in "ab"])
    store = open_store(backend)
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


def test_a_watcher_misses_no_change_while_processes_write(backend):
    """A watcher asks for the changes after the last number it saw, over and over, while
    three processes add and end tasks: what it pieced together is the log's final state
    (a number given to a change that commits after a later one would be skipped)."""
    store = open_store(backend)
    seen, since = {}, 0
    queue = FORK.Queue()
    procs = [FORK.Process(target=_task_writer, args=(backend, prefix, 40, queue)) for prefix in "abc"]
    for proc in procs:
        proc.start()
    running = len(procs)
    while running:
        rows, removed, since = store.task_changes(since)
        seen.update((row["id"], row["status"]) for row in rows)
        running = sum(proc.is_alive() for proc in procs)
    for proc in procs:
        proc.join(30)
    rows, _, since = store.task_changes(since)
    seen.update((row["id"], row["status"]) for row in rows)
    assert seen == {row["id"]: row["status"] for row in store.list_tasks()}
    assert len(seen) == 120 and set(seen.values()) == {"success"} and since == 240


def test_pool_writes_keep_the_latest_token(backend):
    store = open_store(backend)
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


def test_machines_alive_keep_their_latest_note(backend):
    store, another = open_store(backend), open_store(backend)  # two instances on one database
    store.note_host_alive("a", 100.0)
    another.note_host_alive("a", 90.0)  # noted late: the latest stays
    another.note_host_alive("b", 50.0)
    assert store.hosts_alive() == another.hosts_alive() == {"a": 100.0, "b": 50.0}


def test_a_silent_machine_s_pending_tasks_are_interrupted(backend):
    """A pending task run by another machine is interrupted once that machine has been
    silent for long; not while it says it is alive, nor when it never did (unknown)."""
    from xorest.services.liveness import HOST_SILENCE, Heartbeat
    from xorest.services.tasks import TaskService

    store = open_store(backend)
    tasks = TaskService(store, None, backend)
    for task_id, host in (("t-alive", "alive"), ("t-silent", "silent"), ("t-unknown", "unknown")):
        body = json.dumps({"id": task_id, "properties": {"name": "a task"}, "start": 1000, "status": "pending",
                           "updatedAt": 1000, "progress": 0})
        store.add_task(task_id, f"{host}:4242:1", "pending", None, body, 1.0)
    store.note_host_alive("alive", time.time())
    store.note_host_alive("silent", time.time() - HOST_SILENCE - 1)
    assert tasks.get("t-alive")["status"] == "pending" and tasks.get("t-unknown")["status"] == "pending"
    assert {key: task["status"] for key, task in tasks.tasks().items()} == {
        "t-alive": "pending", "t-silent": "interrupted", "t-unknown": "pending"}
    assert store.get_task("t-silent")["status"] == "interrupted"  # written, for every instance
    beat = Heartbeat(store, interval=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while time.time() - store.hosts_alive().get(socket.gethostname(), 0) > 1:
            assert time.monotonic() < deadline, "this machine was never noted alive"
            time.sleep(0.05)
    finally:
        beat.stop()


def test_a_task_failing_right_after_an_abort_says_it_was_aborted(backend):
    """An abort from another process cancels the task's XAPI task at once; the failure that
    follows may come before the owner's next (throttled) look at the request: the ended
    task still records when the abort was asked."""
    from xorest.errors import Unavailable
    from xorest.services.tasks import TaskService

    store = open_store(backend)
    task = TaskService(store, None, backend).begin("REST API: a task")
    assert not task.aborted()  # looked just now: the next look is throttled
    assert open_store(backend).request_task_abort(task.id, time.time())  # another process
    task.fail(Unavailable("TASK_CANCELLED"))
    ended = json.loads(store.get_task(task.id)["body"])
    assert ended["status"] == "failure" and ended["abortionRequestedAt"] > 0


def test_audit_and_event_streams(backend):
    store = open_store(backend)
    for at in (1.0, 2.0, 3.0):
        store.add_audit({"at": at, "method": "GET", "path": f"/{at}", "status": 200})
    entries = store.list_audit(since=2.0, limit=5)
    assert [entry["path"] for entry in entries] == ["/2.0", "/3.0"] and entries[0]["id"] < entries[1]["id"]
    assert store.prune_audit(2.5) == 2 and len(store.list_audit()) == 1
    store.add_event_stream("e", "u", 1.0)
    store.set_subscription("e", "vms", "[]", None)
    store.set_subscription("e", "vms", '["name_label"]', "power_state:Running")  # replaced
    assert store.list_subscriptions("e") == [{"collection": "vms", "fields": '["name_label"]',
                                              "filter": "power_state:Running"}]
    assert store.remove_subscription("e", "vms") and not store.remove_subscription("e", "vms")
    store.touch_event_stream("e", 5.0)
    assert store.prune_event_streams(4.0) == 0 and store.get_event_stream("e")["seen_at"] == 5.0


# PostgreSQL only: what a server that goes away or refuses does to the store


def test_a_server_that_went_away_costs_one_answer(postgres_cluster, postgres_url, tmp_path):
    """Its connections dropped (a restart, a fail-over): one call at most is a 503, the
    next connect afresh; the password is in no message."""
    config = config_module.load({"data_dir": str(tmp_path), "database_url": postgres_url}, environ={})
    store = open_store(config)
    store.add_user("a@example.com", "x", None)
    barrier = threading.Barrier(4)
    threads = [threading.Thread(target=lambda: (barrier.wait(), store.list_users())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    postgres_cluster.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'xorest'")
    failures = 0
    for _ in range(3):
        try:
            assert store.get_user("a@example.com")
        except StoreUnavailable as exc:
            failures += 1
            assert postgres_cluster.password not in exc.message
    assert failures <= 1
    wrong = postgres_url.replace(postgres_cluster.password, "not-the-password")
    with pytest.raises(StoreUnavailable) as refused:
        open_store(dataclasses.replace(config, database_url=wrong))
    assert "password authentication failed" in refused.value.message and "not-the-password" not in refused.value.message
