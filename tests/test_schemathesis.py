"""The document tested against the server: schemathesis generates requests for every operation
from the document's own schemas, positive examples (valid by the schemas) and negative ones
(each breaks them somewhere: a wrong type, a value out of range or not in the enum, a missing
required field...), and sends them to xorest under gunicorn, against a simulator of its own
(writes land there: new disks, written disks, tokens). Every answer must be documented
(status, content type, headers, body schema), none may be a 5xx, and a negative example must
be refused (a 4xx).

``make test`` runs a few examples per operation and mode; ``make fuzz`` many
(``FUZZ_EXAMPLES`` positive, ``FUZZ_NEGATIVE_EXAMPLES`` negative; ``FUZZ_MODE`` positive,
negative or all). The operations come from the document the app builds (the served one is
the same, see ``test_openapi``), so that they are known when tests are collected.

Exports (``/<collection>/<id>.xva|.vhd|.raw``) get real ids too, of small objects the
fixture makes (a VM with a 4 MiB disk, its snapshot, a template without disks), so their
answers and headers are validated live without streaming the pool's gigabytes.
"""
import os
import tempfile
import time
import zlib

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from xorest import create_app
from xorest.api import openapi

from .conftest import Gateway, start_sim

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.core.control import SkipTest  # noqa: E402  (after the skip)
from schemathesis.generation import GenerationMode  # noqa: E402

#: Examples per operation, per generation mode. Not XOREST_* variables: xorest refuses
#: unknown settings of that prefix.
EXAMPLES = {GenerationMode.POSITIVE: int(os.environ.get("FUZZ_EXAMPLES", "16")),
            GenerationMode.NEGATIVE: int(os.environ.get("FUZZ_NEGATIVE_EXAMPLES", "6"))}

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def _document():
    with tempfile.TemporaryDirectory() as data_dir:
        return openapi.build(create_app({"data_dir": data_dir}))


#: schemathesis 4's configuration: which generation modes run ("all": positive and negative);
#: no generated credentials: requests carry the session's token (a negative example would
#: spend itself on an Authorization header the session replaces; schemathesis' own probes
#: without and with wrong credentials still run).
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {"generation": {"mode": os.environ.get("FUZZ_MODE", "all"), "with-security-parameters": False}})
SCHEMA = schemathesis.openapi.from_dict(_document(), config=CONFIG)
MODES = SCHEMA.config.generation.modes
#: Streams that last as long as their client (tested in test_events.py and test_tasks.py):
#: every example would wait for its read timeout.
ENDLESS = {("GET", "/events")}
ALL_OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
OPERATIONS = [op for op in ALL_OPERATIONS if (op.method.upper(), op.path) not in ENDLESS]
RUNS = [(op, mode) for op in OPERATIONS for mode in MODES if EXAMPLES[mode] > 0]
#: Checks left out: a filter, a sort, a cursor or a disk image has a grammar no JSON schema
#: states, so a "schema-valid" one may rightly get the documented 400.
EXCLUDED = [schemathesis.checks.positive_data_acceptance,
            # replaced by not_a_crash: a documented 501 (an option xorest does not have) is an answer
            schemathesis.checks.not_a_server_error]
#: Every case run, per (operation, mode) (the counts are printed at the end).
CASES = {}
#: The collections with exports (``/<collection>/<id>.<format>``): the fixture makes small
#: objects of each, the only ones exported (another would stream a whole disk or VM).
EXPORTED = {"vms", "vm-snapshots", "vm-templates", "vdis", "vdi-snapshots"}
SMALL_DISK = 4 * 1024 * 1024


