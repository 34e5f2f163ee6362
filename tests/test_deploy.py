"""deploy/: the systemd unit and the gunicorn configuration are valid as shipped."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT

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
