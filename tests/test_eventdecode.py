"""The first load's typed decoder: the same answer as decoding everything and cutting each
record afterwards, on the simulator's whole pool and on answers of unexpected shapes."""
import json

import pytest
import requests

from xorest.services.mapping import kept_fields
from xorest.xapi import XapiError, codec
from xorest.xapi.eventdecode import EventDecoder
from xorest.xapi.watcher import WATCHED_CLASSES

from .conftest import start_sim

FIELDS = kept_fields()
_CLASS = {cls.lower(): cls for cls in WATCHED_CLASSES}


@pytest.fixture(scope="module")
def whole_pool_answer(tmp_path_factory):
    """The raw JSON-RPC answer of a full ``event.from`` from the simulator."""
    sim = start_sim(tmp_path_factory.mktemp("eventdecode-sim"), "--vms", "40", "--seed", "11")
    try:
        def rpc(method, *params):
            return requests.post(sim.url + "/jsonrpc", timeout=60, json={
                "jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        session = rpc("session.login_with_password", "root", "password", "1.0", "test").json()["result"]
        yield rpc("event.from", session, WATCHED_CLASSES, "", 0.0).content
    finally:
        sim.stop()


def _cut(event):
    """What the decoder must give for one generically decoded event."""
    fields = FIELDS[_CLASS[event["class"]]]
    snapshot = event.get("snapshot")
    if snapshot is not None and fields is not None:
        snapshot = {key: value for key, value in snapshot.items() if key in fields}
    return {"class": event["class"], "ref": event["ref"], "operation": event["operation"], "snapshot": snapshot}


def test_the_whole_pool_decodes_as_decoding_all_and_cutting(whole_pool_answer):
    expected = json.loads(whole_pool_answer)["result"]
    decoded = codec.json_response(whole_pool_answer, EventDecoder(FIELDS))
    assert decoded["token"] == expected["token"]
    assert len(decoded["events"]) == len(expected["events"]) > 300
    assert decoded["events"] == [_cut(event) for event in expected["events"]]
    classes = {event["class"] for event in decoded["events"]}
    assert {"vm", "vbd", "vdi", "host", "pool", "sr"} <= classes
    vm = next(event["snapshot"] for event in decoded["events"] if event["class"] == "vm")
    assert "name_label" in vm and "VBDs" in vm and "last_booted_record" not in vm  # cut, not emptied


def test_values_keep_their_types():
    snapshot = {"uuid": "ü-1", "name_label": "caf\u00e9 \U0001F600", "memory_static_max": 2**62 + 1,
                "VCPUs_max": 4, "other_config": {"a": {"b": [1, 2.5, None, True]}}, "tags": [],
                "power_state": "Running", "is_a_template": False, "bios_strings": {}}
    body = json.dumps({"result": {"events": [{"id": "1", "class": "vm", "operation": "add",
                                              "ref": "OpaqueRef:1", "snapshot": snapshot}], "token": "t"}})
    events = codec.json_response(body.encode(), EventDecoder(FIELDS))["events"]
    assert events[0]["snapshot"] == {key: value for key, value in snapshot.items() if key in FIELDS["VM"]}
    assert type(events[0]["snapshot"]["memory_static_max"]) is int


def test_unexpected_shapes_are_decoded_whole():
    """A class the decoder does not know, a missing snapshot, a token of another type: the
    answer is still decoded, generically (only slower)."""
    events = [{"class": "unknown_class", "operation": "add", "ref": "OpaqueRef:1", "snapshot": {"x": 1}},
              {"class": "vm", "operation": "del", "ref": "OpaqueRef:2"}]
    body = json.dumps({"result": {"events": events, "token": 7}}).encode()
    assert codec.json_response(body, EventDecoder(FIELDS)) == {"events": events, "token": 7}
    deleted = json.dumps({"result": {"events": events[1:], "token": "t"}}).encode()
    assert codec.json_response(deleted, EventDecoder(FIELDS))["events"] == [
        {"class": "vm", "operation": "del", "ref": "OpaqueRef:2", "snapshot": None}]


def test_an_error_answer_is_the_pool_s_error():
    for body in ({"jsonrpc": "2.0", "error": {"code": 1, "message": "SESSION_INVALID", "data": ["OpaqueRef:x"]}},
                 {"result": None, "error": ["SESSION_INVALID", "OpaqueRef:x"], "id": 1}):
        with pytest.raises(XapiError) as failure:
            codec.json_response(json.dumps(body).encode(), EventDecoder(FIELDS))
        assert failure.value.code == "SESSION_INVALID"
    with pytest.raises(ValueError):
        codec.json_response(b"{not json", EventDecoder(FIELDS))