def _small_objects(url, session):
    """Ids of small objects to export, per collection: a halted VM whose only disk is a new
    4 MiB one (64 KiB written), a snapshot of it (with its disk's snapshot) and the
    templates without disks."""
    def post(path, body, status=201):
        answer = session.post(url + path, json=body, timeout=120)
        assert answer.status_code == status, (path, answer.status_code, answer.text[:500])
        return answer

    pool = session.get(f"{url}/rest/v0/pools?fields=id,default_SR", timeout=30).json()[0]
    templates = session.get(f"{url}/rest/v0/vm-templates?fields=id,$VBDs", timeout=30).json()
    bare = sorted(t["id"] for t in templates if not t["$VBDs"])
    disk = post("/rest/v0/vdis", {"srId": pool["default_SR"], "virtual_size": SMALL_DISK,
                                  "name_label": "fuzz export"}).json()["id"]
    written = session.put(f"{url}/rest/v0/vdis/{disk}.raw", data=os.urandom(65536), timeout=120)
    assert written.status_code == 204, written.text[:500]
    vm = post(f"/rest/v0/pools/{pool['id']}/actions/create_vm?sync=true",
              {"template": bare[0], "name_label": "fuzz export"}).json()["id"]
    post("/rest/v0/vbds", {"VM": vm, "VDI": disk, "bootable": True})
    snapshot = post(f"/rest/v0/vms/{vm}/actions/snapshot?sync=true",
                    {"name_label": "fuzz export"}).json()["id"]
    disk_snapshots = [u.rsplit("/", 1)[1] for u in session.get(f"{url}/rest/v0/vm-snapshots/{snapshot}/vdis",
                                                                  timeout=30).json()]
    assert disk_snapshots
    return {"vms": [vm], "vm-snapshots": [snapshot], "vm-templates": bare[:3], "vdis": [disk],
            "vdi-snapshots": disk_snapshots}


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("schemathesis")
    # --slave: host 2's address answers (HOST_IS_SLAVE, as a pool member does), so its
    # stats and plugin calls are served instead of a (documented) 503
    sim = start_sim(tmp, "--seed", "7", "--vms", "12", "--hosts", "2", "--slave", "127.0.0.2",
                    name="fuzz-sim")
    # schemathesis probes every operation with made-up Basic credentials: with throttling on,
    # those get 429 (documented, and tested in test_auth_hardening), not the 401 it checks for
    gateway = Gateway(tmp, sim.url, name="fuzz-gw", workers=2, threads=8,
                      env={"XOREST_LOGIN_DELAY_BASE": "0", "XOREST_LOGIN_MAX_FAILURES": "1000000"})
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {gateway.token}"
    gateway.exports = _small_objects(gateway.url, session)
    kept = {key for keys in gateway.exports.values() for key in keys}
    # real ids, so that generated requests also reach existing objects (not the small ones:
    # a generated DELETE or migration would take them away from the exports)
    gateway.ids = {}
    for url in session.get(f"{gateway.url}/rest/v0", timeout=30).json():
        name = url.rsplit("/", 1)[-1]
        ids = [u.rsplit("/", 1)[-1] for u in session.get(gateway.url + url, timeout=30).json()]
        gateway.ids[name] = [key for key in ids if key not in kept][:5]
    gateway.session = session
    yield gateway
    gateway.stop()
    sim.stop()
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        for mode in MODES:
            runs = {op: count for (op, run_mode), count in CASES.items() if run_mode == mode}
            print(f"\nschemathesis: {sum(runs.values())} {mode} cases over {len(runs)} operations "
                  f"({EXAMPLES[mode]} examples each at most)")
        exported = sum(count for (op, _), count in CASES.items()
                       if "{fmt}" in op and op.split()[0] in ("GET", "HEAD"))
        print(f"schemathesis: {exported} of them exports (GET/HEAD), {STEERED['exports']} of a real object")


#: Examples pointed at real objects, by kind (printed at the end).
STEERED = {"exports": 0}


def _pick(value, choices):
    """A real value instead of the generated one, for about a third of the examples
    (chosen by the generated value, so that a failing example replays)."""
    if not choices or zlib.crc32(str(value).encode()) % 3:
        return value
    return choices[zlib.crc32(str(value).encode()) % len(choices)]


def _steer(case, stack):
    """Keep the examples to what a test can afford, and point some at real objects."""
    # Credentials are the session's (a valid token): CONFIG has schemathesis generate none,
    # and any that came anyway would replace it (an empty cookie counts as none). Its own
    # probes without and with invalid credentials still run.
    for name in ("authenticationToken", "token"):
        if isinstance(case.cookies, dict):
            case.cookies.pop(name, None)
    if isinstance(case.headers, dict):
        case.headers.pop("Authorization", None)
    path = case.operation.path
    query = case.query if isinstance(case.query, dict) else None
    if path == "/tasks" and query is not None:
        query.pop("watch", None)  # a watch lasts as long as its client
    if path == "/selftest/stream" and query is not None:
        query["size"] = 4096  # the generated size may be 64 GiB, the pause an hour
        query["pause"] = 0
    params = case.path_parameters if isinstance(case.path_parameters, dict) else None
    if not params:
        return
    collection = path.split("/")[1]
    if "key" in params and isinstance(params["key"], str):
        if path.endswith(".{fmt}") and case.method.upper() in ("GET", "HEAD"):
            # only the small objects: another would stream a whole disk or VM
            chosen = _pick(params["key"], stack.exports.get(collection))
            if chosen != params["key"]:
                STEERED["exports"] += 1
                params["key"] = chosen
                if query is not None and isinstance(query.get("base"), str):
                    query["base"] = _pick(query["base"], stack.exports["vdi-snapshots"])
        else:
            params["key"] = _pick(params["key"], stack.ids.get(collection))
    if "user" in params and isinstance(params["user"], str):
        params["user"] = _pick(params["user"], ["me"])
    if query is not None and isinstance(query.get("sr"), str):
        query["sr"] = _pick(query["sr"], stack.ids.get("srs"))


