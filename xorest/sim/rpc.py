"""The simulator's XML-RPC and JSON-RPC envelopes, written to match XAPI's byte for byte.

XAPI's XML is compact (no whitespace between elements), strings and 64-bit integers are
untyped ``<value>`` text, and replies are ``{Status, Value}`` or ``{Status, ErrorDescription}``
structs rather than XML-RPC faults.  This module shares nothing with the gateway's codec on
purpose: the simulator is an independent implementation of the wire format.
"""
import json
import xmlrpc.client
from xml.sax.saxutils import escape

EPOCH = "19700101T00:00:00Z"


class DateTime(str):
    """A XAPI datetime, kept in XAPI's basic form ``YYYYMMDDTHH:MM:SSZ``."""

    __slots__ = ()


class Int32(int):
    """An int32 (only ``valid_ref_counts``): XML-RPC ``<i4>``, unlike int64 strings."""

    __slots__ = ()


class XapiFailure(Exception):
    """An API failure: ``ErrorDescription`` is ``[code, *params]``, all strings."""

    def __init__(self, code, *params):
        super().__init__(code, *params)
        self.code = code
        self.params = [str(p) for p in params]

    @property
    def description(self):
        return [self.code, *self.params]


class RecordMemo:
    """Encoded XML of records (dicts with a ``uuid``), by identity: records are copy-on-write
    (state.py), so the same object always encodes the same way.  Bounded; cleared when full."""

    RECORD_MIN_FIELDS = 12

    def __init__(self, limit=200_000):
        self.limit = limit
        self._items = {}

    def get(self, value):
        item = self._items.get(id(value))
        return item[1] if item is not None and item[0] is value else None

    def put(self, value, text):
        if len(self._items) >= self.limit:
            self._items.clear()
        self._items[id(value)] = (value, text)


def _xml_value(value, out, memo=None):
    # Order matters: bool is an int subclass, DateTime and Int32 are str/int subclasses.
    if isinstance(value, bool):
        out.append("<value><boolean>1</boolean></value>" if value else "<value><boolean>0</boolean></value>")
    elif isinstance(value, Int32):
        out.append(f"<value><i4>{int(value)}</i4></value>")
    elif isinstance(value, int):
        out.append(f"<value>{value}</value>")
    elif isinstance(value, float):
        out.append(f"<value><double>{value:.16g}</double></value>")
    elif isinstance(value, DateTime):
        out.append(f"<value><dateTime.iso8601>{value}</dateTime.iso8601></value>")
    elif isinstance(value, str):
        out.append(f"<value>{escape(value)}</value>" if value else "<value></value>")
    elif isinstance(value, dict):
        record = memo is not None and len(value) >= RecordMemo.RECORD_MIN_FIELDS and "uuid" in value
        if record:
            cached = memo.get(value)
            if cached is not None:
                out.append(cached)
                return
            start = len(out)
        out.append("<value><struct>")
        for key, item in value.items():
            out.append(f"<member><name>{escape(str(key))}</name>")
            _xml_value(item, out, memo)
            out.append("</member>")
        out.append("</struct></value>")
        if record:
            text = "".join(out[start:])
            del out[start:]
            out.append(text)
            memo.put(value, text)
    elif isinstance(value, (list, tuple)):
        out.append("<value><array><data>")
        for item in value:
            _xml_value(item, out, memo)
        out.append("</data></array></value>")
    elif value is None:
        out.append("<value></value>")
    else:
        raise TypeError(f"cannot encode {type(value).__name__}")


def xml_value(value, memo=None):
    """One XML-RPC ``<value>``, compact, as XAPI writes it (also task results, ova.xml)."""
    out = []
    _xml_value(value, out, memo)
    return "".join(out)


def xml_response(payload, memo=None):
    """A ``methodResponse`` around ``payload`` (already the Status struct, or a bare value)."""
    return ('<?xml version="1.0"?><methodResponse><params><param>'
            + xml_value(payload, memo) + "</param></params></methodResponse>").encode("utf-8")


def xml_success(value, memo=None):
    return xml_response({"Status": "Success", "Value": value}, memo)


def xml_failure(failure):
    return xml_response({"Status": "Failure", "ErrorDescription": failure.description})


def _plain(value):
    if isinstance(value, xmlrpc.client.DateTime):
        return DateTime(value.value if value.value.endswith("Z") else value.value + "Z")
    if isinstance(value, xmlrpc.client.Binary):
        return value.data
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def parse_xml_request(body):
    """Return ``(method, params)``; untyped values are strings, as XAPI reads them."""
    # Not use_builtin_types: its strptime rejects the "Z" of XAPI's datetimes.
    params, method = xmlrpc.client.loads(body, use_builtin_types=False)
    return method, [_plain(p) for p in params]


def parse_xml_value(text):
    """One XML-RPC ``<value>`` (an XVA's ova.xml is one) as plain Python values."""
    envelope = f"<?xml version='1.0'?><methodResponse><params><param>{text}</param></params></methodResponse>"
    params, _ = xmlrpc.client.loads(envelope, use_builtin_types=False)
    return _plain(params[0])


def parse_json_request(body):
    """Return ``(method, params, id, version)`` or raise ``ValueError``."""
    request = json.loads(body)
    if not isinstance(request, dict) or "method" not in request or "id" not in request:
        raise ValueError("not a JSON-RPC request")
    params = request.get("params", [])
    if not isinstance(params, list):
        raise ValueError("params must be an array")
    version = "2.0" if request.get("jsonrpc") == "2.0" else "1.0"
    return request["method"], params, request["id"], version


def json_success(value, request_id, version):
    if version == "2.0":
        doc = {"jsonrpc": "2.0", "result": value, "id": request_id}
    else:
        doc = {"result": value, "error": None, "id": request_id}
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def json_failure(failure, request_id, version):
    if version == "2.0":
        error = {"code": 1, "message": failure.code, "data": failure.params}
        doc = {"jsonrpc": "2.0", "error": error, "id": request_id}
    else:
        doc = {"result": None, "error": failure.description, "id": request_id}
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")
