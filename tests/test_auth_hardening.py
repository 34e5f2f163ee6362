"""Credentials under attack and under accident, through gunicorn as ``xorest serve`` runs it:
throttling that costs the attacker (never a thread), revocation that reaches renewals, a
full disk that fails closed, private files, and the CLI a new admin uses."""
import concurrent.futures
import json
import os
import shutil
import subprocess
import time
import uuid

import pytest
import requests

from .conftest import PYTHON, ROOT, Gateway


def _login(gw, email, password, **kw):
    return requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", auth=(email, password), json={},
                         timeout=kw.pop("timeout", 30), **kw)


def test_failed_logins_never_hold_a_thread(sim, tmp_path):
    gw = Gateway(tmp_path, sim.url, workers=1, threads=2, env={"XOREST_LOGIN_DELAY_BASE": "0.5",
                                                                "XOREST_LOGIN_MAX_FAILURES": "3"})
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            guesses = [pool.submit(_login, gw, "admin@example.com", f"guess-{n}", timeout=10) for n in range(70)]
            # while 70 guesses pour in on a worker with two threads, an admin is still served
            assert gw.get("/rest/v0/hosts", timeout=10).status_code == 200
            statuses = [guess.result().status_code for guess in guesses]
        assert set(statuses) <= {401, 429} and statuses.count(401) <= 3
        refused = _login(gw, "admin@example.com", "admin-password")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        # made-up emails are no way around it: the client's address is counted over all accounts
        sprayed = [_login(gw, f"{uuid.uuid4().hex}@example.com", "guess").status_code for _ in range(40)]
        assert sprayed.count(401) <= 3 * 10 and sprayed[-1] == 429
        assert gw.get("/rest/v0/hosts").status_code == 200  # tokens are not affected
    finally:
        gw.stop()


def test_parallel_guesses_are_counted_before_they_are_checked(sim, tmp_path):
    gw = Gateway(tmp_path, sim.url, env={"XOREST_LOGIN_DELAY_BASE": "0"})
    try:
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            statuses = list(pool.map(lambda n: _login(gw, "user@example.com", f"wrong-{n}").status_code, range(40)))
        assert statuses.count(401) == 10 and statuses.count(429) == 30, statuses  # login_max_failures = 10
        assert _login(gw, "user@example.com", "user-password").status_code == 429  # locked out
    finally:
        gw.stop()


def test_revocation_reaches_renewals_and_password_changes(gateway):
    cookies_of = lambda token: {"authenticationToken": token}  # noqa: E731
    token = gateway.cli("token", "create", "admin@example.com", "--expires", "62s").strip()
    time.sleep(2.5)  # past the (test) renewal threshold
    read = gateway.get("/rest/v0/hosts", cookies=cookies_of(token))
    renewal = read.cookies["authenticationToken"]
    assert renewal != token and gateway.get("/rest/v0/hosts", cookies=cookies_of(renewal)).status_code == 200
    # revoking the original (a stolen copy, say) ends its renewal too; the revocation renews nothing
    # (by the token itself, as Xen Orchestra's clients name tokens)
    revoke = requests.delete(f"{gateway.url}/rest/v0/users/me/authentication_tokens/{token}",
                             cookies=cookies_of(token), timeout=10)
    assert revoke.status_code == 204 and "Set-Cookie" not in revoke.headers
    assert token not in gateway.proc.output()  # the access log names the path without the token
    for value in (token, renewal):
        assert gateway.get("/rest/v0/hosts", cookies=cookies_of(value)).status_code == 401
    # no write renews: a token past half-life used for a POST gets no successor
    token = gateway.cli("token", "create", "admin@example.com", "--expires", "62s").strip()
    time.sleep(2.5)
    created = requests.post(gateway.url + "/rest/v0/users/me/authentication_tokens", json={},
                            cookies=cookies_of(token), timeout=10)
    assert created.status_code == 201 and "Set-Cookie" not in created.headers
    # a password change revokes every token of the user, and says so
    user_token = gateway.cli("token", "create", "user@example.com").strip()
    changed = gateway.cli("user", "passwd", "user@example.com", "--password-stdin", input="user-password\n",
                          check=False)
    assert changed.returncode == 0 and "revoked" in changed.stderr, changed.stderr
    assert gateway.get("/rest/v0/hosts", cookies=cookies_of(user_token)).status_code == 401


