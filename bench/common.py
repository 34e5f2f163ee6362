"""Shared helpers for the benchmarks: start processes on loopback, time things, print lines.

Every figure is printed as ``metric,value,baseline,ratio`` with the baseline measured in
the same script, so machines of different speed still give comparable ratios.
"""
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_WRK_SCRIPT = """
local n = 0
request = function()
  n = n + 1
  local path = "PATH"
  path = path:gsub("{n}", tostring(100000 + n))
  return wrk.format("GET", path, {["Cookie"] = "authenticationToken=TOKEN"})
end
"""


def wrk_script(path, token):
    """A wrk Lua script (its file name) requesting ``path`` with the token's cookie; ``{n}``
    in the path becomes a different number at each request."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(_WRK_SCRIPT.replace("PATH", path).replace("TOKEN", token))
    script.close()
    return script.name


def report(metric, value, baseline=None, unit=""):
    ratio = f"{value / baseline:.3f}" if baseline else ""
    base = f"{baseline:.4g}" if baseline is not None else ""
    print(f"{metric}{f' ({unit})' if unit else ''},{value:.4g},{base},{ratio}", flush=True)


def percentile(values, pct):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def timed(fn, repeat=5, warmup=1):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


class Process:
    """A child process with its output in a log file, returned once ready: a line of its
    output matches ``ready``, or ``ready_url`` answers (any status)."""

    def __init__(self, args, env=None, ready=None, ready_url=None, timeout=120, verify=True, cwd=ROOT):
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(open(self.log.name).read())
            text = open(self.log.name).read()
            if ready and (match := re.search(ready, text)):
                self.match = match
                return
            if ready_url:
                try:
                    requests.get(ready_url, timeout=1, verify=verify)
                    return
                except requests.exceptions.RequestException:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("not ready: " + self.output()[-2000:])

    def output(self):
        return open(self.log.name).read()

    def stop(self, wait=10):
        self.proc.terminate()
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_sim(*args):
    proc = Process([PYTHON, "-m", "xorest", "sim", "--listen", f"127.0.0.1:{free_port()}", *args],
                   ready=r"listening on (\S+)")
    proc.url = proc.match.group(1)
    return proc


def start_nginx(upstream, buffer_size="8k", site=False):
    """nginx on a free loopback port in front of ``upstream`` (``host:port`` or
    ``unix:path``); ``None`` without nginx.

    ``site=True`` uses the project's own site file (deploy/nginx/xorest.conf), over TLS
    as deployed (``proc.ca`` verifies it); otherwise a bare unbuffered reverse proxy with
    ``buffer_size``: the cost of one more loopback hop made by a C proxy, for comparison.
    """
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        return None
    folder = tempfile.mkdtemp(prefix="xorest-bench-nginx-")
    port = free_port()
    ca_path = None
    if site:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        ca_path, cert_path, key_path = (os.path.join(folder, n) for n in ("ca.pem", "cert.pem", "key.pem"))
        ca.cert_pem.write_to_path(ca_path)
        cert.private_key_and_cert_chain_pem.write_to_path(cert_path)
        cert.private_key_pem.write_to_path(key_path)
        with open(os.path.join(ROOT, "deploy", "nginx", "xorest.conf")) as fh:
            server = (fh.read().replace("@UPSTREAM@", upstream).replace("@LISTEN@", f"127.0.0.1:{port}")
                      .replace("@SERVER_NAME@", "localhost").replace("@TLS_CERTIFICATE@", cert_path)
                      .replace("@TLS_CERTIFICATE_KEY@", key_path))
    else:
        server = f"""server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://{upstream}; proxy_buffering off; proxy_http_version 1.1;
      proxy_buffer_size {buffer_size}; proxy_buffers 4 {buffer_size}; proxy_busy_buffers_size {buffer_size}; }} }}"""
    temps = "".join(f"{kind}_temp_path {folder}/{kind};\n"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = os.path.join(folder, "nginx.conf")
    with open(conf, "w") as fh:
        fh.write(f"""worker_processes 1; daemon off; pid {folder}/nginx.pid; error_log {folder}/error.log;
events {{ worker_connections 64; }}
http {{ access_log off; {temps} {server} }}
""")
    scheme = "https" if site else "http"
    proc = Process([nginx, "-c", conf, "-p", folder], ready_url=f"{scheme}://127.0.0.1:{port}/",
                   verify=ca_path or True)
    proc.url = f"{scheme}://127.0.0.1:{port}"
    proc.ca = ca_path
    return proc


def xorest_cli(env, *args, stdin=None):
    return subprocess.run([PYTHON, "-m", "xorest", *args], env=env, input=stdin, text=True,
                          capture_output=True, check=True, cwd=ROOT).stdout.strip()


def start_gateway(sim_url, workers=2, threads=16):
    """gunicorn on a fresh data directory; returns (process, base url, token)."""
    data = tempfile.mkdtemp(prefix="xorest-bench-")
    env = dict(os.environ, XOREST_DATA_DIR=data)
    xorest_cli(env, "server", "add", sim_url, "--password-stdin", stdin="password\n")
    xorest_cli(env, "user", "add", "admin@example.com", "--admin", "--password-stdin", stdin="admin-password\n")
    token = xorest_cli(env, "token", "create", "admin@example.com")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = Process([PYTHON, "-m", "xorest", "serve", "--listen", f"127.0.0.1:{port}", "--workers",
                    str(workers), "--threads", str(threads)], env=env, ready_url=base + "/rest/v0")
    return proc, base, token


def wait_loaded(base, token, expected_vms, timeout=120):
    deadline = time.monotonic() + timeout
    good = 0
    while time.monotonic() < deadline:
        count = len(requests.get(f"{base}/rest/v0/vms", cookies={"authenticationToken": token},
                                 timeout=60).json())
        good = good + 1 if count >= expected_vms else 0
        if good >= 6:
            return
        time.sleep(0.2)
    raise RuntimeError("the gateway did not load the pool")


def xapi_rpc(url):
    """A JSON-RPC ``call(method, *params)`` on a (simulated) pool, session prepended."""
    def call(method, *params):
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        return requests.post(url + "/jsonrpc", json=body, timeout=60).json()["result"]
    session = call("session.login_with_password", "root", "password")

    def call_in_session(method, *params):
        return call(method, session, *params)
    call_in_session.session = session  # for the HTTP handlers' session_id
    return call_in_session
