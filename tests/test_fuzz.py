"""Hostile input: random filters, values, query strings, paths, headers and cookies."""
import io
import json
import re
import socket
import string
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xorest import create_app
from xorest.filter import FilterError, RegexTimeout, evaluation_budget, parse

FILTER_ALPHABET = string.ascii_letters + string.digits + " \t:!?|()<>=\"/*\\._-$#@,'éß日😀\u00a0\ufeff"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=FILTER_ALPHABET, max_size=40), st.lists(json_values, max_size=3))
def test_parser_and_matcher_never_crash(text, values):
    try:
        node = parse(text)
    except FilterError as exc:
        assert str(exc)
        return
    canonical = str(node)
    if "e+" not in canonical:  # comparisons >= 1e21 do not round-trip (as in JavaScript)
        assert parse(canonical) == node, canonical
    with evaluation_budget(0.5):
        for value in values:
            try:
                assert node.match(value) in (True, False)
            except RegexTimeout:
                pass


@pytest.mark.parametrize("text", ["(" * 5000, "!" * 5000 + "a", "a:" * 3000 + "b", "|(" * 3000])
def test_deep_nesting_is_an_error_not_a_crash(text):
    with pytest.raises(FilterError):
        parse(text)


def test_catastrophic_regex_is_bounded():
    node = parse("name_label:/^(a|a)*$/")  # exponential backtracking
    objects = [{"name_label": "a" * 28 + "!"} for _ in range(100)]
    with pytest.raises(RegexTimeout):
        with evaluation_budget(0.1):
            for obj in objects:
                node.match(obj)


@pytest.mark.parametrize("text, subject", [
    ("name_label:/[]|^(a|a)+$]/", "a" * 24),  # JS's empty class once hid the group from the static check
    ("name_label:/^(?:a|a)+$/", "a" * 30 + "!"),
    ("name_label:/(?=(a|a)+$)/", "a" * 30 + "!"),
    ("/^(a|a)+$/", "a" * 30 + "!"),  # the same, over every string of the object
])
def test_every_regex_search_is_bounded(text, subject):
    """Whatever the pattern, evaluation stops at the budget (plus one search's overshoot)."""
    node = parse(text)
    started = time.monotonic()
    with pytest.raises(RegexTimeout):
        with evaluation_budget(0.2):
            for _ in range(50):
                node.match({"name_label": subject, "tags": [subject]})
    assert time.monotonic() - started < 5  # unbounded, these take minutes to hours


def test_searches_outside_a_budget_each_get_their_own():
    """A search made outside any budget must not leave a deadline behind for later ones."""
    node = parse("name_label:/^(a|a)+$/")
    with pytest.raises(RegexTimeout):
        node.match({"name_label": "a" * 40 + "!"})
    time.sleep(1.1)  # past DEFAULT_BUDGET: a leaked deadline would fail every later search
    assert parse("name_label:/web/").match({"name_label": "web-01"})


@pytest.mark.parametrize("glob, subject, expected", [
    ("web*01", "WEB-prod-01", True), ("web*01", "web-prod\n01", False), ("web*01", "x\nweb-01", True),
    ("a*b*c", "cba abc", True), ("a*b*c", "cba acb", False), ("*", "", True), ("a**b", "ab", True),
    ("ß*x", "SS-x", False), ("a*b", "a\u2028b", False),
])
def test_globs_match_in_linear_time_as_complex_matcher_does(glob, subject, expected):
    assert parse(f"name:{glob}").match({"name": subject}) is expected


