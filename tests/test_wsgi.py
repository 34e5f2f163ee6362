"""The app unchanged under a second WSGI server (waitress): a collection and an export."""
import os

import requests

from .conftest import PYTHON, Gateway, ServerProcess, free_port


def test_waitress_serves_collections_and_exports(tmp_path, sim):
    gw_data = Gateway.__new__(Gateway)  # reuse the CLI set-up without starting gunicorn
    gw_data.data_dir = str(tmp_path / "data")
    gw_data.env = dict(os.environ, XOREST_DATA_DIR=gw_data.data_dir)
    gw_data.cli("server", "add", sim.url, "--password-stdin", input="password\n")
    gw_data.cli("user", "add", "admin@example.com", "--admin", "--password-stdin", input="admin-password\n")
    token = gw_data.cli("token", "create", "admin@example.com").strip()
    port = free_port()
    proc = ServerProcess([PYTHON, "-m", "waitress", "--listen", f"127.0.0.1:{port}", "--threads", "8",
                          "wsgi:application"], str(tmp_path / "waitress.log"), env=gw_data.env,
                         ready_url=f"http://127.0.0.1:{port}/rest/v0")
    try:
        base, cookies = f"http://127.0.0.1:{port}", {"authenticationToken": token}
        for _ in range(100):
            vms = requests.get(f"{base}/rest/v0/vms?fields=power_state", cookies=cookies, timeout=10).json()
            if vms:
                break
        assert vms
        vdi = requests.get(f"{base}/rest/v0/vdis?fields=size&filter=size:<600000000", cookies=cookies,
                           timeout=10).json()[0]
        raw = requests.get(f"{base}{vdi['url']}.raw", cookies=cookies, timeout=60)
        assert raw.status_code == 200 and len(raw.content) == vdi["size"]
    finally:
        proc.stop()