def test_only_the_token_s_role_may_revoke_other_users_tokens(gateway):
    """Revoking is decided on what the request may do (the token's role), not on its user's:
    a read-only token of an admin revokes its own tokens only."""
    cookies_of = lambda token: {"authenticationToken": token}  # noqa: E731
    victim = gateway.cli("token", "create", "user@example.com").strip()
    victim_id = gateway.get("/rest/v0/users/user@example.com/authentication_tokens").json()[-1]["id"]
    reader = gateway.cli("token", "create", "admin@example.com", "--role", "read-only").strip()
    for user in ("me", "user@example.com"):
        answer = requests.delete(f"{gateway.url}/rest/v0/users/{user}/authentication_tokens/{victim_id}",
                                 cookies=cookies_of(reader), timeout=10)
        assert answer.status_code in (403, 404), answer.text
    valid = "/rest/v0/users/me/authentication_tokens"  # the user has no role: its own tokens only
    assert gateway.get(valid, cookies=cookies_of(victim)).status_code == 200
    # a pool-admin's token revokes it, named under its owner...
    wrong_owner = requests.delete(f"{gateway.url}/rest/v0/users/me/authentication_tokens/{victim_id}",
                                  cookies=cookies_of(gateway.token), timeout=10)
    assert wrong_owner.status_code == 404  # not the admin's own token
    revoked = requests.delete(f"{gateway.url}/rest/v0/users/user@example.com/authentication_tokens/{victim_id}",
                              cookies=cookies_of(gateway.token), timeout=10)
    assert revoked.status_code == 204
    assert gateway.get(valid, cookies=cookies_of(victim)).status_code == 401


def test_tokens_made_with_a_token_go_with_it(gateway):
    """A stolen token cannot outlive its revocation by making another first."""
    cookies_of = lambda token: {"authenticationToken": token}  # noqa: E731
    stolen = gateway.cli("token", "create", "admin@example.com").strip()
    made = requests.post(gateway.url + "/rest/v0/users/me/authentication_tokens", json={"expiresIn": "1d"},
                         cookies=cookies_of(stolen), timeout=10).json()["token"]["id"]
    again = requests.post(gateway.url + "/rest/v0/users/me/authentication_tokens", json={},
                          cookies=cookies_of(made), timeout=10).json()["token"]["id"]
    assert gateway.get("/rest/v0/hosts", cookies=cookies_of(again)).status_code == 200
    gateway.cli("token", "revoke", stolen)
    for token in (stolen, made, again):
        assert gateway.get("/rest/v0/hosts", cookies=cookies_of(token)).status_code == 401


def test_a_password_changed_over_rest_revokes_the_user_s_tokens(gateway):
    users = gateway.get("/rest/v0/users?fields=email").json()
    user = next(u for u in users if u["email"] == "user@example.com")
    token = gateway.cli("token", "create", "user@example.com").strip()
    valid = "/rest/v0/users/me/authentication_tokens"
    assert gateway.get(valid, cookies={"authenticationToken": token}).status_code == 200
    changed = requests.patch(gateway.url + user["href"], json={"password": "another-password"},
                             cookies={"authenticationToken": gateway.token}, timeout=10)
    assert changed.status_code == 204
    assert gateway.get(valid, cookies={"authenticationToken": token}).status_code == 401
    assert _login(gateway, "user@example.com", "another-password").status_code == 201
    requests.patch(gateway.url + user["href"], json={"password": "user-password"},
                   cookies={"authenticationToken": gateway.token}, timeout=10)


def _mount_tmpfs(path, size):
    path.mkdir()
    if os.geteuid() == 0 and shutil.which("mount"):
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                                capture_output=True, text=True)
        if result.returncode == 0:
            return True
    return False


def _fill(path):
    with open(path / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (64 << 10))
                fh.flush()
        except OSError:
            pass