def test_required_literals_only_skip_what_cannot_match():
    from xorest.filter.regex import required_literals

    assert required_literals("^web-\\d+$") == ("web-",)
    for pattern in ("a|b", "(ab)?", "a?", "[abc]", "\\x41", "a{0}", "[]|x", "(a)|b"):
        assert required_literals(pattern) == (), pattern
    # every pattern still finds what JavaScript finds
    cases = [("a{2}b", "aab"), ("x(?=y)yz", "xyz"), ("\\x41bc", "Abc"), ("ab?c", "ac"), ("(a|b)c", "bc")]
    for pattern, subject in cases:
        assert parse(f"n:/{pattern}/").match({"n": subject}), pattern


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app({"data_dir": str(tmp_path_factory.mktemp("fuzz"))})
    services = app.extensions["xorest"]
    services.pools.ensure_started = lambda: False  # no pools: the cache is filled below
    user = services.auth.add_user("admin@example.com", "admin-password", "pool-admin")
    token, _ = services.auth.issue_token(user)
    vms = {f"id-{i}": ("vms", {"id": f"id-{i}", "type": "VM", "name_label": f"web-{i}", "power_state":
                              "Running" if i % 2 else "Halted", "tags": ["prod"] if i % 3 else [],
                              "CPUs": {"number": i % 8}, "$pool": "p"}) for i in range(200)}
    services.cache.apply("fuzz", vms, reset=True)
    test_client = app.test_client()
    test_client.set_cookie("authenticationToken", token)
    return test_client


query_text = st.text(alphabet=string.printable + "é日\u0000", max_size=30)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["filter", "limit", "fields", "ndjson", "compress", "sort", "after",
                                        "use_snapshot", "x", ""]),
                       query_text, max_size=4),
       st.sampled_from(["/rest/v0/vms", "/rest/v0/vms/id-1", "/rest/v0/vms/id-1.xva", "/rest/v0/nope",
                        "/rest/v0", "/rest/v0/servers", "/rest/v0/users"]))
def test_query_parameters_never_500(client, query, path):
    response = client.get(path, query_string=query)
    assert response.status_code < 500 or response.status_code in (502, 503), response.data
    assert response.headers["Content-Type"].startswith(("application/json", "application/x-ndjson"))


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                         st.text(alphabet=string.printable + "é", max_size=20))
token_fields = st.sampled_from(["expiresIn", "description", "client", "x"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.dictionaries(token_fields, st.one_of(json_scalars, st.lists(json_scalars, max_size=3),
                                                         st.dictionaries(st.text(max_size=5), json_scalars,
                                                                         max_size=2)), max_size=3),
                 st.lists(json_scalars, max_size=3), json_scalars),
       st.sampled_from(["json", "broken", "binary"]))
def test_token_request_bodies_never_500(client, body, form):
    """NaN, Infinity, huge numbers, wrong types, broken JSON: a 201 or a 400, nothing else."""
    import json as stdjson

    if form == "json":
        data = stdjson.dumps(body, allow_nan=True)  # writes NaN/Infinity as JavaScript would not
    elif form == "broken":
        data = stdjson.dumps(body, allow_nan=True)[:-1] + "\x00"
    else:
        data = bytes(range(256))
    response = client.post("/rest/v0/users/me/authentication_tokens", data=data,
                           headers={"Content-Type": "application/json"})
    assert response.status_code in (201, 400), response.data
    assert response.headers["Content-Type"] == "application/json"
    if response.status_code == 201:
        assert response.get_json()["token"]["expiration"] > 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["PUT /rest/v0/vdis/id-1.raw", "PUT /rest/v0/vdis/id-1.vhd", "POST /rest/v0/srs/x/vdis",
                        "PUT /rest/v0/vms/id-1.xva", "POST /rest/v0/vms"]),
       st.dictionaries(st.sampled_from(["name_label", "name_description", "raw", "x"]), query_text, max_size=3),
       st.binary(max_size=64), st.booleans())
def test_upload_requests_never_500(client, target, query, body, with_length):
    method, path = target.split(" ")
    # a bare input stream is a body without Content-Length, as a chunked upload is
    body_args = {"data": body} if with_length else {"input_stream": io.BytesIO(body)}
    response = client.open(path, method=method, query_string=query, **body_args)
    assert response.status_code < 500 or response.status_code in (502, 503), response.data
    assert response.headers["Content-Type"].startswith("application/json")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["size", "pause", "length", "x"]), query_text, max_size=3))
