"""The real stack: nginx (the project's site file) -> gunicorn -> xorest -> simulator, with curl."""
import json
import os
import shutil
import subprocess
import time

import pytest
import requests
import zstandard

from .conftest import NGINX, Gateway, Nginx, sim_admin, start_sim

pytestmark = [pytest.mark.stack,
              pytest.mark.skipif(NGINX is None or shutil.which("curl") is None,
                                 reason="nginx or curl is not installed")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The deployment as shipped: nginx (TLS) -> Unix socket -> gunicorn -> simulator."""
    tmp = tmp_path_factory.mktemp("stack")
    sim = start_sim(tmp, "--vms", "10", "--seed", "31")
    gw = Gateway(tmp, sim.url, name="gw-stack", env={"XOREST_TRUSTED_PROXIES": "unix"},
                 unix_socket=str(tmp / "gunicorn.sock"))
    nginx = Nginx(tmp, f"unix:{gw.unix_socket}")
    global CA
    CA = nginx.ca
    yield sim, gw, nginx.url, nginx
    nginx.stop()
    gw.stop()
    sim.stop()


CA = None  # the stack's CA, for curl


def curl(*args, check=True):
    result = subprocess.run(["curl", "-sS", "--cacert", CA, *args], capture_output=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_contract_curl_lines(stack, tmp_path):
    sim, gw, base, _ = stack
    cookie = f"authenticationToken={gw.token}"
    root = json.loads(curl("-b", cookie, f"{base}/rest/v0/").stdout)
    assert "/rest/v0/vms" in root
    fields = json.loads(curl("-b", cookie, f"{base}/rest/v0/vms?fields=name_label,power_state").stdout)
    assert fields and set(fields[0]) == {"name_label", "power_state", "href", "url"}
    nd = curl("-b", cookie, f"{base}/rest/v0/vms?fields=name_label,power_state&ndjson").stdout
    assert [json.loads(line) for line in nd.splitlines()] == fields
    halted = json.loads(curl("-b", cookie, f"{base}/rest/v0/vms?filter=power_state:Halted").stdout)[0]
    out = tmp_path / "myVM.xva"
    with open(out, "wb") as fh:
        subprocess.run(["curl", "-sS", "--cacert", CA, "-f", "-b", cookie, f"{base}{halted}.xva?compress=zstd"],
                       stdout=fh, check=True, timeout=120)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(out.read_bytes())[257:262] == b"ustar"
    vdi = json.loads(curl("-b", cookie, f"{base}/rest/v0/vdis?filter=size:<600000000").stdout)[0]
    disk = tmp_path / "myDisk.vhd"
    with open(disk, "wb") as fh:
        subprocess.run(["curl", "-sS", "--cacert", CA, "-f", "-b", cookie, f"{base}{vdi}.vhd"], stdout=fh, check=True,
                       timeout=120)
    assert disk.read_bytes()[:8] == b"conectix" and disk.read_bytes()[-512:-504] == b"conectix"


def test_truncation_through_nginx_is_visible(stack, tmp_path):
    sim, gw, base, _ = stack
    cookie = f"authenticationToken={gw.token}"
    halted = json.loads(curl("-b", cookie, f"{base}/rest/v0/vms?filter=power_state:Halted").stdout)[0]
    sim_admin(sim.url, "faults", {"export_drop_after": 6 * 1024 * 1024})
    try:
        result = curl("-f", "-o", str(tmp_path / "cut.xva"), "-b", cookie, f"{base}{halted}.xva", check=False)
    finally:
        sim_admin(sim.url, "faults", {"reset": True})
    assert result.returncode == 18, result  # "transfer closed with outstanding read data remaining"


def test_forwarded_headers_and_secure_cookie(stack):
    sim, gw, base, nginx = stack
    token = gw.cli("token", "create", "admin@example.com", "--expires", "62s").strip()
    time.sleep(2.5)
    response = requests.get(f"{base}/rest/v0/hosts", cookies={"authenticationToken": token},
                            headers={"X-Forwarded-Proto": "http"}, timeout=10, verify=nginx.ca)
    # nginx overwrites X-Forwarded-Proto with its own scheme (https): the renewed cookie is Secure
    assert response.status_code == 200 and "Secure" in response.headers["Set-Cookie"]
    # the TLS server's own headers
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Server"] == "nginx"  # server_tokens off: no version
    # a local process straight to gunicorn's TCP port is not the proxy, whatever it claims
    token = gw.cli("token", "create", "admin@example.com", "--expires", "62s").strip()
    time.sleep(2.5)
    direct = requests.get(f"{gw.url}/rest/v0/hosts", cookies={"authenticationToken": token},
                          headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert direct.status_code == 200 and "Secure" not in direct.headers["Set-Cookie"]


def test_forwarded_headers_ignored_from_untrusted_addresses(gateway):
    token = gateway.cli("token", "create", "admin@example.com", "--expires", "62s").strip()
    time.sleep(2.5)
    response = requests.get(f"{gateway.url}/rest/v0/hosts", cookies={"authenticationToken": token},
                            headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert response.status_code == 200 and "Secure" not in response.headers["Set-Cookie"]


def test_export_headers_survive_the_proxy(stack):
    sim, gw, base, _ = stack
    vdi = requests.get(f"{base}/rest/v0/vdis?filter=size:<600000000", timeout=10, verify=stack[3].ca,
                       cookies={"authenticationToken": gw.token}).json()[0]
    response = requests.get(f"{base}{vdi}.raw", cookies={"authenticationToken": gw.token}, timeout=60,
                            stream=True, verify=stack[3].ca)
    assert response.status_code == 200 and response.headers["Content-Length"]
    assert response.headers["Content-Disposition"].startswith("attachment")
    response.close()


def test_selftest_reveals_a_short_proxy_idle_timeout(stack, tmp_path):
    sim, gw, base, _ = stack
    cookie = f"authenticationToken={gw.token}"
    sized = curl("-f", "-o", "/dev/null", "-w", "%{size_download}", "-b", cookie,
                 f"{base}/rest/v0/selftest/stream?size=5M&pause=1.5")
    assert sized.stdout == b"5242880"  # the project's site waits through the silence
    # the same site with a 1 s idle timeout, as many default proxies have
    short = Nginx(tmp_path, f"unix:{gw.unix_socket}", name="nginx-short",
                  adjust=lambda site: site.replace("proxy_read_timeout 3600s", "proxy_read_timeout 1s"))
    short_url = short.url
    try:
        for length in ("true", "false"):
            cut = curl("--cacert", short.ca, "-f", "-o", "/dev/null", "-b", cookie,
                       f"{short_url}/rest/v0/selftest/stream?size=5M&pause=3&length={length}", check=False)
            assert cut.returncode in (18, 92), cut  # a visible failure, not a short file (92: HTTP/2 stream)
        assert curl("--cacert", short.ca, "-f", "-o", "/dev/null", "-b", cookie,
                    f"{short_url}/rest/v0/selftest/stream?size=5M").returncode == 0
    finally:
        short.stop()


def test_disk_import_through_nginx(stack, tmp_path):
    sim, gw, base, _ = stack
    cookie = f"authenticationToken={gw.token}"
    vdi = json.loads(curl("-b", cookie, f"{base}/rest/v0/vdis?filter=size:<600000000%20!read_only%3F").stdout)[0]
    upload = tmp_path / "part.raw"
    upload.write_bytes(os.urandom(20 << 20))  # above the site's 16 MiB limit for JSON bodies
    put = curl("-f", "-T", str(upload), "-w", "%{http_code}", "-b", cookie, f"{base}{vdi}.raw")
    assert put.stdout == b"204"
    back = subprocess.run(["curl", "-sSf", "--cacert", CA, "-b", cookie, f"{base}{vdi}.raw"], capture_output=True,
                          timeout=120).stdout
    assert back[:20 << 20] == upload.read_bytes()
    # a new disk from the same body, and a VM from an XVA: the import paths are unlimited too
    sr = json.loads(curl("-b", cookie, f"{base}{vdi}").stdout)["$SR"]
    created = curl("-f", "-T", str(upload), "-X", "POST", "-b", cookie, f"{base}/rest/v0/srs/{sr}/vdis?raw")
    assert len(created.stdout.decode()) == 36  # the new disk's uuid
    pool = json.loads(curl("-b", cookie, f"{base}/rest/v0/pools").stdout)[0]
    halted = json.loads(curl("-b", cookie, f"{base}/rest/v0/vms?filter=power_state:Halted").stdout)[0]
    xva = tmp_path / "vm.xva"
    with open(xva, "wb") as fh:
        subprocess.run(["curl", "-sSf", "--cacert", CA, "-b", cookie, f"{base}{halted}.xva"], stdout=fh, check=True,
                       timeout=120)
    assert xva.stat().st_size > 16 << 20
    vm = curl("-f", "-T", str(xva), "-X", "POST", "-b", cookie, f"{base}{pool}/vms")
    assert len(vm.stdout.decode()) == 36
