"""XAPI's ``/rrd_updates`` handler: what to ask a host for, and its answer read into columns.

Every host keeps the round-robin archives of its own data sources and of the VMs running
on it, and serves them itself (the master does not answer for its members).  An answer
holds one archive's rows from ``start`` on, newest first, as XML (``<xport>``) or, from
XAPI 23.31 when the client prefers it, JSON (numbers as strings so that ``NaN`` and
``Infinity`` fit).  The legend names each column ``CF:kind:uuid:data source``.

:func:`parse` and :func:`query` are pure; :func:`fetch` does the one HTTP request.
"""
import json
import math
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

import requests
import urllib3

from .errors import XapiError, XapiUnreachable

PATH = "/rrd_updates"
#: Archive step (seconds) -> its rows, as xcp-rrdd creates them: 10 minutes of 5 s, 2 hours
#: of minutes, a week of hours, a year of days.
ROWS = {5: 120, 60: 120, 3600: 168, 86400: 366}
#: An answer larger than this is refused (a host's own RRD is a few hundred kB).
MAX_ANSWER = 64 << 20
_CHUNK = 1 << 16
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)


class RrdError(ValueError):
    """An answer that is not a readable ``/rrd_updates`` document."""


@dataclass(frozen=True)
class Column:
    """One legend entry: consolidation function, owner kind (``host``, ``vm``, ``sr``),
    owner uuid and data source name."""

    cf: str
    kind: str
    uuid: str
    name: str

    @classmethod
    def parse(cls, entry):
        """A legend entry ``AVERAGE:vm:<uuid>:cpu0``; the uuid reaches the last colon."""
        cf, kind, rest = (entry.split(":", 2) + ["", ""])[:3]
        uuid, _, name = rest.rpartition(":")
        if not (cf and kind and uuid and name):
            raise RrdError(f"unreadable legend entry {entry[:200]!r}")
        return cls(cf, kind, uuid, name)


@dataclass(frozen=True)
class Updates:
    """An answer: its archive's ``step``, the ``end`` of its newest row, the row times
    (oldest first) and one list of values per legend column (oldest first, ``NaN`` where
    the archive has no value)."""

    start: int
    step: int
    end: int
    legend: tuple
    times: tuple
    columns: tuple

    def owned_by(self, kind, uuid, cf="AVERAGE"):
        """``[(data source name, values)]`` of one owner, in legend order."""
        return [(column.name, values) for column, values in zip(self.legend, self.columns)
                if column.kind == kind and column.uuid == uuid and column.cf == cf]


def query(start, step, *, host=False, vm_uuid=None, json_output=False):
    """The parameters of a request: averages of the archive of ``step`` seconds from
    ``start`` (POSIX seconds) on; ``host`` adds the host's own data sources, ``vm_uuid``
    names the one VM wanted (``"none"``: no VM; absent: every VM running there);
    ``json_output`` asks for JSON (a host's every VM is a large answer: JSON reads faster)."""
    params = {"start": str(int(start)), "cf": "AVERAGE", "interval": str(int(step))}
    if host:
        params["host"] = "true"
    if vm_uuid is not None:
        params["vm_uuid"] = vm_uuid
    if json_output:
        params["json"] = "true"
    return params


def _number(text):
    try:
        return float(text)  # NaN, Infinity and -Infinity included
    except (TypeError, ValueError):
        raise RrdError(f"not a number: {str(text)[:50]!r}") from None


def _integer(text, what):
    value = _number(text)
    if not math.isfinite(value):
        raise RrdError(f"{what} is not a number")
    return int(value)


def _build(start, step, end, legend, rows):
    """:class:`Updates` from the meta values and ``[(t, [values])]`` rows (newest first)."""
    columns = [Column.parse(entry) for entry in legend]
    rows = sorted(rows, key=lambda row: row[0])  # oldest first
    for t, values in rows:
        if len(values) != len(columns):
            raise RrdError(f"the row at {t} has {len(values)} values for {len(columns)} columns")
    return Updates(start=start, step=step, end=end, legend=tuple(columns), times=tuple(t for t, _ in rows),
                   columns=tuple(tuple(values[i] for _, values in rows) for i in range(len(columns))))


def _parse_xml(body):
    if _DOCTYPE.search(body):
        raise RrdError("a document type declaration (XAPI never sends one)")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise RrdError(f"invalid XML: {exc}") from None
    meta = root.find("meta")
    if root.tag != "xport" or meta is None or root.find("data") is None:
        raise RrdError("not an <xport> document")
    legend = [entry.text or "" for entry in meta.iterfind("legend/entry")]
    rows = [(_integer(row.findtext("t"), "a row's time"), [_number(v.text) for v in row.iterfind("v")])
            for row in root.iterfind("data/row")]
    return _build(*(_integer(meta.findtext(key), key) for key in ("start", "step", "end")), legend, rows)


def _parse_json(body):
    try:
        doc = json.loads(body)  # the standard parser: it reads NaN and Infinity too
    except ValueError as exc:
        raise RrdError(f"invalid JSON: {exc}") from None
    meta = doc.get("meta") if isinstance(doc, dict) else None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(meta, dict) or not isinstance(data, list) or not isinstance(meta.get("legend"), list):
        raise RrdError("not an rrd_updates document")
    try:
        rows = [(_integer(row["t"], "a row's time"), [_number(v) for v in row["values"]]) for row in data]
    except (KeyError, TypeError):
        raise RrdError("a row without t or values") from None
    return _build(*(_integer(meta.get(key), key) for key in ("start", "step", "end")),
                  [str(entry) for entry in meta["legend"]], rows)


def parse(body):
    """The :class:`Updates` of an answer's body (XML or JSON, told apart by their first
    character).

    :raises RrdError: anything else.
    """
    head = body.lstrip()[:1]
    if head == b"<":
        return _parse_xml(body)
    if head == b"{":
        return _parse_json(body)
    raise RrdError("neither XML nor JSON")


def fetch(client, params, *, host=None, read_timeout=60.0, limit=MAX_ANSWER):
    """``GET /rrd_updates`` of one host of the pool (its ``address``; ``None``: the host
    at the pool's URL) in ``client``'s session, parsed.

    :raises XapiError: the handler answered another status than 200 (``HTTP_ERROR``).
    :raises XapiUnreachable: the host could not be reached, or the answer was cut.
    :raises RrdError: the answer is not a readable document, or larger than ``limit``.
    """
    response = client.get_stream(PATH, params, read_timeout, host=host)
    try:
        if response.status_code != 200:
            raise XapiError("HTTP_ERROR", [str(response.status_code), PATH])
        body = bytearray()
        for chunk in response.iter_content(_CHUNK):
            body += chunk
            if len(body) > limit:
                raise RrdError(f"the answer is larger than {limit} bytes")
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise XapiUnreachable(f"{PATH} of {host or client.url}: {type(exc).__name__}: {exc}") from None
    finally:
        response.close()
    return parse(bytes(body))
