"""A throwaway PostgreSQL server for the tests, from Debian's binaries, on a loopback port.

One cluster per test session, in a temporary directory; each test gets an empty database
of its own (owned by an unprivileged role with a password, as a deployment would have).
PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user
that Debian's package creates.
"""
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid

ROLE = "xorest"


def server_binaries():
    """The newest installed ``/usr/lib/postgresql/<version>/bin``, or ``None``."""
    found = [path for path in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(os.path.join(path, "initdb"))]
    return max(found, key=lambda path: int(path.split("/")[-2]) if path.split("/")[-2].isdigit() else 0,
               default=None)


def install_server():
    """Install Debian's ``postgresql`` when it is missing and we may (root with apt-get):
    ``None`` when it is there, else why it is not."""
    if server_binaries():
        return None
    if os.getuid() != 0 or not shutil.which("apt-get"):
        return "PostgreSQL's server is not installed (`make system-deps` installs Debian's postgresql as root)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
        result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
        if result.returncode != 0:
            return f"PostgreSQL's server could not be installed: {result.stderr[-300:]}"
    return None if server_binaries() else "Debian's postgresql installed no /usr/lib/postgresql/*/bin/initdb"


class PostgresCluster:
    """``initdb`` + ``pg_ctl start`` in a temporary directory; :meth:`new_database` gives URLs."""

    def __init__(self, port):
        self.bin = server_binaries()
        self.port = port
        # KeyError: no such user (the fixture says so)
        self.user = pwd.getpwnam("postgres") if os.getuid() == 0 else None
        self.folder = tempfile.mkdtemp(prefix="xorest-pg-")
        self.data = os.path.join(self.folder, "data")
        self.password = secrets.token_urlsafe(16)
        if self.user:
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.folder, 0o700)
        pwfile = os.path.join(self.folder, "pwfile")
        with open(pwfile, "w") as fh:
            fh.write(self.password + "\n")
        if self.user:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        self._run("initdb", "-D", self.data, "-U", "postgres", "--pwfile", pwfile, "--auth-local=trust",
                  "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.folder, "server.log"), "-w", "-t", "60",
                  "-o", f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={self.folder} "
                        "-c max_connections=300 -c fsync=off -c synchronous_commit=off "
                        "-c full_page_writes=off", "start")
        self.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'")

    def _run(self, program, *args):
        command = [os.path.join(self.bin, program), *args]
        if self.user:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.folder, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stdout}{result.stderr}{self.log()}")
        return result.stdout

    def log(self):
        try:
            with open(os.path.join(self.folder, "server.log")) as fh:
                return fh.read()[-3000:]
        except OSError:
            return ""

    def psql(self, sql, database="postgres"):
        """Run ``sql`` as the superuser (over the cluster's Unix socket)."""
        return self._run("psql", "-h", self.folder, "-p", str(self.port), "-U", "postgres", "-d", database,
                         "-v", "ON_ERROR_STOP=1", "-At", "-c", sql)

    def url(self, database):
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self):
        """The URL of a new, empty database owned by the unprivileged role."""
        name = f"xorest_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name} OWNER {ROLE}")
        return self.url(name)

    def dump(self, url):
        """``pg_dump`` of a database: everything it holds, as text."""
        return self._run("pg_dump", "--no-owner", url)

    def stop(self):
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "-t", "30", "stop")
        finally:
            time.sleep(0.1)
            shutil.rmtree(self.folder, ignore_errors=True)
