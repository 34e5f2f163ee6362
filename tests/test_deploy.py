"""deploy/: the systemd unit and the gunicorn configuration are valid as shipped."""
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from .conftest import ROOT, sim_admin

UNIT = os.path.join(ROOT, "deploy", "systemd", "xorest.service")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies_and_is_sandboxed(tmp_path):
    venv_bin = os.path.dirname(sys.executable)
    unit = open(UNIT).read()
    unit = (unit.replace("/opt/xorest/.venv/bin", venv_bin).replace("/opt/xorest/deploy", f"{ROOT}/deploy")
            .replace("WorkingDirectory=/opt/xorest", f"WorkingDirectory={ROOT}"))
    path = tmp_path / "xorest.service"
    path.write_text(unit)
    verify = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(path)],
                              capture_output=True, text=True)
    if security.returncode != 0 and "offline" in security.stderr:
        pytest.skip("this systemd cannot assess units offline")
    level = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout).group(1))
    assert level <= 4.0, security.stdout[-2000:]  # "OK" or better on systemd's scale


def test_gunicorn_config_loads(tmp_path):
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "gunicorn"), "--check-config",
                             "-c", os.path.join(ROOT, "deploy", "gunicorn.conf.py"), "wsgi:application"],
                            capture_output=True, text=True, cwd=ROOT,
                            env=dict(os.environ, XOREST_DATA_DIR=str(tmp_path)))
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_shipped_gunicorn_config_runs_one_pools_daemon(sim, tmp_path):
    """As systemd starts it (gunicorn -c deploy/gunicorn.conf.py): the pools daemon's hooks
    come with the settings, one daemon watches the pool, the workers serve it."""
    import psutil
    import requests

    from .conftest import Gateway, ServerProcess, free_port

    setup = Gateway.__new__(Gateway)  # only its CLI helper: a data directory with a server, a user, a token
    setup.data_dir = str(tmp_path / "data")
    setup.env = {**os.environ, "XOREST_DATA_DIR": setup.data_dir}
    setup.cli("server", "add", sim.url, "--username", "root", "--password-stdin", input="password\n")
    setup.cli("user", "add", "admin@example.com", "--admin", "--password-stdin", input="admin-password\n")
    token = setup.cli("token", "create", "admin@example.com").strip()
    port = free_port()
    proc = ServerProcess([os.path.join(os.path.dirname(sys.executable), "gunicorn"), "-c",
                          os.path.join(ROOT, "deploy", "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}",
                          "--workers", "2", "wsgi:application"], str(tmp_path / "gunicorn.log"), env=setup.env,
                         ready_url=f"http://127.0.0.1:{port}/rest/v0")
    try:
        children = psutil.Process(proc.process.pid).children()
        assert sum("poold" in child.cmdline() for child in children) == 1 and len(children) == 3
        deadline = time.monotonic() + 60
        while True:
            vms = requests.get(f"http://127.0.0.1:{port}/rest/v0/vms", cookies={"authenticationToken": token},
                               timeout=10).json()
            if vms or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert vms and sim_admin(sim.url, "state")["event_sessions"] >= 1
    finally:
        proc.stop()
