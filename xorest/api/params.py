"""Query and body parameters, validated with marshmallow; errors become 400 here only."""
import math
import re

import orjson
from flask import request
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate

from .. import filter as live_filter
from ..config import parse_client_duration
from ..errors import BadRequest
from ..services.permissions import ROLES

MAX_LIMIT = 10**9


class FlagField(fields.Field):
    """A flag: bare (``?ndjson``), ``true``/``1`` or ``false``/``0``."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = str(value).strip().lower()
        if text in ("", "true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ValidationError("must be true, false, 1, 0 or empty")


class CollectionQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    filter = fields.String(load_default=None, validate=validate.Length(max=live_filter.MAX_LENGTH))
    limit = fields.Integer(load_default=None, strict=False, validate=validate.Range(min=0, max=MAX_LIMIT))
    fields_ = fields.String(data_key="fields", load_default=None, validate=validate.Length(max=4096))
    ndjson = FlagField(load_default=False)
    markdown = FlagField(load_default=False)  # a Markdown table (text/markdown), as Xen Orchestra's
    sort = fields.String(load_default=None, validate=validate.Length(max=512))
    after = fields.String(load_default=None, validate=validate.Length(min=1, max=4096))


class DashboardQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    ndjson = FlagField(load_default=False)


class ExportQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    compress = fields.String(load_default=None)  # validated by the export service (legacy values)
    use_snapshot = FlagField(load_default=None)  # None: only when the VM is running


class VdiImportQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    name_label = fields.String(load_default=None, validate=validate.Length(max=255))
    name_description = fields.String(load_default="", validate=validate.Length(max=1024))
    raw = FlagField(load_default=False)  # the body is raw content (else a VHD)


class VmImportQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    sr = fields.String(load_default=None, validate=validate.Length(min=1, max=100))


class SizeField(fields.Field):
    """Bytes as a number, or with a binary unit: ``512K``, ``64MiB``, ``4G``."""

    UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

    def _deserialize(self, value, attr, data, **kwargs):
        match = re.fullmatch(r"\s*(\d{1,15})\s*([kmgt]?)(?:i?b)?\s*", str(value), re.IGNORECASE)
        if not match:
            raise ValidationError("must be a number of bytes, optionally with K, M, G or T (binary units)")
        return int(match.group(1)) * self.UNITS[match.group(2).lower()]


class SelftestQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    size = SizeField(load_default=64 << 20, validate=validate.Range(min=0, max=64 << 30))
    pause = fields.Float(load_default=0.0, validate=validate.Range(min=0, max=3600))
    length = FlagField(load_default=True)  # send Content-Length (else chunked)


class DurationField(fields.Field):
    """A duration as Xen Orchestra's clients send it (:func:`parse_client_duration`)."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            seconds = parse_client_duration(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValidationError(str(exc)) from None
        if not math.isfinite(seconds):
            raise ValidationError("must be a finite duration")
        return seconds


class TokenRequest(Schema):
    class Meta:
        unknown = EXCLUDE

    expiresIn = DurationField(load_default=None)
    description = fields.String(load_default="", validate=validate.Length(max=200))
    client = fields.Raw(load_default=None)
    role = fields.String(load_default=None, validate=validate.OneOf(ROLES))  # at most yours
    scope = fields.Dict(load_default=None)  # {"pools": [uuid...], "filter": "<live filter over VMs>"}


#: The largest JSON body accepted (bodies are small objects; disks go through imports).
MAX_JSON_BODY = 1 << 20


def json_body():
    """The request's JSON object body (``{}`` when there is none), parsed strictly: not
    JSON, ``NaN``/``Infinity``, not an object, or too large is a 400."""
    length = request.content_length
    if length is not None and length > MAX_JSON_BODY:
        raise BadRequest(f"the body is larger than {MAX_JSON_BODY} bytes")
    data = request.stream.read(MAX_JSON_BODY + 1)
    if len(data) > MAX_JSON_BODY:
        raise BadRequest(f"the body is larger than {MAX_JSON_BODY} bytes")
    if not data.strip():
        return {}
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


class Subscription(Schema):
    class Meta:
        unknown = RAISE

    collection = fields.String(required=True, validate=validate.Length(min=1, max=64))  # an XO type: VM, host...
    filter = fields.String(load_default=None, validate=validate.Length(max=live_filter.MAX_LENGTH))
    fields_ = fields.Raw(data_key="fields", load_default="*")  # "*" or a list of field names


def _role_from(data):
    """``role``, or Xen Orchestra's ``permission`` (``admin``: pool-admin, ``none``: no role)."""
    if "role" in data:
        return data["role"]
    if "permission" in data:
        return "pool-admin" if data["permission"] == "admin" else None
    return ...


class UserCreation(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(validate=validate.Length(min=1, max=254))  # Xen Orchestra's name for the email
    email = fields.String(validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, validate=validate.Length(min=8, max=1024))
    permission = fields.String(validate=validate.OneOf(["none", "admin"]))
    role = fields.String(allow_none=True, validate=validate.OneOf(ROLES))

    @post_load
    def _normalise(self, data, **kwargs):
        email = data.get("email") or data.get("name")
        if not email:
            raise ValidationError("name (the user's email) is required", "name")
        role = _role_from(data)
        return {"email": email, "password": data["password"], "role": None if role is ... else role}


class UserUpdate(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(validate=validate.Length(min=1, max=254))
    email = fields.String(validate=validate.Length(min=1, max=254))
    password = fields.String(validate=validate.Length(min=8, max=1024))
    permission = fields.String(validate=validate.OneOf(["none", "admin"]))
    role = fields.String(allow_none=True, validate=validate.OneOf(ROLES))
    preferences = fields.Dict(keys=fields.String(), values=fields.String())  # accepted, not kept

    @post_load
    def _normalise(self, data, **kwargs):
        return {"email": data.get("email") or data.get("name"), "password": data.get("password"),
                "role": _role_from(data)}


def load(schema, data):
    """Validate ``data`` with ``schema``; any problem is a 400 naming the parameters."""
    # Query strings repeat keys: the last value counts, as Express does by default for scalars.
    if hasattr(data, "to_dict"):
        data = {k: v[-1] for k, v in data.to_dict(flat=False).items()}
    try:
        return schema.load(data)
    except ValidationError as exc:
        details = {k: v if isinstance(v, list) else [str(v)] for k, v in exc.messages.items()}
        names = ", ".join(sorted(details))
        raise BadRequest(f"invalid parameter{'s' if len(details) > 1 else ''}: {names}",
                         errors=details) from None


COLLECTION_QUERY = CollectionQuery()
DASHBOARD_QUERY = DashboardQuery()
EXPORT_QUERY = ExportQuery()
SELFTEST_QUERY = SelftestQuery()
VDI_IMPORT_QUERY = VdiImportQuery()
VM_IMPORT_QUERY = VmImportQuery()
TOKEN_REQUEST = TokenRequest()
USER_CREATION = UserCreation()
SUBSCRIPTION = Subscription()
USER_UPDATE = UserUpdate()