def test_a_full_data_disk_fails_closed(sim, tmp_path):
    disk = tmp_path / "small-disk"
    if not _mount_tmpfs(disk, "8m"):
        pytest.skip("a small filesystem needs root and mount (tmpfs)")
    try:
        gw = Gateway(tmp_path, sim.url, workers=1, env={"XOREST_DATA_DIR": str(disk / "data")})
        try:
            token = gw.cli("token", "create", "admin@example.com", "--expires", "2d").strip()  # never used yet
            _fill(disk)
            # a token works: recording when it was last used is bookkeeping
            assert gw.get("/rest/v0/hosts", cookies={"authenticationToken": token}).status_code == 200
            # a password attempt that cannot be counted is not checked: 503, never 401 or 500
            for password in ("wrong-password", "admin-password"):
                answer = _login(gw, "admin@example.com", password)
                assert answer.status_code == 503 and "data store" in answer.json()["error"], answer.text
            created = requests.post(gw.url + "/rest/v0/users/me/authentication_tokens", json={}, timeout=10,
                                    cookies={"authenticationToken": token})
            assert created.status_code == 503 and created.json()["error"]
            assert "internal error" not in gw.proc.output() and "cannot rollback" not in gw.proc.output()
            os.unlink(disk / "filler")
            assert _login(gw, "admin@example.com", "wrong-password").status_code == 401  # counted again
            assert _login(gw, "admin@example.com", "admin-password").status_code == 429  # ...and throttled
        finally:
            gw.stop()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _xorest(args, cwd, env=None, stdin=None):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("XOREST_")}, **(env or {})}
    return subprocess.run([PYTHON, "-m", "xorest", *args], cwd=cwd, env=env, input=stdin, capture_output=True,
                          text=True, timeout=60)


def test_the_data_directory_is_private(tmp_path):
    os.umask(0o022)  # as on most systems
    added = _xorest(["user", "add", "admin@example.com", "--admin", "--password-stdin"], tmp_path,
                    stdin="admin-password\n")
    assert added.returncode == 0, added.stderr
    data = tmp_path / "var"
    assert oct(os.stat(data).st_mode & 0o777) == "0o700"
    files = [name for name in os.listdir(data)]
    assert "xorest.sqlite3" in files and "secret.key" in files
    for name in files:
        assert oct(os.stat(data / name).st_mode & 0o777) == "0o600", name


def test_token_commands_name_things_as_people_do(gateway):
    created = gateway.cli("token", "create", "user@example.com", "--description", "monitoring", check=False)
    token = created.stdout.strip()
    token_id = created.stderr.split("token id ")[1].split(",")[0]
    listed = gateway.cli("token", "list")
    header, *rows = listed.splitlines()
    assert header.split()[:3] == ["ID", "USER", "STATE"]
    mine = next(row for row in rows if row.startswith(token_id))
    assert "user@example.com" in mine and "active" in mine and "monitoring" in mine
    records = [json.loads(line) for line in gateway.cli("token", "list", "user@example.com", "--json").splitlines()]
    assert {r["user"] for r in records} == {"user@example.com"} and token_id in {r["id"] for r in records}
    assert gateway.get("/rest/v0/users/me/authentication_tokens", cookies={"authenticationToken": token}).ok
    revoked = gateway.cli("token", "revoke", token, check=False)  # the token itself, as people have it
    assert revoked.returncode == 0 and "revoked 1 token" in revoked.stderr
    assert gateway.get("/rest/v0/vms", cookies={"authenticationToken": token}).status_code == 401
    again = gateway.cli("token", "revoke", token_id, check=False)
    assert again.returncode == 1 and "already revoked" in again.stderr


def test_server_add_tries_the_connection_first(gateway, sim):
    wrong = gateway.cli("server", "add", sim.url, "--password-stdin", input="not-the-password\n", check=False)
    assert wrong.returncode == 1 and "SESSION_AUTHENTICATION_FAILED" in wrong.stderr, wrong.stderr
    assert "not-the-password" not in wrong.stderr + wrong.stdout
    nowhere = gateway.cli("server", "add", "http://127.0.0.1:9", "--password-stdin", input="password\n", check=False)
    assert nowhere.returncode == 1 and "not reachable" in nowhere.stderr
    servers = gateway.cli("server", "list", "--json").splitlines()
    assert len(servers) == 1  # neither was added
    unchecked = gateway.cli("server", "add", "http://127.0.0.1:9", "--no-check", "--password-stdin",
                            input="password\n", check=False)
    assert unchecked.returncode == 0
    gateway.cli("server", "remove", unchecked.stdout.strip())
