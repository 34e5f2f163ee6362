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


def _services(ctx):
    from .services.registry import Services

    if "services" not in ctx.obj:
        ctx.obj["services"] = Services.from_mapping(ctx.obj.get("overrides"))
    return ctx.obj["services"]


def _fail(error):
    click.echo(f"error: {error}", err=True)
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
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config_path:
        os.environ["XOREST_CONFIG"] = os.path.abspath(config_path)
    if data_dir:
        os.environ["XOREST_DATA_DIR"] = os.path.abspath(data_dir)
    ctx.ensure_object(dict)


# serving -----------------------------------------------------------------------

@main.command()
@click.option("--listen", default=None, help="Address to bind, e.g. 127.0.0.1:8080.")
@click.option("--workers", type=int, default=None)
@click.option("--threads", type=int, default=None)
def serve(listen, workers, threads):
    """Serve the API with gunicorn (gthread workers)."""
    from . import config as config_module
    from .app import create_app
    from .serve import GunicornServer

    settings = config_module.load()
    logging.getLogger().setLevel(settings.log_level)
    GunicornServer(create_app, {"bind": listen or settings.listen, "workers": workers,
                                "threads": threads}).run()


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
def sim(listen, **options):
    """Run the XAPI simulator in the foreground."""
    from .sim import run

    options["slaves"] = tuple(options.pop("slaves"))
    run(listen, **options)


# users ----------------------------------------------------------------------------

@main.group()
def user():
    """Manage users."""


@user.command("add")
@click.argument("email")
@click.option("--admin", is_flag=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def user_add(ctx, email, admin, password_stdin):
    password = _read_password(password_stdin, confirm=not password_stdin)
    with _reported():
        row = _services(ctx).auth.add_user(email, password, admin)
    click.echo(row["id"])


@user.command("list")
@click.pass_context
def user_list(ctx):
    for row in _services(ctx).store.list_users():
        click.echo(f"{row['id']}  {row['email']}  {'admin' if row['is_admin'] else 'user'}")


@user.command("remove")
@click.argument("email")
@click.pass_context
def user_remove(ctx, email):
    with _reported():
        _services(ctx).auth.remove_user(email)


@user.command("passwd")
@click.argument("email")
@click.option("--password-stdin", is_flag=True)
@click.pass_context
def user_passwd(ctx, email, password_stdin):
    with _reported():
        _services(ctx).auth.set_password(email, _read_password(password_stdin, confirm=not password_stdin))


# tokens ---------------------------------------------------------------------------

@main.group()
def token():
    """Manage authentication tokens."""


@token.command("create")
@click.argument("email")
@click.option("--expires", default=None, help="Lifetime, e.g. 7d, 12h (default 30d).")
@click.option("--description", default="xorest token create")
@click.pass_context
def token_create(ctx, email, expires, description):
    """Create a token for EMAIL and print only the token."""
    from .config import parse_duration

    svc = _services(ctx)
    with _reported():
        row = svc.store.get_user(email)
        if row is None:
            _fail(f"no such user {email}")
        ttl = parse_duration(expires) if expires else None
        value, _ = svc.auth.issue_token(row, ttl, description)
    click.echo(value)


@token.command("list")
@click.argument("email", required=False)
@click.pass_context
def token_list(ctx, email):
    with _reported():
        tokens = _services(ctx).auth.list_tokens(email)
    now = time.time()
    for row in tokens:
        state = "revoked" if row["revoked_at"] else ("expired" if row["expires_at"] < now else "active")
        expires = time.strftime("%Y-%m-%d %H:%M", time.gmtime(row["expires_at"]))
        click.echo(f"{row['id']}  {row['user_id']}  {state:7}  expires {expires}  {row['description']}")


@token.command("revoke")
@click.argument("token_id")
@click.pass_context
def token_revoke(ctx, token_id):
    with _reported():
        _services(ctx).auth.revoke_token(token_id)


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
    click.echo(f"Successfully logged with {email}", err=True)
    click.echo("Authentication token created", err=True)
    click.echo("", err=True)
    click.echo(response.json()["token"]["id"])


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
@click.pass_context
def server_add(ctx, url, username, password_stdin, ca_file, insecure, label):
    if "://" not in url:
        url = "https://" + url
    if ca_file and insecure:
        _fail("--ca and --insecure are exclusive")
    password = _read_password(password_stdin, "Pool password: ")
    server_id = _services(ctx).store.add_server(url, username, password,
                                                 os.path.abspath(ca_file) if ca_file else None,
                                                 insecure, label)
    click.echo(server_id)


@server.command("list")
@click.pass_context
def server_list(ctx):
    for row in _services(ctx).store.list_servers():
        flags = " insecure" if row["insecure"] else ""
        click.echo(f"{row['id']}  {row['url']}  {row['username']}  {row['label']}{flags}")


@server.command("remove")
@click.argument("server_id")
@click.pass_context
def server_remove(ctx, server_id):
    if not _services(ctx).store.remove_server(server_id):
        _fail(f"no such server {server_id}")


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
    """Simulated pool + xorest under gunicorn, an admin and a token, and curl lines to try."""
    host, _, port = listen.rpartition(":")
    if not _port_free(host, int(port)):
        raise click.ClickException(f"{listen} is taken: choose another port, e.g. `make demo PORT=8081`")
    data_dir = os.path.abspath(os.environ.get("XOREST_DATA_DIR") or "./var/demo")
    os.makedirs(data_dir, exist_ok=True)
    env = dict(os.environ, XOREST_DATA_DIR=data_dir)
    exe = [sys.executable, "-m", "xorest"]
    simulator = subprocess.Popen([*exe, "sim", "--listen", "127.0.0.1:0", "--vms", str(vms),
                                  "--churn", str(churn)], stdout=subprocess.PIPE, text=True, env=env)
    children = [simulator]
    try:
        sim_url = _wait_line(simulator, "xapi simulator listening on ", 60)
        from .services.registry import Services

        svc = Services.from_mapping({"data_dir": data_dir})
        for row in svc.store.list_servers():
            svc.store.remove_server(row["id"])
        svc.store.add_server(sim_url, "root", "password", None, False, "simulated pool")
        if svc.store.get_user("admin@admin.net") is None:
            svc.auth.add_user("admin@admin.net", "admin-demo-password", True)
        token, _ = svc.auth.issue_token(svc.store.get_user("admin@admin.net"), 7 * 86400, "make demo")
        gunicorn = subprocess.Popen([*exe, "serve", "--listen", listen, "--workers", "2"], env=env)
        children.append(gunicorn)
        base = f"http://{listen}"
        _wait_http(base + "/rest/v0", 60)
        _print_demo(base, sim_url, token)
        signal.signal(signal.SIGTERM, _interrupt)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        click.echo("a child process exited", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        click.echo("\nstopping...", err=True)
        for child in reversed(children):
            child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


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


def _print_demo(base, sim_url, token):
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
        "Ctrl-C stops everything.",
    ]
    click.echo("\n".join(lines))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
