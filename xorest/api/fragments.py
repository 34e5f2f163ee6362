"""Rendered listing items, kept while their objects stay the same.

Listings are read again and again (monitoring, scripts paging through a collection) while
most of their objects do not change.  An object in the cache is never modified in place
(a change makes a new object), so the JSON of its list item, for a given projection, can
be kept with the object itself as the key: the next listing joins bytes instead of
projecting and encoding every object again.
"""
import threading

import orjson

#: Bytes of one piece handed to the server (each write must progress within the client
#: timeout; see :data:`.output.WRITE_CHUNK`).
PIECE = 1 << 20


class Fragments:
    """Items of listings rendered as they appear in a two-space indented JSON array,
    per projection (``key``), bounded in bytes.

    :param max_bytes: beyond, the projections least recently used are dropped.
    """

    def __init__(self, max_bytes=64 << 20):
        self.max_bytes = max_bytes
        self._tables = {}  # key -> {id(object): (object, fragment)}, most recently used last
        self._bytes = 0
        self._lock = threading.Lock()

    def _table(self, key, current):
        with self._lock:
            table = self._tables.pop(key, None)
            if table is None:
                table = {}
            elif current is not None and len(table) > len(current) + len(current) // 4 + 64:
                table = self._pruned(table, current)
            self._tables[key] = table
            while self._bytes > self.max_bytes and len(self._tables) > 1:
                oldest = next(iter(self._tables))
                self._drop(oldest, self._tables[oldest])
            if self._bytes > self.max_bytes:  # one projection alone is too large: start it over
                self._drop(key, table)
                table = self._tables[key] = {}
            return table

    def _pruned(self, table, current):
        """Only the entries of objects that are still the collection's."""
        kept = {}
        for ident, (obj, fragment) in table.items():
            if current.get(obj.get("id")) is obj:
                kept[ident] = (obj, fragment)
            else:
                self._bytes -= len(fragment)
        return kept

    def _drop(self, key, table):
        del self._tables[key]
        self._bytes -= sum(len(fragment) for _, fragment in table.values())

    def pieces(self, key, project, objects, current=None):
        """The bytes of ``render_json([project(o) for o in objects])``, in pieces.

        :param key: what identifies the projection (collection and fields).
        :param current: the collection's objects now (``id -> object``), to let go of
            the fragments of objects that changed or went.
        """
        table = self._table(key, current)
        batch, size, first = [], 0, True
        for obj in objects:
            entry = table.get(id(obj))
            if entry is not None and entry[0] is obj:
                fragment = entry[1]
            else:
                fragment = orjson.dumps([project(obj)], option=orjson.OPT_INDENT_2)[2:-2]
                table[id(obj)] = (obj, fragment)
                self._bytes += len(fragment)
            batch.append(fragment)
            size += len(fragment)
            if size >= PIECE:
                yield (b"[\n" if first else b",\n") + b",\n".join(batch)
                batch, size, first = [], 0, False
        if batch:
            yield (b"[\n" if first else b",\n") + b",\n".join(batch)
            first = False
        yield b"[]\n" if first else b"\n]\n"
