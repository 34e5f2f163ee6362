"""The ``xorest`` command: serve, sim, demo, and user, token and server administration."""
import contextlib
import getpass
import logging
import os
import signal
import subprocess
import sys
import time

import click

log = logging.getLogger(__name__)


DEFAULT_DATA_DIR = "./var"
DEMO_DATA_DIR = os.path.join(DEFAULT_DATA_DIR, "demo")
DEMO_PID_FILE = "demo.pid"


def _services(ctx, create=True):
    """The instance's store, accounts and audit trail (what commands use); with ``create=False`` (commands that only read), a data
    directory with no database is an error instead of a new, empty database (a PostgreSQL
    database is the instances' shared one: there is no file to look for)."""
    from . import config as config_module
    from .services.accounts import AccountServices

    if "services" not in ctx.obj:
        settings = config_module.load(ctx.obj.get("overrides"))
        if not create and not settings.database_url and not os.path.exists(settings.database_path):
            _fail(f"no xorest database in {os.path.abspath(settings.data_dir)}: nothing is set up there "
                  "(`xorest user add` or `xorest server add` create it; --data-dir or XOREST_DATA_DIR "
                  "choose another directory)")
        ctx.obj["services"] = AccountServices(settings)
    return ctx.obj["services"]


def _demo_running(folder):
    """Whether a ``xorest demo`` is running with its data in ``folder``."""
    try:
        with open(os.path.join(folder, DEMO_PID_FILE)) as fh:
            pid = int(fh.read().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _choose_data_dir():
    """With no data directory configured and none set up in ``./var``, the CLI works on
    the running demo's (``./var/demo``), and says so."""
    from . import config as config_module

    try:
        settings = config_module.load()
    except Exception:  # reported by the command itself
        return
    if settings.data_dir != DEFAULT_DATA_DIR or os.path.exists(settings.database_path):
        return
    if _demo_running(DEMO_DATA_DIR):
        os.environ["XOREST_DATA_DIR"] = os.path.abspath(DEMO_DATA_DIR)
        click.echo(f"(using the running demo's data directory {os.path.abspath(DEMO_DATA_DIR)})", err=True)


def _shown(text):
    """``text`` as printed: control characters escaped (as in log lines), so that nothing
    read from pools, servers or other users (labels, descriptions, error texts) can drive
    the terminal of the admin reading it."""
    from .logs import escape_controls

    return escape_controls(str(text))


def _fail(error):
    click.echo(f"error: {_shown(error)}", err=True)
    sys.exit(1)


@contextlib.contextmanager
def _reported():
    """Turn the errors a user can cause into one line on stderr and exit status 1."""
    from .errors import XorestError

    try:
        yield
    except XorestError as exc:
        _fail(exc.message)
    except ValueError as exc:
        _fail(exc)


@contextlib.contextmanager
def _audited(svc, command, operation, status=204):
    """A command changing users or tokens, recorded in the audit trail whatever its outcome
    (as the local account running it, from ``cli``).  Yields the entry's outcome
    (``status``, ``error``, ``command``), which the command may complete."""
    from .errors import XorestError

    outcome = {"status": status, "error": None, "command": command}
    try:
        yield outcome
    except XorestError as exc:
        outcome.update(status=exc.status, error=exc.message)
        raise
    except ValueError as exc:
        outcome.update(status=400, error=str(exc))
        raise
    except BaseException:
        outcome.update(status=500, error="interrupted")
        raise
    finally:
        svc.audit.record_cli(outcome["command"], operation, outcome["status"], outcome["error"])


def _read_password(stdin, prompt="Password: ", confirm=False):
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass(prompt)
    if confirm and getpass.getpass("Again: ") != password:
        _fail("the passwords differ")
    return password


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Configuration file.")
@click.option("--data-dir", help="Data directory (XOREST_DATA_DIR).")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx, config_path, data_dir, verbose):
    """A REST gateway for XCP-ng / XenServer pools."""
    from .logs import configure

    configure(logging.DEBUG if verbose else logging.WARNING)
    if config_path:
        os.environ["XOREST_CONFIG"] = os.path.abspath(config_path)
    if data_dir:
        os.environ["XOREST_DATA_DIR"] = os.path.abspath(data_dir)
    elif ctx.invoked_subcommand not in ("serve", "sim", "demo", "create-token"):
        _choose_data_dir()
    ctx.ensure_object(dict)


