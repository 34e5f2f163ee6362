"""XAPI's envelopes and value quirks for the gateway side, IO-free.

JSON-RPC is preferred; XML-RPC is kept for hosts without ``/jsonrpc``.  Values are
normalised so that callers see the same thing from both: datetimes as XAPI's basic
strings, everything else as the protocol gave it (XML-RPC ints arrive as strings).
"""
import json
import xmlrpc.client

from .errors import XapiError

INT32_MAX = 2**31 - 1


def json_request(method, params, request_id=0):
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": request_id})


def json_response(body, decode=json.loads):
    """The result of a JSON-RPC response, or raise :class:`XapiError`.

    :param decode: bytes -> the JSON document (one that skips what is not read, say)."""
    doc = decode(body)
    if doc.get("error") is not None:
        raise XapiError.from_description(doc["error"])
    return doc.get("result")


def _xml_safe(value):
    # XAPI takes int64 as strings; Python's marshaller refuses ints beyond int32.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > INT32_MAX:
        return str(value)
    if isinstance(value, dict):
        return {k: _xml_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_xml_safe(v) for v in value]
    return value


def xml_request(method, params):
    return xmlrpc.client.dumps(tuple(_xml_safe(p) for p in params), method, allow_none=False)


def _normalise(value):
    if isinstance(value, xmlrpc.client.DateTime):
        return value.value if value.value.endswith("Z") else value.value + "Z"
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def xml_response(body):
    """The ``Value`` of an XML-RPC response, or raise :class:`XapiError`."""
    # Not use_builtin_types: it parses datetimes with strptime, which rejects XAPI's "Z".
    (doc,), _ = xmlrpc.client.loads(body, use_builtin_types=False)
    if not isinstance(doc, dict) or "Status" not in doc:
        return _normalise(doc)  # system.listMethods is not wrapped
    if doc["Status"] == "Success":
        return _normalise(doc.get("Value"))
    raise XapiError.from_description(doc.get("ErrorDescription") or ["INTERNAL_ERROR"])
