"""Big XAPI calls made in order by a forked process (the first load's parts): the same
answers as calling directly, over JSON-RPC and XML-RPC, a pool's error raised in the
caller, and no process left behind however the caller leaves."""
import json

import psutil
import pytest

from xorest.xapi import XapiClient, XapiError
from xorest.xapi.prefetch import prefetched

from .conftest import start_sim


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    sim = start_sim(tmp_path_factory.mktemp("prefetch-sim"), "--vms", "12", "--seed", "5")
    yield sim
    sim.stop()


def _client(sim, protocol="auto"):
    client = XapiClient(sim.url, "root", "password", protocol=protocol)
    client.login()
    return client


def _undecoded(body):
    return {"result": body}


def _children():
    """This process's live children (the simulator's among them)."""
    return {child.pid for child in psutil.Process().children() if child.status() != psutil.STATUS_ZOMBIE}


@pytest.mark.parametrize("protocol", ["json", "xml"])
def test_answers_come_in_order_as_a_direct_call_gives_them(sim, protocol):
    before, client = _children(), _client(sim, protocol)
    try:
        calls = [("VM.get_all", (), None), ("host.get_all", (), None), ("pool.get_all", (), None)]
        direct = [client.call(method, *args) for method, args, _ in calls]
        with prefetched(client, calls, _undecoded) as answers:  # XML-RPC answers come decoded
            got = list(answers)
        if protocol == "json":  # the bytes of each answer, as they came
            got = [json.loads(body)["result"] for body in got]
        assert got == direct and all(direct)
        assert client.call("pool.get_all") == direct[2]  # the caller's own connection still works
    finally:
        client.close()
    assert _children() == before


def test_a_pool_error_is_raised_in_the_caller(sim):
    before, client = _children(), _client(sim)
    try:
        calls = [("VM.get_all", (), None), ("VM.get_record", ("OpaqueRef:nope",), None), ("host.get_all", (), None)]
        with prefetched(client, calls, json.loads) as answers:  # decoded there: the error is found there
            assert next(answers)
            with pytest.raises(XapiError) as failure:
                next(answers)
        assert failure.value.code == "HANDLE_INVALID"
    finally:
        client.close()
    assert _children() == before


def test_leaving_early_kills_the_fetcher(sim):
    before, client = _children(), _client(sim)
    try:
        calls = [("VM.get_all", (), None)] * 50
        with prefetched(client, calls, _undecoded) as answers:
            next(answers)
            assert len(_children() - before) == 1  # the fetcher, still asking
        assert _children() == before
    finally:
        client.close()
