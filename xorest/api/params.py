"""Query and body parameters, validated with marshmallow; errors become 400 here only."""
import math

import orjson
from flask import request
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate

from .. import filter as live_filter
from ..config import MAX_UNIT_TEXT, parse_client_duration, parse_size
from ..errors import BadRequest
from ..services.permissions import ROLES

MAX_LIMIT = 10**9


class FlagField(fields.Field):
    """A flag: bare (``?ndjson``), ``true``/``1`` or ``false``/``0``."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = str(value).lower()  # as the document states it: no spaces around
        if text in ("", "true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ValidationError("must be true, false, 1, 0 or empty")


class CollectionQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    filter = fields.String(load_default=None, validate=validate.Length(max=live_filter.MAX_LENGTH), metadata={
        "description": "Xen Orchestra's live filter (complex-matcher): `name_label:web power_state:Running`, "
                       "`|(a b)` or, `!x` not, `x?` truthy, `CPUs:number:>=4`, globs, `/regex/i`"})
    limit = fields.Integer(load_default=None, strict=False, validate=validate.Range(min=0, max=MAX_LIMIT), metadata={
        "description": "at most this many objects, after the filter; a page cut here carries "
                       "`Link: <...>; rel=\"next\"`"})
    fields_ = fields.String(data_key="fields", load_default=None, validate=validate.Length(max=4096), metadata={
        "description": "comma-separated fields of each object (dotted paths reach nested values), `*` for all; "
                       "without it, the objects' URLs",
        "example": "name_label,power_state"})
    ndjson = FlagField(load_default=False, metadata={
        "description": "one JSON value per line (application/x-ndjson), streamed; `?ndjson` alone is true too"})
    markdown = FlagField(load_default=False, metadata={
        "description": "a Markdown table (text/markdown), one column per field, as Xen Orchestra's"})
    sort = fields.String(load_default=None, validate=validate.Length(max=512), metadata={
        "description": "comma-separated fields (dotted paths) to order by, `-` in front to reverse; ties go "
                       "by id (default: id order); e.g. `-memory.size,name_label`"})
    after = fields.String(load_default=None, validate=validate.Length(min=1, max=4096), metadata={
        "description": "the cursor of the previous page (from its rel=\"next\" link): resume after it"})


class DashboardQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    ndjson = FlagField(load_default=False)


class ExportQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    # validated by the export service (legacy values)
    compress = fields.String(load_default=None, metadata={
        "description": "gzip or zstd (zstd needs XCP-ng); true and 1 mean gzip, false, none, 0 or empty none",
        "enum": ["gzip", "zstd", "none", "true", "false", "1", "0", ""]})
    use_snapshot = FlagField(load_default=None, metadata={  # None: only when the VM is running
        "description": "export through a snapshot (default: only a running VM is); false refuses a running "
                       "VM with a 409"})


class VdiExportQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    base = fields.String(load_default=None, metadata={
        "description": "a snapshot (uuid) of the same disk: the VHD holds only the blocks changed since it "
                       "(a delta); .vhd only"})


class VdiImportQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    name_label = fields.String(load_default=None, validate=validate.Length(max=255),
                               metadata={"description": "the new disk's name"})
    name_description = fields.String(load_default="", validate=validate.Length(max=1024),
                                     metadata={"description": "the new disk's description"})
    raw = FlagField(load_default=False, metadata={  # the body is raw content (else a VHD)
        "description": "the body is raw content, its length the disk's size (else a VHD)"})


class VmImportQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    sr = fields.String(load_default=None, validate=validate.Length(min=1, max=100), metadata={
        "description": "the SR (uuid) for the VM's disks; default: the pool's default SR"})


class SizeField(fields.Field):
    """Whole bytes as a number, or with a binary unit: ``512K``, ``64MiB``, ``4G``."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_size(value if isinstance(value, str) else str(value))
        except ValueError:
            raise ValidationError("must be a number of bytes, optionally with K, M, G or T (binary units)") from None


class SelftestQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    size = SizeField(load_default=64 << 20, validate=validate.Range(min=0, max=64 << 30), metadata={
        "description": "bytes to send: a number, or with a binary unit (512K, 64M, 4GiB); at most 64 GiB",
        "anyOf": [{"type": "integer", "minimum": 0, "maximum": 64 << 30},
                  {"type": "string", "maxLength": MAX_UNIT_TEXT,
                   "pattern": r"^\s*\d{1,15}(\.\d{1,15})? *[kmgtKMGT]?([iI]?[bB])?\s*$"}],
        "default": "64M"})
    pause = fields.Float(load_default=0.0, validate=validate.Range(min=0, max=3600), metadata={
        "description": "seconds of silence halfway through"})
    length = FlagField(load_default=True, metadata={  # send Content-Length (else chunked)
        "description": "send Content-Length (false: chunked)"})


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

    expiresIn = DurationField(load_default=None, metadata={
        "description": "the token's life, as Xen Orchestra reads it: milliseconds, or text as npm `ms` "
                       "reads it (`7d`, `12h`, `2 days`; a bare number is milliseconds); more than 60 seconds "
                       "(default XOREST_TOKEN_TTL, at most XOREST_TOKEN_MAX_TTL)",
        "anyOf": [{"type": "number", "exclusiveMinimum": 60000},
                  {"type": "string", "maxLength": MAX_UNIT_TEXT,
                   "pattern": r"^\s*-?(\d+(\.\d*)?|\.\d+) *[a-zA-Z]*\s*$"},
                  {"type": "null"}],
        "example": "7d"})
    description = fields.String(load_default="", validate=validate.Length(max=200),
                                metadata={"description": "what the token is for"})
    client = fields.Raw(load_default=None, metadata={"description": "accepted and ignored (xo-cli sends it)"})
    role = fields.String(load_default=None, validate=validate.OneOf(ROLES), metadata={
        "description": "the token's role, at most its user's (default: the user's)"})
    scope = fields.Dict(load_default=None, metadata={
        "description": "what the token may see: `{\"pools\": [pool uuids], \"filter\": \"<live filter over VMs>\"}`"})


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
VDI_EXPORT_QUERY = VdiExportQuery()
SELFTEST_QUERY = SelftestQuery()
VDI_IMPORT_QUERY = VdiImportQuery()
VM_IMPORT_QUERY = VmImportQuery()
TOKEN_REQUEST = TokenRequest()
USER_CREATION = UserCreation()
SUBSCRIPTION = Subscription()
USER_UPDATE = UserUpdate()
