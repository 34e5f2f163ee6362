"""Process fixtures: the simulator, gunicorn and nginx as real processes on loopback ports."""
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def free_port(host="127.0.0.1"):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A child process with its log in a file, ready when a line matches or a URL answers."""

    def __init__(self, args, log_path, env=None, ready_line=None, ready_url=None, timeout=60, verify=True):
        self.args, self.log_path = args, log_path
        self.log = open(log_path, "w+")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                        cwd=ROOT, start_new_session=True)
        self.match = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{args[:3]} exited:\n{self.output()}")
            if ready_line and (m := re.search(ready_line, self.output())):
                self.match = m
                return
            if ready_url:
                try:
                    requests.get(ready_url, timeout=1, verify=verify)
                    return
                except requests.exceptions.RequestException:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{args[:3]} not ready in {timeout}s:\n{self.output()}")

    def output(self):
        with open(self.log_path) as fh:
            return fh.read()

    def stop(self, sig=signal.SIGTERM):
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.log.close()


#: Tests run the simulator fast (a twentieth of a real pool's durations) unless they ask
#: for another ``--pace`` or set exact durations (``POST /_sim/timing``).
TEST_PACE = "0.05"


def start_sim(tmp_path, *extra, port=None, name="sim"):
    port = port or free_port()
    pace = () if "--pace" in extra else ("--pace", TEST_PACE)
    proc = ServerProcess([PYTHON, "-m", "xorest", "sim", "--listen", f"127.0.0.1:{port}", *pace, *extra],
                         str(tmp_path / f"{name}.log"), ready_line=r"listening on (\S+)")
    proc.url = proc.match.group(1)
    proc.port = port
    return proc


def sim_admin(url, path, body=None):
    response = requests.post(f"{url}/_sim/{path}", json=body or {}, timeout=10)
    response.raise_for_status()
    return response.json()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("XOREST_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    """A simulator (seed 1, 50 VMs) shared by read-only tests."""
    proc = start_sim(tmp_path_factory.mktemp("sim"), "--seed", "1", "--vms", "50")
    yield proc
    proc.stop()


@pytest.fixture
def processes(tmp_path):
    """Start extra processes in a test; all are stopped at its end."""
    started = []

    class Factory:
        def sim(self, *extra, **kw):
            proc = start_sim(tmp_path, *extra, name=f"sim{len(started)}", **kw)
            started.append(proc)
            return proc

        def add(self, proc):
            started.append(proc)
            return proc

    yield Factory()
    for proc in reversed(started):
        proc.stop()


class Gateway:
    """xorest under gunicorn with its own data directory, an admin and a token.

    By default ``xorest serve`` runs without ``--workers``/``--threads``, exactly as a user
    starts it (one worker beside the pools daemon, 32 threads); tests of what happens
    across workers, or when threads run out, ask for them.  ``unix_socket`` adds a
    Unix-socket bind (nginx's way in).
    """

    def __init__(self, tmp_path, sim_url, name="gw", workers=None, env=None, threads=None, unix_socket=None):
        self.data_dir = str(tmp_path / f"{name}-data")
        self.env = {**os.environ, "XOREST_DATA_DIR": self.data_dir, "XOREST_EVENT_TIMEOUT": "5",
                    # renew 62 s tokens after about a second, so renewal tests need no long sleeps
                    "XOREST_TOKEN_RENEW_FRACTION": "0.97",
                    "XOREST_LOGIN_DELAY_BASE": "0.05", **(env or {})}
        self.cli("server", "add", sim_url, "--username", "root", "--password-stdin", "--label", "sim",
                 input="password\n")
        self.cli("user", "add", "admin@example.com", "--admin", "--password-stdin", input="admin-password\n")
        self.cli("user", "add", "user@example.com", "--password-stdin", input="user-password\n")
        self.token = self.cli("token", "create", "admin@example.com").strip()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.unix_socket = unix_socket
        args = [PYTHON, "-m", "xorest", "serve", "--listen", f"127.0.0.1:{self.port}"]
        if unix_socket:
            args += ["--listen", f"unix:{unix_socket}"]
        if workers is not None:
            args += ["--workers", str(workers)]
        if threads is not None:
            args += ["--threads", str(threads)]
        self.proc = ServerProcess(args, str(tmp_path / f"{name}.log"), env=self.env, ready_url=self.url + "/rest/v0")
        self.wait_loaded()

    def cli(self, *args, input=None, check=True):
        result = subprocess.run([PYTHON, "-m", "xorest", *args], input=input, capture_output=True,
                                text=True, env=self.env, cwd=ROOT, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"xorest {' '.join(args)} failed: {result.stderr}")
        return result.stdout if check else result

    def get(self, path, **kw):
        kw.setdefault("cookies", {"authenticationToken": self.token})
        kw.setdefault("timeout", 30)
        return requests.get(self.url + path, **kw)

    def _children(self):
        """``(process, is the pools daemon)`` of the master's live children."""
        import psutil

        for child in psutil.Process(self.proc.process.pid).children():
            try:
                yield child, "poold" in child.cmdline()
            except psutil.Error:  # gone, or a zombie not reaped yet
                continue

    def workers(self):
        """The gunicorn workers (``psutil.Process``) of this instance."""
        return [child for child, daemon in self._children() if not daemon]

    def daemon(self):
        """The instance's pools daemon (``psutil.Process``), or ``None``."""
        return next((child for child, daemon in self._children() if daemon), None)

    def small_disk(self, fields="*"):
        """The smallest writable disk with content (ties broken by id: workers may list in
        different orders); the pool's empty DVD drives, read-only ISOs and HA's
        own disks are left out."""
        disks = self.get(f"/rest/v0/vdis?fields={fields}&filter=VDI_type:user size:>0 !read_only? size:<600000000").json()
        return min(disks, key=lambda v: (v["size"], v["href"]))

    def wait_loaded(self, timeout=30):
        """Every worker has loaded the pool (several requests, they land on any worker)."""
        deadline = time.monotonic() + timeout
        good = 0
        while time.monotonic() < deadline:
            servers = self.get("/rest/v0/servers?fields=status").json()
            vms = self.get("/rest/v0/vms?limit=1").json()
            good = good + 1 if servers and all(s["status"] == "connected" for s in servers) and vms else 0
            if good >= 6:
                return
            time.sleep(0.2)
        raise AssertionError(f"pool not loaded:\n{self.proc.output()[-3000:]}")

    def stop(self):
        self.proc.stop()


@pytest.fixture(scope="session")
def gateway(sim, tmp_path_factory):
    gw = Gateway(tmp_path_factory.mktemp("gw"), sim.url)
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL server (Debian's binaries, installed when missing and we may)
    on a loopback port, for the whole session; skipped, saying why, when there is none."""
    from .postgres import PostgresCluster, install_server

    reason = install_server()
    if reason:
        pytest.skip(reason)
    try:
        cluster = PostgresCluster(free_port())
    except KeyError:
        pytest.skip("running as root, and there is no postgres user to run PostgreSQL's server as")
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster):
    """The URL of a new, empty PostgreSQL database (``XOREST_DATABASE_URL``)."""
    return postgres_cluster.new_database()


def nginx_available():
    return NGINX is not None


def tls_files(folder):
    """A throwaway CA and a certificate for 127.0.0.1/localhost: ``(ca, cert, key)`` paths."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = [os.path.join(folder, name) for name in ("ca.pem", "cert.pem", "key.pem")]
    ca.cert_pem.write_to_path(paths[0])
    cert.private_key_and_cert_chain_pem.write_to_path(paths[1])
    cert.private_key_pem.write_to_path(paths[2])
    return paths


def render_site(upstream, listen, cert, key):
    """The project's nginx site, its placeholders filled in."""
    with open(os.path.join(ROOT, "deploy", "nginx", "xorest.conf")) as fh:
        site = fh.read()
    return (site.replace("@UPSTREAM@", upstream).replace("@LISTEN@", listen).replace("@SERVER_NAME@", "localhost")
            .replace("@TLS_CERTIFICATE@", cert).replace("@TLS_CERTIFICATE_KEY@", key))


class Nginx(ServerProcess):
    """nginx with the project's site over TLS; ``url`` is https, ``ca`` verifies it."""

    def __init__(self, tmp, upstream, adjust=lambda site: site, name="nginx"):
        folder = tmp / name
        folder.mkdir(exist_ok=True)
        self.ca, cert, key = tls_files(str(folder))
        port = free_port()
        conf = folder / "nginx.conf"
        # As root, nginx's workers would run as nobody, whom the test's private folders
        # (and the gunicorn socket, as in production) keep out: run them as ourselves.
        user = f"user {pwd.getpwuid(os.getuid()).pw_name};" if os.getuid() == 0 else ""
        conf.write_text(f"""
{user}
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {folder}/nginx-access.log;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    {adjust(render_site(upstream, f"127.0.0.1:{port}", cert, key))}
}}
""")
        self.port = port
        self.url = f"https://127.0.0.1:{port}"
        super().__init__([NGINX, "-c", str(conf), "-p", str(folder)], str(folder / "nginx.log"),
                         ready_url=self.url + "/rest/v0", verify=self.ca)


def npm_package(spec, name):
    """``(node, folder)`` with the npm package ``spec`` installed in a temporary folder,
    or skip the test with the reason (no node, no npm, or no registry)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node or npm is not installed")
    folder = os.path.join(tempfile.gettempdir(), f"xorest-npm-{name}")
    if not os.path.isdir(os.path.join(folder, "node_modules", name)):
        os.makedirs(folder, exist_ok=True)
        result = subprocess.run([npm, "install", "--silent", "--prefix", folder, spec],
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            pytest.skip(f"npm could not install {spec}: {result.stderr[-300:]}")
    return node, folder
