"""Decoding a whole pool's ``event.from`` answer, keeping only the fields that are read.

A 10k-VM pool's first ``event.from`` is 125 MiB of JSON, of which mapping reads about a
tenth.  Decoded generically, every field of every record becomes Python objects that
are dropped again at once; :class:`EventDecoder` (msgspec, typed) skips the fields no one
reads without building them, and decodes the rest in C.

The answer it gives is the one :func:`~.codec.json_response` gives, each snapshot cut to
the fields asked for.  An answer of an unexpected shape (a class not asked for, a field
of another type) is decoded generically instead: nothing is lost, only speed.
"""
import json
import keyword
import logging
from typing import Any, Optional, Union

import msgspec


log = logging.getLogger(__name__)

_UNSET = msgspec.UNSET


def _snapshot_type(cls, fields):
    """The msgspec type of one class's snapshots: a struct of ``fields`` (each optional,
    left out of the record when absent), or any object for ``None`` (kept whole)."""
    if fields is None:
        return dict
    attributes, rename = [], {}
    for number, name in enumerate(sorted(fields)):
        attribute = name if name.isidentifier() and not keyword.iskeyword(name) else f"field_{number}"
        rename[attribute] = name
        attributes.append((attribute, Any, _UNSET))
    return msgspec.defstruct(f"{cls}Snapshot", attributes, rename=rename, omit_defaults=True)


class EventDecoder:
    """Decodes ``event.from`` answers whose snapshots keep only some fields.

    :param fields: XAPI class name -> the snapshot fields to keep, or ``None`` to keep a
        class's snapshots whole.  Events of other classes make the answer go the slow way.
    """

    def __init__(self, fields):
        events = []
        for cls, names in fields.items():
            snapshot = _snapshot_type(cls, names)
            events.append(msgspec.defstruct(
                f"{cls}Event", [("ref", str), ("operation", str), ("snapshot", Optional[snapshot], None)],
                tag_field="class", tag=cls.lower()))
        result = msgspec.defstruct("EventsResult", [("events", list[Union[tuple(events)]]), ("token", str)])
        answer = msgspec.defstruct("EventsAnswer", [("result", Optional[result], None), ("error", Any, None)])
        self._decoder = msgspec.json.Decoder(answer)

    def __call__(self, body):
        """The JSON-RPC document of ``body``: ``{"result": {"events": [...], "token": ...}}``
        (each event ``class``, ``ref``, ``operation`` and its cut ``snapshot``), or
        ``{"error": ...}``."""
        try:
            answer = self._decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.info("an event list of an unexpected shape (%s): decoding it whole", exc)
            return json.loads(body)
        if answer.error is not None or answer.result is None:
            return {"error": answer.error if answer.error is not None else ["INTERNAL_ERROR", "no result"]}
        to_builtins = msgspec.to_builtins
        events = [{"class": event.__struct_config__.tag, "ref": event.ref, "operation": event.operation,
                   "snapshot": event.snapshot if type(event.snapshot) is dict or event.snapshot is None
                   else to_builtins(event.snapshot)}
                  for event in answer.result.events]
        return {"result": {"events": events, "token": answer.result.token}}


__all__ = ["EventDecoder"]
