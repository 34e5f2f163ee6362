"""The OpenAPI 3.1 document of the API, generated from the routes' declarations.

Every route is declared once with :func:`routes.operation`; this reads those declarations
(:data:`routes.OPERATIONS`) and the app's URL map, and turns them into the document with
apispec and its marshmallow plugin: paths, methods, parameters, bodies, answers, headers,
security and permissions, and the schema of every object type
(``xorest/objects/schemas.py``).  Nothing here names a route: a route added anywhere is
documented by its declaration alone.

The document is static for a process; :func:`document` builds it once per app.
"""
import copy
import importlib.metadata
import inspect
import re
import threading

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema
from werkzeug.routing.rules import parse_converter_args

from ..config import MAX_UNIT_TEXT
from ..services import permissions
from ..services import schemas as object_schemas
from . import BASE_URL, params, routes
from .bodies import strict as body_fields

OPENAPI_VERSION = "3.1.0"


def _version():
    try:
        return importlib.metadata.version("xorest")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "0"

#: Response headers, by the names answers use.
HEADERS = {
    "ETag": ("A hash of the body: send it back in If-None-Match to get a 304 while it is unchanged.",
             {"type": "string"}),
    "Link": ('RFC 8288 links: rel="next" is the URL of the following page (a page cut at limit); '
             'the API root also gives rel="service-desc" (this document) and rel="service-doc" (its page).',
             {"type": "string"}),
    "Set-Cookie": ("A renewed token, once, when less than half of the token's life is left "
                   "(authenticationToken=...; HttpOnly; SameSite=Strict; Path=/rest/v0; Max-Age=...). "
                   "The old token keeps working until its own expiry.", {"type": "string"}),
    "X-Token-Expires": ("When the token used for this request expires (ISO 8601, UTC).",
                        {"type": "string", "format": "date-time"}),
    "Content-Disposition": ("attachment, with a file name made from the object's label.", {"type": "string"}),
    "Content-Length": ("The length of the body, when it is known before the first byte.",
                       {"type": "integer", "minimum": 0}),
    "X-Xapi-Task": ("The uuid of the pool's task doing the transfer (see /rest/v0/tasks).", {"type": "string"}),
    "X-Compression": ("The compression algorithm and where it runs: gzip or zstd; by=host (the pool) or "
                      "by=gateway (xorest).", {"type": "string"}),
    "X-Snapshot": ("The uuid of the snapshot exported in place of a running VM (destroyed afterwards).",
                   {"type": "string"}),
    "Location": ("The URL of the new object.", {"type": "string", "format": "uri-reference"}),
    "WWW-Authenticate": ("The schemes accepted: Bearer and Basic.", {"type": "string"}),
    "Retry-After": ("Seconds to wait before the next attempt.", {"type": "integer", "minimum": 0}),
    "Allow": ("The methods the path answers.", {"type": "string"}),
    "Cache-Control": ("no-store: transfers are never cached.", {"type": "string"}),
    "X-Accel-Buffering": ("no: proxies are asked to pass the stream on without buffering it.",
                          {"type": "string"}),
}

#: Standard errors: status -> (description, headers, applies(op, path) -> bool).
def _authenticated(op, path):
    return op.permission != "public"


def _has_input(op, path):
    return op.permission != "public" or op.query is not None or op.body is not routes.NO_BODY


def _has_variables(op, path):
    return "{" in path  # an object named in the path may not exist


def _has_body(op, path):
    return op.body is not routes.NO_BODY


ERRORS = {
    400: ("Invalid parameters (data.errors names them), a malformed request or malformed credentials.", (),
          _has_input),
    401: ("No credentials, or invalid, expired or revoked ones.", ("WWW-Authenticate",), _authenticated),
    403: ("The credentials are valid but the user's role does not allow this operation "
          "(data.permission names what is needed).", (), _authenticated),
    404: ("No such object (or collection).", (), _has_variables),
    408: ("The client stopped sending its body for longer than XOREST_CLIENT_TIMEOUT.", (), _has_body),
    429: ("Too many failed password attempts: wait Retry-After seconds.", ("Retry-After",), _authenticated),
    503: ("The data store, or the pool, is not available.", (), _authenticated),
}