def not_a_crash(response):
    """No 5xx but 501 (documented, for options xorest does not implement): a 502 or 503 here
    would be input the pool was handed and refused, or a pool that broke; both are bugs."""
    assert response.status_code < 500 or response.status_code == 501, (
        response.request.method, response.request.url, response.status_code, response.text[:500])


def documented_body(response, case):
    """A body goes out only where the document describes one: schemathesis checks a body
    against the document only where it gives its content, so an undescribed one passes."""
    if case.method.upper() == "HEAD" or not response.content:
        return
    responses = case.operation.definition.raw["responses"]
    entry = responses.get(str(response.status_code)) or responses.get("default")
    assert entry is None or entry.get("content"), (
        f"{case.operation.label} answered {response.status_code} with a body the document does not describe: "
        f"{response.content[:200]!r}")


def _settle(case, response, stack, timeout=60):
    """After an action a host or a pool accepted (a toolstack restart, a reboot, a new
    management interface...), wait until it ended and the pool is connected again: the
    next example would meet a pool the previous one took away for a while (a 503, rightly,
    but not that example's doing)."""
    if case.method.upper() != "POST" or "/actions/" not in case.operation.path or response.status_code >= 300:
        return
    if case.operation.path.split("/")[1] not in ("hosts", "pools"):
        return
    location = response.headers.get("Location")
    if response.status_code == 202 and location:
        stack.session.get(f"{stack.url}{location}?wait=true", timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        servers = stack.session.get(f"{stack.url}/rest/v0/servers?fields=status", timeout=timeout).json()
        if all(server["status"] == "connected" for server in servers):
            return
        time.sleep(0.2)
    raise AssertionError(f"the pool stayed disconnected after {case.method} {case.operation.path}")


def test_only_endless_streams_are_left_out():
    """Every operation of the document is fuzzed but ``GET /events`` (a stream that lasts
    as long as its client); a route added to the document is fuzzed by default."""
    every = {(op.method.upper(), op.path) for op in ALL_OPERATIONS}
    assert ENDLESS == {("GET", "/events")} and ENDLESS <= every
    assert every - {(op.method.upper(), op.path) for op in OPERATIONS} == ENDLESS
    assert set(MODES) == set(GenerationMode) or os.environ.get("FUZZ_MODE"), "both modes run by default"


def test_exports_of_small_objects_are_fuzzed():
    """Every export path of the document is in the run, and is one of the collections the
    fixture makes small objects of (exports of others keep generated ids)."""
    exported = {op.path.split("/")[1] for op, _ in RUNS if op.path.endswith(".{fmt}")}
    assert exported == EXPORTED


@pytest.mark.parametrize("operation,mode", RUNS, ids=[f"{op.label} {mode}" for op, mode in RUNS])
def test_the_server_answers_as_documented(operation, mode, fuzz_stack):
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES[mode], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        CASES[(operation.label, mode)] = CASES.get((operation.label, mode), 0) + 1
        _steer(case, fuzz_stack)
        response = case.call_and_validate(base_url=f"{fuzz_stack.url}/rest/v0", session=fuzz_stack.session,
                                          timeout=60, excluded_checks=EXCLUDED)
        not_a_crash(response)
        documented_body(response, case)
        _settle(case, response, fuzz_stack)

    try:
        run()
    except (Unsatisfiable, SkipTest):
        if mode.is_positive:
            raise
        # GET /ping takes nothing; DELETE /vms/{key} a path of free strings (any id is valid
        # until looked up), which a negative example cannot break and still send
        pytest.skip("nothing in this operation's requests can be made invalid and still be sent")
