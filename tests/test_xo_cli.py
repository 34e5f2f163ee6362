"""Xen Orchestra's own ``xo-cli``, run verbatim against xorest: ``--createToken``,
``create-token``, ``register`` (the password typed at its prompt, on a terminal), then
``list-commands``, ``list-objects`` and ``vm.start`` with the registered token.

npm's registry does not have ``xo-cli`` (nor the ``xo-lib`` 0.11 it needs), so xo-cli is
taken from Xen Orchestra's repository (``packages/xo-cli`` and ``packages/xo-lib``, the
sources those packages are published from) and its dependencies from npm; xo-lib is
compiled to CommonJS with esbuild, as its own build does with babel.  Nothing of it is
kept in this repository: it is built in a temporary folder, once per commit.
"""
import json
import os
import pty
import select
import shutil
import subprocess
import tempfile
import time

import pytest
import requests

from .test_sim import JsonRpc

#: Where Xen Orchestra's repository is (a bare git repository), if this machine has it.
XO_REPOSITORY = os.environ.get("XO_REPOSITORY", "/work/.mirror/vatesfr+xen-orchestra/repo")


def _run(args, cwd):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.skip(f"{' '.join(args[:3])} failed: {result.stderr[-300:]}")


def xo_cli():
    """``[node, path of xo-cli's index.mjs]``, built from Xen Orchestra's repository,
    or skip the test (no repository, node, npm or registry)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node or npm is not installed")
    if not os.path.isdir(XO_REPOSITORY):
        pytest.skip(f"Xen Orchestra's repository is not at {XO_REPOSITORY} (set XO_REPOSITORY)")
    commit = subprocess.run(["git", "--git-dir", XO_REPOSITORY, "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    folder = os.path.join(tempfile.gettempdir(), f"xorest-xo-cli-{commit[:12]}")
    lib, cli = os.path.join(folder, "packages", "xo-lib"), os.path.join(folder, "packages", "xo-cli")
    if not os.path.exists(os.path.join(folder, "built")):
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        archive = subprocess.run(["git", "--git-dir", XO_REPOSITORY, "archive", commit, "packages/xo-cli",
                                  "packages/xo-lib"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        quiet = ["--no-audit", "--no-fund", "--omit=dev"]
        _run([npm, "install", *quiet], lib)
        _run([npm, "install", "--prefix", os.path.join(folder, "tools"), "--no-audit", "--no-fund", "esbuild"],
             folder)
        _run([os.path.join(folder, "tools", "node_modules", ".bin", "esbuild"), "src/index.js", "--format=cjs",
              "--platform=node", "--outfile=dist/index.js"], lib)
        _run([npm, "install", *quiet, "../xo-lib"], cli)
        open(os.path.join(folder, "built"), "w").close()
    return [node, os.path.join(cli, "index.mjs")]


class XoCli:
    """Runs xo-cli with its own HOME (its configuration is ``$HOME/.config/xo-cli``)."""

    def __init__(self, home):
        self.command = xo_cli()
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("XDG_")}
        self.env.update(HOME=str(home), NO_COLOR="1")

    def __call__(self, *args, password=None, timeout=60):
        """``(exit code, stdout, stderr)``; ``password`` is typed at its prompt, on a
        terminal (xo-cli reads it in raw mode: a pipe would not do)."""
        master, terminal = pty.openpty()
        proc = subprocess.Popen([*self.command, *args], stdin=terminal, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env)
        os.close(terminal)
        try:
            if password is not None:
                prompt = b""
                deadline = time.monotonic() + timeout
                while b"Password: " not in prompt and time.monotonic() < deadline:
                    ready, _, _ = select.select([proc.stdout], [], [], 1)
                    if ready:
                        prompt += os.read(proc.stdout.fileno(), 100)
                    elif proc.poll() is not None:
                        break
                assert b"Password: " in prompt, (prompt, proc.stderr.read())
                os.write(master, password.encode() + b"\r")
                out, err = proc.communicate(timeout=timeout)
                out = prompt + out
            else:
                out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(master)
        return proc.returncode, out.decode(), err.decode()


def _token(out):
    return out.strip().splitlines()[-1].strip()


def _reads_vms(gateway, token):
    return requests.get(gateway.url + "/rest/v0/vms", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 200


def test_xo_cli_creates_tokens_and_calls(gateway, sim, tmp_path):
    cli = XoCli(tmp_path)

    # the command the REST API's document gives, typed as a user would (a deprecated spelling)
    code, out, err = cli("--createToken", gateway.url, "admin@example.com", password="admin-password")
    assert code == 0, err
    assert "Successfully logged with admin@example.com" in err and "Authentication token created" in err
    assert out.startswith("Password: ") and "admin-password" not in out
    first = _token(out)
    assert len(first) == 43 and _reads_vms(gateway, first)

    code, out, err = cli("create-token", gateway.url, "admin@example.com", password="admin-password")
    assert code == 0, err
    second = _token(out)
    assert second != first and _reads_vms(gateway, second)

    code, out, err = cli("create-token", gateway.url, "admin@example.com", password="wrong-password")
    assert code == 1 and "invalid credentials" in err

    code, out, err = cli("register", gateway.url, "admin@example.com", password="admin-password")
    assert code == 0, err
    with open(tmp_path / ".config" / "xo-cli" / "config.json") as fh:
        registered = json.load(fh)
    assert registered["server"] == gateway.url and _reads_vms(gateway, registered["token"])

    code, out, err = cli("list-commands", "vm.*")
    assert code == 0, err
    assert "vm.start id=<string> [host=<string>]" in out and "vm.stop" in out

    code, out, err = cli("list-objects", "type=VM")
    assert code == 0, err
    listed = {obj["id"] for obj in json.loads(out)}
    assert listed == {url.rsplit("/", 1)[1] for url in gateway.get("/rest/v0/vms").json()}

    halted = gateway.get("/rest/v0/vms?filter=power_state:Halted&fields=id,name_label").json()
    vm = min(halted, key=lambda v: v["id"])
    code, out, err = cli("vm.start", f"id={vm['id']}")
    try:
        assert code == 0 and out.strip() == "true", err
        assert gateway.get(f"/rest/v0/vms/{vm['id']}").json()["power_state"] == "Running"
        tasks = gateway.get(f"/rest/v0/vms/{vm['id']}/tasks?fields=properties,status").json()
        assert any(t["properties"]["name"] == "API call: vm.start" and t["status"] == "success" for t in tasks)
        code, out, err = cli("vm.start", f"id={vm['id']}")
        assert code == 1 and "VM state is running but should be halted" in err and vm["id"] in err
    finally:
        rpc = JsonRpc(sim.url)
        ref = rpc("VM.get_by_uuid", vm["id"])
        if rpc("VM.get_power_state", ref) != "Halted":
            rpc("VM.hard_shutdown", ref)
    code, out, err = cli("vm.copy", f"id={vm['id']}")
    assert code == 1 and "method not found" in err