TAGS = {
    "collections": "The collections and their objects: list (filter, sort, pages, fields), read one.",
    "exports": "Downloads: VMs as XVA, disks as VHD (full or delta) or raw.",
    "imports": "Uploads: a disk's content, a new disk, a new VM.",
    "tokens": "Your authentication tokens.",
    "selftest": "Checks of the proxies between clients and xorest.",
    "docs": "This document and its page.",
}

DESCRIPTION = """\
xorest is a REST gateway for XCP-ng and XenServer pools that speaks Xen Orchestra's REST API v0.

**Credentials**, in this order of precedence when several are sent (only the first one present is
checked): the `authenticationToken` cookie, the legacy `token` cookie, `Authorization: Bearer <token>`,
`Authorization: Basic` (email and password). Every authenticated answer carries `X-Token-Expires`;
a successful read past half of the token's life also carries a renewed token in `Set-Cookie`.
Each operation states the permission it needs (`x-xorest-permission`) and the weakest role holding
it (`x-xorest-role`); roles are XAPI's RBAC roles, each including those before it:
read-only, vm-operator, vm-admin, pool-operator, pool-admin (admin users).

**Errors** are JSON: `{"error": "<message>", "data": {...}}`. A method a path does not answer
gets a 405 with `Allow`; a request head that is too slow or too large, a 408 or a 431.

**HEAD** is answered for every GET, with the GET's status and headers; it is listed where it
differs (exports: no export is started, and the length is given when it is known up front).

Collections answer their objects' URLs, or with `fields` the chosen fields of each object
(`fields=*`: whole objects); each object type's schema below lists its fields.

**JSON-RPC**: Xen Orchestra's JSON-RPC API is served over a WebSocket at `/api/` (OpenAPI does
not describe WebSockets): `session.signIn` with `{"token": ...}` or email and password,
`xo.getAllObjects`, `token.create`, `system.getMethodsInfo` lists the rest.
"""

_VARIABLE = re.compile(r"<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\((?P<args>.*?)\))?:)?(?P<name>[a-zA-Z_]\w*)>")

ERROR_SCHEMA = {
    "type": "object",
    "description": "An error: its message, and details for some (the invalid parameters, a filter's position...).",
    "properties": {
        "error": {"type": "string", "description": "what went wrong"},
        "data": {"type": "object", "description": "details, depending on the error",
                 "additionalProperties": True},
    },
    "required": ["error"],
}


def _markdown(docstring):
    """A view's docstring (reStructuredText) as the document's Markdown: one paragraph per
    blank line, ````code```` as ```code```."""
    text = inspect.cleandoc(docstring or "")
    text = re.sub(r"``(.+?)``", r"`\1`", text)
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"(?<!\n)\n(?!\n)", " ", text)


def _schema_name(schema):
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__
    if name.endswith("Schema") and len(name) > len("Schema"):
        name = name[:-len("Schema")]
    if not isinstance(schema, type) and getattr(schema, "partial", None) is True:
        name += "Fields"
    return name


#: A flag in a query, as ``params.FlagField`` reads it: ``?ndjson`` (empty), ``?ndjson=true``,
#: ``=1``, ``=yes``; ``=false``, ``=0``, ``=no``; words in any case.
FLAG_SCHEMA = {"anyOf": [{"type": "boolean"}, {
    "type": "string", "description": "true, 1, yes or empty; false, 0 or no (any case)",
    "pattern": "^(|[Tt][Rr][Uu][Ee]|1|[Yy][Ee][Ss]|[Ff][Aa][Ll][Ss][Ee]|0|[Nn][Oo])$"}]}