# serving -----------------------------------------------------------------------

@main.command()
@click.option("--listen", multiple=True,
              help="Address to bind (repeatable): 127.0.0.1:8080, or unix:/run/xorest/gunicorn.sock.")
@click.option("--workers", type=int, default=None,
              help="Worker processes (default: 1 beside the pools daemon; without it, 2 to 4 by cores).")
@click.option("--threads", type=int, default=None, help="Threads per worker (default 32).")
def serve(listen, workers, threads):
    """Serve the API with gunicorn (gthread workers)."""
    from . import config as config_module
    from .app import create_app
    from .serve import GunicornServer

    settings = config_module.load()
    logging.getLogger().setLevel(settings.log_level)
    binds = list(listen) or [address.strip() for address in settings.listen.split(",") if address.strip()]
    GunicornServer(create_app, {"bind": binds, "workers": workers,
                                "threads": threads, "loglevel": settings.log_level.lower()},
                   pools_daemon=settings.pools_daemon).run()


@main.command(hidden=True)
@click.argument("socket_path")
def poold(socket_path):
    """The pools daemon of a `xorest serve` instance (started by it)."""
    from . import config as config_module
    from .logs import configure as configure_logging
    from .services.poold import run

    settings = config_module.load()
    configure_logging(settings.log_level)
    run(settings, socket_path)