def test_selftest_parameters_never_500(client, query):
    response = client.get("/rest/v0/selftest/stream", query_string=query, buffered=False)
    try:
        assert response.status_code in (200, 400), response.status_code
        if response.status_code == 400:
            assert "error" in response.get_json()
    finally:
        response.close()  # the body (up to 64 GiB, a pause) is not needed


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=string.printable + "é\u0000%", max_size=60))
def test_paths_never_500(client, path):
    response = client.get("/rest/v0/" + path)
    assert response.status_code < 500 or response.status_code in (502, 503)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80), st.text(max_size=80))
def test_auth_headers_and_cookies_never_500(client, cookie, authorization):
    from werkzeug.test import EnvironBuilder

    headers = {}
    try:
        EnvironBuilder(headers={"Authorization": authorization})
        headers["Authorization"] = authorization
    except ValueError:
        pass
    fresh = client.application.test_client()
    fresh.set_cookie("authenticationToken", cookie.replace(";", "").replace("\n", ""))
    try:
        response = fresh.get("/rest/v0/vms", headers=headers)
    except ValueError:
        return  # the client library refused to send it; nothing reached the app
    assert response.status_code in (200, 400, 401, 403, 429)


def raw_http(gateway, request_bytes, port=None):
    """Send raw bytes; the answer's head and, when it has a Content-Length, its body."""
    host, port = "127.0.0.1", port or gateway.port
    with socket.create_connection((host, port), timeout=10) as sock:
        try:
            sock.sendall(request_bytes)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head + b"\r\n")
                if length is None or len(body) >= int(length.group(1)):
                    break
    return data


@pytest.mark.parametrize("request_bytes, statuses", [
    (b"GET /rest/v0/vms HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", (b"431",)),
    # a filter of filter.MAX_LENGTH characters, percent-encoded at worst, fits the request line
    (b"GET /rest/v0/vms?filter=%22" + b"%E2%82%AC" * 4094 + b"%22 HTTP/1.1\r\nHost: x\r\n\r\n", (b"401",)),
    (b"GET /rest/v0/vms?filter=" + b"a" * (3 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n", (b"431",)),
    (b"GET /rest/v0/vms HTTP/1.1\nHost: x\n\n", (b"400",)),
    (b"FOO\x00BAR / HTTP/1.1\r\n\r\n", (b"400",)),
    (b"GET /rest/v0/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", (b"401", b"404")),
    (b"GET /rest/v0/vms/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", (b"400", b"401", b"404")),
    (b"GET /rest/v0/vms HTTP/1.1\r\nHost: x\r\nCookie: authenticationToken=\xff\xfe\r\n\r\n", (b"400", b"401")),
    (b"GET /rest/v0/vms?limit=1e999 HTTP/1.1\r\nHost: x\r\n\r\n", (b"400", b"401")),
    (b"GET /rest/v0/vms HTTP/1.1\r\nHost: x\r\nCookie: authenticationToken=a\r\n X-Admin: 1\r\n\r\n",
     (b"400", b"401")),
])
def test_raw_hostile_requests_through_gunicorn(gateway, request_bytes, statuses):
    """Refused with the right status and, like every error, a JSON body (gunicorn's own too)."""
    data = raw_http(gateway, request_bytes)
    status = data.split(b" ", 2)[1] if data.startswith(b"HTTP/") else b""
    assert status in statuses, data[:300]
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    assert isinstance(json.loads(body)["error"], str)


def test_huge_limit_and_cookie_injection(gateway):
    assert gateway.get("/rest/v0/vms?limit=" + "9" * 400).status_code == 400
    user_token = gateway.cli("token", "create", "user@example.com").strip()
    injected = gateway.get("/rest/v0/vms?limit=1", cookies={"authenticationToken": user_token + "; admin=1"})
    assert injected.status_code == 403  # the smuggled cookie is just another cookie


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xff), max_size=60),
                 st.lists(st.text(alphabet='W/"*, abcdef0123456789', max_size=30), max_size=4).map(", ".join)),
       st.sampled_from(["/rest/v0/vms", "/rest/v0/vms?fields=*", "/rest/v0/vms?markdown=true", "/rest/v0/vms/id-1",
                        "/rest/v0"]))