NDJSON = "application/x-ndjson"


def _one_part_per_line(schema):
    """The schema of one NDJSON line of an object sent a part at a time: ``{name: value}``,
    ``name`` one of the object's keys (the value may be a piece of that part, as dashboards
    send theirs)."""
    return {"type": "object", "minProperties": 1, "maxProperties": 1,
            "propertyNames": {"enum": list(schema["properties"])},
            "description": "one part of the object per line: {name: value}"}


def _own_kinds(converter, field, ret, **kwargs):
    """The schema of a field of xorest's own kinds, beyond what a mapped type says: flags
    (true, false or their spellings), integers (``Number(integer=True)``), and sizes (bytes,
    or text with a binary unit); a size's range moves to its number form."""
    if isinstance(field, params.FlagField):
        return copy.deepcopy(FLAG_SCHEMA)
    if isinstance(field, body_fields.Number) and field.integer:
        kinds = ret["type"]
        return {"type": [("integer" if kind == "number" else kind) for kind in kinds]
                if isinstance(kinds, list) else "integer"}
    if isinstance(field, body_fields.Size):
        number = {"type": "number", "minimum": ret.pop("x-minimum", 0)}  # fractions are cut
        if "x-maximum" in ret:
            number["maximum"] = ret.pop("x-maximum")
        text = {"type": "string", "maxLength": MAX_UNIT_TEXT,
                "description": "a number with a binary unit: 512K, 64MiB, 4 GB"}
        alternatives = [number, text] + ([{"type": "null"}] if field.allow_none else [])
        return {"anyOf": alternatives}
    return {}


class _Parts:
    """A Flask rule cut into literal text and variables."""

    def __init__(self, rule):
        self.items = []
        position = 0
        for match in _VARIABLE.finditer(rule):
            if match.start() > position:
                self.items.append(rule[position:match.start()])
            converter = match.group("converter") or "default"
            args = parse_converter_args(match.group("args")) if match.group("args") else ((), {})
            self.items.append((match.group("name"), converter, args))
            position = match.end()
        if position < len(rule):
            self.items.append(rule[position:])

    def variables(self):
        return [item for item in self.items if isinstance(item, tuple)]

    def path(self, values):
        out = []
        for item in self.items:
            if isinstance(item, tuple):
                out.append(values[item[0]] if item[0] in values else "{%s}" % item[0])
            else:
                out.append(item)
        return "".join(out)


def _converter_schema(converter, args):
    positional, keywords = args
    if converter == "any":
        return {"type": "string", "enum": list(positional)}
    if converter == "int":
        schema = {"type": "integer"}
        if "min" in keywords:
            schema["minimum"] = keywords["min"]
        if "max" in keywords:
            schema["maximum"] = keywords["max"]
        return schema
    if converter == "float":
        return {"type": "number"}
    if converter == "uuid":
        return {"type": "string", "format": "uuid"}
    if converter == "path":
        return {"type": "string", "minLength": 1}
    return {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}


def _values(variable, converter, args, expanded):
    values = variable.values if variable is not None else None
    if callable(values):
        values = values(**expanded)
    if values is None and converter == "any":
        values = args[0]
    return list(values) if values is not None else None


def _expansions(op, parts):
    """Every combination of the expanded variables' values, in the rule's order."""
    combos = [{}]
    for name, converter, args in parts.variables():
        variable = op.variables.get(name)
        expand = variable.expand if variable is not None and variable.expand is not None else converter == "any"
        if not expand:
            continue
        combos = [{**combo, name: value} for combo in combos
                  for value in _values(variable, converter, args, combo)]
    return combos