@main.command()
@click.option("--listen", default="127.0.0.1:0", show_default=True)
@click.option("--hosts", default=3, show_default=True)
@click.option("--vms", default=50, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--username", default="root", show_default=True)
@click.option("--password", default="password", show_default=True)
@click.option("--tls", is_flag=True, help="Serve HTTPS with a generated CA.")
@click.option("--churn", default=0.0, help="Random changes per second.")
@click.option("--slave", "slaves", multiple=True, help="Extra loopback address answering HOST_IS_SLAVE.")
@click.option("--no-jsonrpc", "jsonrpc", flag_value=False, default=True,
              help="Behave like an old host: /jsonrpc answers XML-RPC.")
@click.option("--pace", default=1.0, show_default=True,
              help="How long operations take relative to a real pool (0: instant).")
def sim(listen, **options):
    """Run the XAPI simulator in the foreground."""
    from .sim import run

    options["slaves"] = tuple(options.pop("slaves"))
    run(listen, **options)


# users ----------------------------------------------------------------------------

@main.group()
def user():
    """Manage users."""


ROLE_CHOICE = click.Choice(["read-only", "vm-operator", "vm-admin", "pool-operator", "pool-admin"])


@user.command("add")
@click.argument("email")
@click.option("--role", type=ROLE_CHOICE, default=None, help="What the user may do (default: nothing "
              "but managing their own tokens).")
@click.option("--admin", is_flag=True, help="Same as --role pool-admin.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def user_add(ctx, email, role, admin, password_stdin):
    """Add a user; prints its id."""
    if admin and role not in (None, "pool-admin"):
        _fail("--admin is --role pool-admin: give one of them")
    password = _read_password(password_stdin, confirm=not password_stdin)
    svc = _services(ctx)
    role = "pool-admin" if admin else role
    with _reported(), _audited(svc, f"xorest user add {email} --role {role or 'none'}", "cli.user_add", 201):
        row = svc.auth.add_user(email, password, role)
    click.echo(row["id"])


@user.command("set")
@click.argument("email")
@click.option("--role", type=click.Choice([*ROLE_CHOICE.choices, "none"]), required=True)
@click.pass_context
def user_set(ctx, email, role):
    """Change a user's role (``none``: only their own tokens)."""
    svc = _services(ctx, create=False)
    with _reported(), _audited(svc, f"xorest user set {email} --role {role}", "cli.user_set"):
        svc.auth.update_user(email, role=None if role == "none" else role)


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def user_list(ctx, as_json):
    """List the users."""
    rows = [{"id": row["id"], "email": row["email"], "role": row.get("role") or "-",
             "created": _when(row["created_at"])} for row in _services(ctx, create=False).store.list_users()]
    _table(rows, ["id", "email", "role", "created"], as_json)


@user.command("remove")
@click.argument("email")
@click.pass_context
def user_remove(ctx, email):
    """Remove a user (and the user's tokens)."""
    svc = _services(ctx, create=False)
    with _reported(), _audited(svc, f"xorest user remove {email}", "cli.user_remove"):
        svc.auth.remove_user(email)


@user.command("passwd")
@click.argument("email")
@click.option("--password-stdin", is_flag=True)
@click.pass_context
def user_passwd(ctx, email, password_stdin):
    """Set a user's password; every token of the user is revoked."""
    svc = _services(ctx, create=False)
    password = _read_password(password_stdin, confirm=not password_stdin)
    with _reported(), _audited(svc, f"xorest user passwd {email}", "cli.user_passwd"):
        revoked = svc.auth.set_password(email, password)
    click.echo(f"password changed; {revoked} token{'s' if revoked != 1 else ''} of {_shown(email)} revoked",
               err=True)


# tokens ---------------------------------------------------------------------------

@main.group()
def token():
    """Manage authentication tokens."""


@token.command("create")
@click.argument("email")
@click.option("--expires", default=None, help="Lifetime, e.g. 7d, 12h (default 30d).")
@click.option("--description", default="xorest token create")
@click.option("--role", type=ROLE_CHOICE, default=None, help="At most the user's (default: the user's).")
@click.option("--scope", "scope_filter", default=None, help="Only the VMs matching this live filter "
              "(and what depends on them), e.g. 'tags:team-a'.")
@click.option("--pool", "pools", multiple=True, help="Only this pool's objects (a pool uuid; repeatable).")
@click.pass_context
def token_create(ctx, email, expires, description, role, scope_filter, pools):
    """Create a token for EMAIL; prints only the token on standard output (its id goes to
    standard error, for `token revoke`)."""
    from .config import parse_duration
    from .errors import NotFound
    from .services.scopes import Scope

    svc = _services(ctx, create=False)
    command = f"xorest token create {email}"
    with _reported(), _audited(svc, command, "cli.token_create", 201) as outcome:
        row = svc.store.get_user(email)
        if row is None:
            raise NotFound(f"no such user {email}")
        ttl = parse_duration(expires) if expires else None
        scope = Scope.requested({"pools": list(pools), "filter": scope_filter}) if pools or scope_filter else None
        value, token_row = svc.auth.issue_token(row, ttl, description, role=role, scope=scope)
        outcome["command"] = f"{command}: token {token_row['id']}"
    click.echo(f"token id {token_row['id']}, expires {_when(token_row['expires_at'])} UTC", err=True)
    click.echo(value)


@token.command("list")
@click.argument("email", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def token_list(ctx, email, as_json):
    """List tokens (all, or EMAIL's): id, user, state, expiry, last use, description."""
    svc = _services(ctx, create=False)
    with _reported():
        tokens = svc.auth.list_tokens(email)
    emails = {row["id"]: row["email"] for row in svc.store.list_users()}
    now = time.time()
    rows = [{"id": row["id"], "user": emails.get(row["user_id"], row["user_id"]),
             "state": "revoked" if row["revoked_at"] else ("expired" if row["expires_at"] < now else "active"),
             "role": row.get("role") or "(user's)", "scope": _scope_text(row["scope"]),
             "expires": _when(row["expires_at"]), "last_used": _when(row["last_used_at"]),
             "description": row["description"]} for row in tokens]
    _table(rows, ["id", "user", "state", "role", "scope", "expires", "last_used", "description"], as_json)


def _scope_text(scope):
    parts = [f"pools {','.join(scope['pools'])}"] if scope.get("pools") else []
    if scope.get("filter"):
        parts.append(scope["filter"])
    return "; ".join(parts) or "-"


@token.command("revoke", context_settings={"ignore_unknown_options": True})  # a token may start with -
@click.argument("token")
@click.pass_context
def token_revoke(ctx, token):
    """Revoke TOKEN (its id from `token list`, or the token itself) and its renewals."""
    from .services.auth import hash_token

    svc = _services(ctx, create=False)
    # the trail names the token by its id, never by its value (nor by a mistyped one)
    row = svc.store.get_token(token) or svc.store.get_token_by_hash(hash_token(token))
    with _reported(), _audited(svc, f"xorest token revoke {row['id'] if row else '(no such token)'}",
                               "cli.token_revoke"):
        revoked = svc.auth.revoke_token(token)
    click.echo(f"revoked {revoked} token{'s' if revoked != 1 else ''} (the token and its renewals)", err=True)


def _when(timestamp):
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(timestamp)) if timestamp else "-"


def _table(rows, columns, as_json):
    """Rows as aligned columns under a header, or as JSON lines for scripts."""
    import json

    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    rows = [{c: _shown(row[c]) for c in columns} for row in rows]
    widths = {c: max([len(c), *(len(r[c]) for r in rows)]) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        click.echo("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())


@main.command("create-token")
@click.argument("url")
@click.argument("email")
@click.option("--password-stdin", is_flag=True)
@click.option("--expires", default=None, help="Lifetime, e.g. 7d.")
@click.option("--description", default="xorest create-token")
@click.option("--ca", "ca_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--insecure", is_flag=True, help="Do not verify the server's TLS certificate.")
def create_token(url, email, password_stdin, expires, description, ca_file, insecure):
    """Create a token on a remote xorest, like `xo-cli create-token`; prints only the token."""
    import requests

    if "://" not in url:
        url = "https://" + url
    password = _read_password(password_stdin)
    body = {"description": description}
    if expires:
        body["expiresIn"] = expires
    click.echo(f"Connecting to {url}...", err=True)
    try:
        response = requests.post(f"{url.rstrip('/')}/rest/v0/users/me/authentication_tokens", json=body,
                                 auth=(email, password), timeout=30,
                                 verify=False if insecure else (ca_file or True))
    except requests.exceptions.RequestException as exc:
        _fail(f"cannot reach {url}: {exc}")
    if response.status_code != 201:
        try:
            message = response.json().get("error")
        except ValueError:
            message = response.text[:200]
        _fail(f"HTTP {response.status_code}: {message}")
    click.echo(f"Successfully logged with {_shown(email)}", err=True)
    click.echo("Authentication token created", err=True)
    click.echo("", err=True)
    click.echo(_shown(response.json()["token"]["id"]))


# servers --------------------------------------------------------------------------

@main.group()
def server():
    """Manage the pools xorest connects to."""


@server.command("add")
@click.argument("url")
@click.option("--username", default="root", show_default=True)
@click.option("--password-stdin", is_flag=True)
@click.option("--ca", "ca_file", type=click.Path(exists=True, dir_okay=False), help="CA bundle for TLS.")
@click.option("--insecure", is_flag=True, help="Do not verify TLS (explicit opt-out).")
@click.option("--label", default="")
@click.option("--no-check", is_flag=True, help="Add it without trying to log in first.")
@click.pass_context
def server_add(ctx, url, username, password_stdin, ca_file, insecure, label, no_check):
    """Add a pool (any member's URL); its connection is tried first (--no-check skips it)."""
    from .services.upstream import probe_server

    if "://" not in url:
        url = "https://" + url
    if ca_file and insecure:
        _fail("--ca and --insecure are exclusive")
    password = _read_password(password_stdin, "Pool password: ")
    ca_path = os.path.abspath(ca_file) if ca_file else None
    if not no_check:
        click.echo(f"Connecting to {url}...", err=True)
        with _reported():
            name = probe_server(url, username, password, ca_path, insecure)
        click.echo(f"Logged in to pool '{_shown(name)}'", err=True)
    svc = _services(ctx)
    with _audited(svc, f"xorest server add {_without_credentials(url)}", "cli.server_add", 201) as outcome:
        server_id = svc.store.add_server(url, username, password, ca_path, insecure, label)
        outcome["command"] += f": server {server_id}"
    click.echo(server_id)


def _without_credentials(url):
    """``url`` without a ``user:password@`` part (never recorded)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


@server.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def server_list(ctx, as_json):
    """List the pools xorest connects to (never their passwords)."""
    rows = [{"id": row["id"], "url": row["url"], "username": row["username"], "label": row["label"],
             "tls": "insecure" if row["insecure"] else ("ca " + row["ca_file"] if row["ca_file"] else "verified")}
            for row in _services(ctx, create=False).store.list_servers()]
    _table(rows, ["id", "url", "username", "label", "tls"], as_json)


@server.command("remove")
@click.argument("server_id")
@click.pass_context
def server_remove(ctx, server_id):
    """Remove a pool; a running xorest disconnects from it within seconds."""
    from .errors import NotFound

    svc = _services(ctx, create=False)
    with _reported(), _audited(svc, f"xorest server remove {server_id}", "cli.server_remove"):
        if not svc.store.remove_server(server_id):
            raise NotFound(f"no such server {server_id}")


# VMs of a running xorest ------------------------------------------------------------

def _remote_options(command):
    """--url, --token (or $XO_URL, $XO_TOKEN: not XOREST_*, which configure a server), --ca,
    --insecure."""
    options = [
        click.option("--url", envvar="XO_URL", required=True, help="xorest's URL (or $XO_URL)."),
        click.option("--token", envvar="XO_TOKEN", required=True, help="An API token (or $XO_TOKEN)."),
        click.option("--ca", "ca_file", type=click.Path(exists=True, dir_okay=False), help="CA bundle to verify it."),
        click.option("--insecure", is_flag=True, help="Do not verify its certificate."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.group()
def vm():
    """Start, stop, reboot, snapshot or delete a VM through a running xorest (as scripts do)."""


def _vm_run(key, action, body, no_wait, url, token, ca_file, insecure):
    """Find the VM, run the action, print the task's id (``--no-wait``) or a new id."""
    from .remote import Remote

    with _reported():
        remote = Remote(url, token, ca_file, insecure)
        target = remote.find_vm(key)
        result = remote.action("vms", target["id"], action, body, wait=not no_wait)
    if no_wait:
        click.echo(_shown(result))
    elif result and "id" in result:
        click.echo(_shown(result["id"]))


_no_wait = click.option("--no-wait", is_flag=True, help="Print the task's id instead of waiting for the end.")
_force = click.option("--force", is_flag=True, help="Do it hard, without the guest's cooperation.")


@vm.command("start")
@click.argument("key", metavar="VM")
@click.option("--host", help="The id of the host to start it on.")
@_no_wait
@_remote_options
def vm_start(key, host, no_wait, **remote):
    """Start a VM (its id or its exact name)."""
    _vm_run(key, "start", {"hostId": host} if host else None, no_wait, **remote)


@vm.command("stop")
@click.argument("key", metavar="VM")
@_force
@_no_wait
@_remote_options
def vm_stop(key, force, no_wait, **remote):
    """Shut a VM down cleanly (--force: power it off)."""
    _vm_run(key, "hard_shutdown" if force else "clean_shutdown", None, no_wait, **remote)


@vm.command("reboot")
@click.argument("key", metavar="VM")
@_force
@_no_wait
@_remote_options
def vm_reboot(key, force, no_wait, **remote):
    """Reboot a VM cleanly (--force: reset it)."""
    _vm_run(key, "hard_reboot" if force else "clean_reboot", None, no_wait, **remote)


@vm.command("snapshot")
@click.argument("key", metavar="VM")
@click.option("--name", help="The snapshot's name (default: the VM's).")
@_no_wait
@_remote_options
def vm_snapshot(key, name, no_wait, **remote):
    """Snapshot a VM; prints the snapshot's id."""
    _vm_run(key, "snapshot", {"name_label": name} if name else None, no_wait, **remote)


@vm.command("delete")
@click.argument("key", metavar="VM")
@click.option("--yes", is_flag=True, help="Do not ask (a running VM is powered off first).")
@_remote_options
def vm_delete(key, yes, url, token, ca_file, insecure):
    """Delete a VM with its disks and snapshots (its id or its exact name)."""
    from .remote import Remote

    with _reported():
        remote = Remote(url, token, ca_file, insecure)
        target = remote.find_vm(key)
        if not yes:
            click.confirm(f"Delete the VM '{_shown(target['name_label'])}' ({_shown(target['id'])}) and its "
                          "disks?", abort=True)
        remote.delete("vms", target["id"])


# demo -----------------------------------------------------------------------------

def _wait_line(process, prefix, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise click.ClickException(f"the simulator did not start (expected {prefix!r})")


def _port_free(host, port):
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@main.command()
@click.option("--listen", default="127.0.0.1:8080", show_default=True)
@click.option("--vms", default=50, show_default=True)
@click.option("--churn", default=0.5, show_default=True)
def demo(listen, vms, churn):
    """Simulated pool + xorest under gunicorn, an admin and a token, and curl lines to try.

    Its data lives in ./var/demo (or XOREST_DATA_DIR); while it runs, `xorest` commands
    started from the same directory use it.  Ctrl-C stops everything.
    """
    host, _, port = listen.rpartition(":")
    if not _port_free(host, int(port)):
        raise click.ClickException(f"{listen} is taken: choose another port, e.g. `make demo PORT=8081`")
    data_dir = os.path.abspath(os.environ.get("XOREST_DATA_DIR") or DEMO_DATA_DIR)
    if _demo_running(data_dir):
        raise click.ClickException(f"a demo is already running with its data in {data_dir}")
    from .config import private_directory

    private_directory(data_dir)
    pid_file = os.path.join(data_dir, DEMO_PID_FILE)
    with open(pid_file, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    # The demo prints its own banner: gunicorn's start-up and shutdown notices are noise here.
    env = dict(os.environ, XOREST_DATA_DIR=data_dir, XOREST_LOG_LEVEL="WARNING")
    exe = [sys.executable, "-m", "xorest"]
    # Children get their own sessions: Ctrl-C reaches only this process, which stops
    # them in order instead of each one dying on its own (and looking like a crash).
    spawn = dict(env=env, start_new_session=True)
    children = {}
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        children["the simulator"] = simulator = subprocess.Popen(
            [*exe, "sim", "--listen", "127.0.0.1:0", "--vms", str(vms), "--churn", str(churn)],
            stdout=subprocess.PIPE, text=True, **spawn)
        sim_url = _wait_line(simulator, "xapi simulator listening on ", 60)
        from .services.registry import Services

        svc = Services.from_mapping({"data_dir": data_dir})
        for row in svc.store.list_servers():
            svc.store.remove_server(row["id"])
        svc.store.add_server(sim_url, "root", "password", None, False, "simulated pool")
        if svc.store.get_user("admin@admin.net") is None:
            svc.auth.add_user("admin@admin.net", "admin-demo-password", "pool-admin")
        token, _ = svc.auth.issue_token(svc.store.get_user("admin@admin.net"), 7 * 86400, "make demo")
        children["xorest"] = subprocess.Popen([*exe, "serve", "--listen", listen], **spawn)
        base = f"http://{listen}"
        _wait_http(base + "/rest/v0", 60)
        _print_demo(base, sim_url, token, data_dir)
        while True:
            for name, child in children.items():
                if child.poll() is not None:
                    raise click.ClickException(f"{name} stopped unexpectedly (exit status {child.returncode})")
            time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo("\nstopping...", err=True)
    finally:
        for child in reversed(list(children.values())):  # xorest first: its pool must outlive it
            if child.poll() is None:
                child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        with contextlib.suppress(OSError):
            os.unlink(pid_file)
    click.echo("stopped.", err=True)


def _interrupt(*_):
    raise KeyboardInterrupt


def _wait_http(url, timeout):
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.exceptions.RequestException:
            time.sleep(0.3)
    raise click.ClickException(f"xorest did not answer on {url}")


def _print_demo(base, sim_url, token, data_dir):
    import requests

    vms = requests.get(f"{base}/rest/v0/vms?fields=power_state&limit=1000",
                       cookies={"authenticationToken": token}, timeout=30).json()
    halted = next((v["href"].rsplit("/", 1)[1] for v in vms if v.get("power_state") == "Halted"), "<uuid>")
    vdis = requests.get(f"{base}/rest/v0/vdis?fields=size&filter=size:<600000000",
                        cookies={"authenticationToken": token}, timeout=30).json()
    vdi = vdis[0]["href"].rsplit("/", 1)[1] if vdis else "<uuid>"
    lines = [
        "",
        f"xorest is serving a simulated pool ({sim_url}) on {base}",
        "",
        "Your token (admin@admin.net, password admin-demo-password):",
        f"  {token}",
        "",
        "Try:",
        f"  curl -b authenticationToken={token} {base}/rest/v0/",
        f"  curl -b authenticationToken={token} '{base}/rest/v0/vms?fields=name_label,power_state'",
        f"  curl -b authenticationToken={token} '{base}/rest/v0/vms?fields=name_label,power_state&ndjson'",
        f"  curl -b authenticationToken={token} '{base}/rest/v0/vms?filter=power_state:Running%20tags:prod&fields=name_label'",
        f"  curl -b authenticationToken={token} '{base}/rest/v0/vms/{halted}.xva?compress=zstd' > myVM.xva",
        f"  curl -b authenticationToken={token} '{base}/rest/v0/vdis/{vdi}.vhd' > myDisk.vhd",
        "",
        f"Its data (users, tokens, the pool's entry) is in {data_dir};",
        "`.venv/bin/xorest user list`, `token list`... run from this directory use it while the demo runs.",
        "",
        "Ctrl-C stops everything.",
    ]
    click.echo("\n".join(lines))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