def test_if_none_match_never_500(client, header, path):
    """Entity tags as clients send them, well or badly formed: a 200 or a 304."""
    response = client.get(path, headers={"If-None-Match": header})
    assert response.status_code in (200, 304), response.data


#: Numbers with units as an attacker writes them (see test_http_hardening for the timing side).
unit_texts = st.one_of(st.from_regex(r"\A *-?[0-9. ]{0,300}[a-zA-Z ]{0,20}\Z", fullmatch=True),
                       st.integers(1, 5000).map(lambda n: "1" * n + "x"),
                       st.integers(1, 5000).map(lambda n: "1" + " " * n + "x"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(unit_texts)
def test_durations_and_sizes_never_500(client, text):
    token = client.post("/rest/v0/users/me/authentication_tokens", json={"expiresIn": text})
    assert token.status_code in (201, 400), token.data
    selftest = client.get("/rest/v0/selftest/stream", query_string={"size": text, "pause": "0"}, buffered=False)
    try:
        assert selftest.status_code in (200, 400), selftest.data
    finally:
        selftest.close()


def _xva_like(draw_bytes, kind):
    """Bodies that look more or less like an XVA or a VHD, so the checks past the first
    bytes are reached: a tar header naming another member, gzip or zstd magic followed by
    noise, a VHD footer with a random size."""
    import tarfile

    if kind == "tar":
        member = tarfile.TarInfo("Ref:1/00000000")
        member.size = len(draw_bytes)
        return member.tobuf() + draw_bytes
    if kind == "ova":
        member = tarfile.TarInfo("ova.xml")
        member.size = len(draw_bytes)
        return member.tobuf() + draw_bytes + b"\0" * 1024
    if kind == "gzip":
        return b"\x1f\x8b\x08\x00" + draw_bytes
    if kind == "zstd":
        return b"\x28\xb5\x2f\xfd" + draw_bytes
    if kind == "vhd":
        return b"conectix" + draw_bytes.ljust(600, b"\0")
    return draw_bytes


@pytest.mark.stack
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2048), st.sampled_from(["tar", "ova", "gzip", "zstd", "vhd", "plain"]),
       st.sampled_from(["pool-vms", "sr-vdis-vhd", "vdi-vhd"]))
def test_upload_bodies_through_the_stack_never_500(gateway, noise, kind, target):
    """Bodies that reach the pool's own checks (real disks, SRs and pools of the simulator):
    the client's mistake is a 400, never a 5xx."""
    import requests

    body = _xva_like(noise, kind)
    pool = gateway.get("/rest/v0/pools").json()[0]
    sr = gateway.get("/rest/v0/srs?filter=content_type:user&limit=1").json()[0]
    cookies = {"authenticationToken": gateway.token}
    if target == "pool-vms":
        response = requests.post(f"{gateway.url}{pool}/vms", data=body, cookies=cookies, timeout=60)
    elif target == "sr-vdis-vhd":
        response = requests.post(f"{gateway.url}{sr}/vdis", data=body, cookies=cookies, timeout=60)
    else:
        disk = gateway.small_disk("size")
        response = requests.put(f"{gateway.url}{disk['href']}.vhd", data=body, cookies=cookies, timeout=60)
    assert response.status_code in (400, 413), (response.status_code, response.text[:300])
    assert "error" in response.json()