class _Builder:
    def __init__(self, app):
        self.app = app
        self.plugin = MarshmallowPlugin(schema_name_resolver=_schema_name)
        self.spec = APISpec(title="xorest", version=_version(), openapi_version=OPENAPI_VERSION,
                            plugins=[self.plugin],
                            info={"description": DESCRIPTION,
                                  "license": {"name": "AGPL-3.0-or-later",
                                              "identifier": "AGPL-3.0-or-later"}},
                            servers=[{"url": BASE_URL, "description": "this server"}])
        # fields of their own kinds: how they are written in a query (params.py) or in a
        # JSON body (bodies/strict.py); _own_kinds gives the schemas a type cannot say
        self.plugin.map_to_openapi_type(params.FlagField, None, None)
        self.plugin.map_to_openapi_type(params.SizeField, None, None)
        self.plugin.map_to_openapi_type(params.DurationField, None, None)
        self.plugin.map_to_openapi_type(body_fields.Number, "number", None)
        self.plugin.map_to_openapi_type(body_fields.Size, None, None)
        self.plugin.converter.add_attribute_function(_own_kinds)
        self.listed = {}  # object schema class -> (full name, partial name)
        self.operation_ids = set()
        self.tags = dict(TAGS)

    # components -------------------------------------------------------------------------

    def components(self):
        components = self.spec.components
        components.schema("Error", ERROR_SCHEMA)
        for name, (description, schema) in HEADERS.items():
            components.header(name, {"description": description, "schema": schema})
        components.security_scheme("cookie", {
            "type": "apiKey", "in": "cookie", "name": "authenticationToken",
            "description": "A token in the authenticationToken cookie (what Xen Orchestra's clients send)."})
        components.security_scheme("legacyCookie", {
            "type": "apiKey", "in": "cookie", "name": "token",
            "description": "A token in the legacy token cookie."})
        components.security_scheme("bearer", {
            "type": "http", "scheme": "bearer",
            "description": "A token in the Authorization header: Bearer, a space and the token."})
        components.security_scheme("basic", {
            "type": "http", "scheme": "basic",
            "description": "A user's email and password (attempts are throttled)."})
        for cls in object_schemas.REFERENCED:
            self._register(cls)
        for cls in object_schemas.SCHEMAS.values():
            self._listed(cls)

    def _register(self, cls):
        name = _schema_name(cls)
        if name not in self.spec.components.schemas:
            self.spec.components.schema(name, schema=cls)
        return name

    def _listed(self, cls):
        if cls not in self.listed:
            full = self._register(cls)
            partial = full + "Fields"
            if partial not in self.spec.components.schemas:
                self.spec.components.schema(partial, schema=cls(partial=True))
                self.spec.components.schemas[partial]["description"] = (
                    f"Some fields of {full} objects, as ?fields= chooses them (dotted paths give "
                    "the nested values they name); href and url are always there.")
            self.listed[cls] = (full, partial)
        return self.listed[cls]

    # paths ------------------------------------------------------------------------------

    def paths(self):
        rules = sorted(self.app.url_map.iter_rules(), key=lambda rule: rule.rule)
        for rule in rules:
            op = routes.OPERATIONS.get(rule.endpoint)
            if op is None or op.websocket:  # JSON-RPC over a WebSocket (/api/) is not REST
                continue
            if not rule.rule.startswith(BASE_URL):
                raise ValueError(f"{rule.rule} is outside {BASE_URL}")
            parts = _Parts(rule.rule[len(BASE_URL):] or "/")
            for combo in _expansions(op, parts):
                path = parts.path(combo)
                operations = {}
                for method in op.methods:
                    operations[method.lower()] = self.operation(op, method, parts, combo, path)
                self.spec.path(path=path, operations=operations)

    def _operation_id(self, op, method, combo):
        base = op.endpoint.split(".", 1)[-1]
        suffix = "".join("_" + re.sub(r"\W", "_", str(value)) for value in combo.values())
        prefix = "head_" if method == "HEAD" and op.methods != ("HEAD",) else ""
        candidate = prefix + base + suffix
        if candidate in self.operation_ids:
            candidate = prefix + op.endpoint.replace(".", "_") + suffix
        if candidate in self.operation_ids:
            raise ValueError(f"two operations named {candidate}")
        self.operation_ids.add(candidate)
        return candidate

    def operation(self, op, method, parts, combo, path):
        tags = [tag.format(**combo) for tag in op.tags] or ["other"]
        for template, tag in zip(op.tags, tags):
            named = re.fullmatch(r"\{(\w+)\}", template)
            variable = op.variables.get(named.group(1)) if named else None
            if variable is not None and variable.describe is not None and not self.tags.get(tag):
                self.tags[tag] = variable.describe(combo[named.group(1)])
            self.tags.setdefault(tag, "")
        public = op.permission == "public"
        role = permissions.PERMISSIONS[op.permission]
        if public:
            rights = "Needs no credentials."
        elif role is None:
            rights = "Needs valid credentials, of any user (permission `self`)."
        else:
            rights = f"Needs the `{op.permission}` permission: the {role} role or a stronger one."
        description = "\n\n".join(filter(None, [_markdown(op.description), rights]))
        result = {
            "operationId": self._operation_id(op, method, combo),
            "summary": op.summary + (" (headers only)" if method == "HEAD" else ""),
            "description": description,
            "tags": tags,
            "x-xorest-permission": op.permission,
            "security": [] if public else [{"cookie": []}, {"legacyCookie": []}, {"bearer": []}, {"basic": []}],
            "parameters": self.parameters(op, parts, combo),
            "responses": self.responses(op, method, combo, path),
        }
        if role is not None:
            result["x-xorest-role"] = role
        body = self.request_body(op)
        if body is not None and method not in ("GET", "HEAD", "DELETE"):
            result["requestBody"] = body
        return result

    def parameters(self, op, parts, combo):
        result = []
        for name, converter, args in parts.variables():
            if name in combo:
                continue
            variable = op.variables.get(name)
            schema = _converter_schema(converter, args)
            values = _values(variable, converter, args, combo)
            if values is not None:
                schema = {"type": "string", "enum": values}
            if variable is not None:
                schema.update(variable.schema)
            parameter = {"in": "path", "name": name, "required": True, "schema": schema,
                         "description": variable.description if variable is not None else ""}
            if variable is not None and variable.example is not None:
                parameter["example"] = variable.example
            result.append(parameter)
        if op.query is not None:
            result.append({"in": "query", "schema": op.query})
        for header in op.request_headers:
            result.append({"in": "header", "name": header.name, "required": header.required,
                           "description": header.description, "schema": header.schema})
        return result

    def request_body(self, op):
        if op.body is routes.NO_BODY:
            return None
        if op.body == routes.BINARY:
            return {"required": True, "description": op.body_description or "the content, streamed",
                    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
        return {"required": False, "description": op.body_description or "a JSON object (none: all defaults)",
                "content": {"application/json": {"schema": op.body}}}

    def _content(self, answer, schema, status, combo):
        content_type = answer.content_type(**combo) if callable(answer.content_type) else answer.content_type
        if callable(schema) and not isinstance(schema, (Schema, type)):
            raise TypeError("callable schemas are evaluated before")
        if schema is None:
            if status < 400:
                return None
            return {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        if schema == routes.BINARY:
            media = {"schema": {"type": "string", "format": "binary"}}
        elif schema == "text":
            media = {"schema": {"type": "string"}}
        elif isinstance(schema, routes.Listing):
            # several kinds of objects: a VM's disks are VDIs, a snapshot's VDI snapshots
            kinds = schema.schema if isinstance(schema.schema, tuple) else (schema.schema,)
            item = {"anyOf": [
                {"type": "string", "format": "uri-reference", "description": "an object's URL (no fields)"},
                *({"$ref": f"#/components/schemas/{name}"} for kind in kinds for name in self._listed(kind))]}
            content = {content_type: {"schema": {"type": "array", "items": item}}}
            for alternative in answer.alternatives:
                content[alternative] = {"schema": {
                    "description": "one JSON value per line, each a URL or an object as in the JSON answer",
                    **copy.deepcopy(item)}}
            return content
        elif isinstance(schema, dict):
            media = {"schema": copy.deepcopy(schema)}
        else:
            media = {"schema": schema}
        if answer.example is not None:
            media["example"] = answer.example
        content = {content_type: media}
        for alternative in answer.alternatives:
            content[alternative] = dict(media)
            if alternative == NDJSON and isinstance(schema, dict) and "properties" in schema:
                content[alternative] = {"schema": _one_part_per_line(schema)}
        return content

    def responses(self, op, method, combo, path):
        result = {}
        authenticated = op.permission != "public"
        for answer in op.answers:
            schema = answer.schema
            if callable(schema) and not isinstance(schema, (Schema, type)):
                schema = schema(**combo)
            response = {"description": answer.description}
            headers = list(answer.headers)
            if authenticated and answer.status < 400:
                headers.append("X-Token-Expires")
                if method in ("GET", "HEAD"):
                    headers.append("Set-Cookie")
            if headers:
                response["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in headers}
            content = self._content(answer, schema, answer.status, combo)
            if content and method != "HEAD":
                response["content"] = content
            result[str(answer.status)] = response
        for status, (description, headers, applies) in ERRORS.items():
            if str(status) in result or not applies(op, path):
                continue
            response = {"description": description}
            if headers:
                response["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in headers}
            if method != "HEAD":
                response["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            result[str(status)] = response
        return dict(sorted(result.items()))

    def build(self):
        self.components()
        self.paths()
        document = self.spec.to_dict()
        for item in document["paths"].values():
            for operation in item.values():
                for parameter in operation.get("parameters", ()):
                    _not_null(parameter["schema"])
        order = ["collections", *sorted(set(self.tags) - set(TAGS)), *list(TAGS)[1:]]
        document["tags"] = [{"name": name, **({"description": self.tags[name]} if self.tags[name] else {})}
                            for name in order]
        return document


def _not_null(schema):
    """A parameter in a URL or a header is never ``null``: marshmallow's ``load_default=None``
    only means "absent"."""
    if "default" in schema and schema["default"] is None:
        del schema["default"]
    kinds = schema.get("type")
    if isinstance(kinds, list) and "null" in kinds:
        kinds = [kind for kind in kinds if kind != "null"]
        schema["type"] = kinds[0] if len(kinds) == 1 else kinds


def build(app):
    """The OpenAPI document (a dict) of ``app``'s routes; builds it anew."""
    return _Builder(app).build()


_lock = threading.Lock()


def document(app):
    """The document of ``app``, built once and kept (it never changes in a process)."""
    cached = app.extensions.get("xorest.openapi")
    if cached is None:
        with _lock:
            cached = app.extensions.get("xorest.openapi")
            if cached is None:
                cached = build(app)
                app.extensions["xorest.openapi"] = cached
    return cached


def all_variants(document_paths):
    """``(path, method)`` of every operation of a document (for tests and tools)."""
    return sorted((path, method.upper()) for path, item in document_paths.items()
                  for method in item if method in ("get", "put", "post", "delete", "patch", "head", "options"))




def main(argv=None):
    """``python -m xorest.api.openapi [FILE]``: write the document (``-``: standard output)."""
    import json
    import sys

    from flask import Flask

    from . import register

    args = sys.argv[1:] if argv is None else argv
    target = args[0] if args else "-"
    app = Flask("xorest")  # the routes alone: no services, no data directory
    register(app)
    text = json.dumps(build(app), indent=2) + "\n"
    if target == "-":
        sys.stdout.write(text)
    else:
        with open(target, "w", encoding="utf-8") as out:
            out.write(text)
        print(f"{target}: {text.count(chr(10))} lines", file=sys.stderr)


if __name__ == "__main__":
    main()
