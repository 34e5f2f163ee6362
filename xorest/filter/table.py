"""Filters over a whole collection at once, column by column.

A :class:`Table` reads a list of objects the way filters do, one property path at a time,
and keeps what it read: each path's values, grouped by distinct value when there are few
of them, and (for the searches that look through lists and objects) every scalar the
values hold.  :func:`select` then decides a node once per *distinct value* (three power
states, a dozen tag sets) instead of once per object, globs scan a whole column of names
in one C-speed pass, and an ``And`` narrows the candidates with its cheapest children
first, so costly predicates (regexes on unique names) only run on what is left.  Sets of
rows are bit masks (Python integers), so ``And``, ``Or`` and ``Not`` cost microseconds.

The answer is always exactly ``[i for i, o in enumerate(objects) if node.match(o)]``
(the tests compare both on every filter of the reference suite): grouping relies only on
equal JSON values giving equal answers.  A table is never modified; keep it with the
collection state it was made from, and its columns serve every filter on that state.
"""
import bisect
import itertools
import operator
import threading

from . import nodes
from .jsvalues import MISSING, truthy, values_of
from . import regex as jsregex
from .regex import canonicalize

__all__ = ["Table", "select"]

#: A column with more distinct values than this share of its rows is evaluated row by row.
_SPREAD_SHARE = 8
_MIN_GROUPS = 64
#: Nodes that search through lists and objects for a matching scalar (complex-matcher's ``some``).
#: Searches through a column's insides made one by one before its scalars are indexed.
_INDEX_AFTER = 3
_SEARCHES = (nodes.String, nodes.NumberOrString, nodes.GlobPattern, nodes.RegExp, nodes.Number)
_BITS = bytes.maketrans(b"01", b"\x00\x01")


def rows_of(mask):
    """The row numbers set in a mask, in increasing order."""
    if not mask:
        return []
    flags = format(mask, "b").encode("ascii")[::-1].translate(_BITS)
    return list(itertools.compress(range(len(flags)), flags))


def mask_of(rows, size):
    """The mask of some row numbers (any order, repeats allowed)."""
    flags = bytearray(b"0") * size
    for row in rows:
        flags[row] = 49  # "1"
    flags.reverse()
    return int(flags, 2) if size else 0


def _key(value):
    """A hashable key equal for equal JSON values, and only for them (``1``, ``1.0`` and
    ``True`` are different keys; dict order is kept, which only splits groups)."""
    kind = type(value)
    if kind is str:
        return value
    if kind is list:
        return ("l", tuple(_key(item) for item in value))
    if kind is dict:
        return ("d", tuple((name, _key(item)) for name, item in value.items()))
    return (kind, value)


def _scalars(value, out):
    """Every scalar ``some`` would visit in ``value`` (a list or plain object)."""
    for item in values_of(value):
        if type(item) is list or type(item) is dict:
            _scalars(item, out)
        else:
            out.append(item)
    return out


class Column:
    """The values of one property path, row by row (``MISSING`` where absent).

    ``absent`` is the mask of the rows where the path stops early (a ``null`` or missing
    value on the way): a ``Property`` node is false there whatever its child says.
    Everything else is computed on first use and kept.
    """

    __slots__ = ("values", "absent", "containers", "searched", "_groups", "_scalars", "_lines", "_lock")

    def __init__(self, values, absent, distinct=False, containers=None):
        self.values = values
        self.absent = absent
        if containers is None:
            containers = any(type(v) is list or type(v) is dict for v in values)
        self.containers = containers
        self._groups = () if distinct else None  # (): known to be spread
        self._scalars = self._lines = None
        self.searched = 0
        self._lock = threading.Lock()

    def _once(self, name, build):
        if getattr(self, name) is None:
            with self._lock:
                if getattr(self, name) is None:
                    setattr(self, name, build())
        return getattr(self, name)

    def grouped(self):
        """Whether :meth:`groups` is already known (so asking costs nothing)."""
        return self._groups is not None

    def groups(self):
        """``[(value, mask)]`` per distinct value, or ``None`` when values are mostly distinct."""
        groups = self._once("_groups", self._group)
        return list(groups.values()) if groups else None

    def _group(self):
        size = len(self.values)
        limit = max(_MIN_GROUPS, size // _SPREAD_SHARE)
        groups = {}
        for row, value in enumerate(self.values):
            try:
                key = _key(value)
            except TypeError:  # not a JSON value: never grouped
                return ()
            entry = groups.get(key)
            if entry is None:
                if len(groups) >= limit:
                    return ()
                groups[key] = (value, [row])
            else:
                entry[1].append(row)
        return {key: (value, mask_of(rows, size)) for key, (value, rows) in groups.items()}

    def updated(self, values, absent, changed):
        """This column with new ``values`` that differ only at rows ``changed``: what was
        learnt about the others is kept (indexes of the insides are read again)."""
        containers = self.containers or any(type(values[row]) in (list, dict) for row in changed)
        # unsearched: the index of the insides is built again once it is used enough
        column = Column(values, absent, containers=containers)
        if self._lines is not None:
            column._lines = _patched_lines(self._lines[3], values, changed)
        if not self._groups:
            column._groups = self._groups  # unknown, or known to be spread: still a fair guess
            return column
        groups = dict(self._groups)
        limit = max(_MIN_GROUPS, len(values) // _SPREAD_SHARE)
        for row in changed:
            bit = 1 << row
            key = _key(self.values[row])  # grouped, so it has a key
            value, mask = groups[key]
            if mask & ~bit:
                groups[key] = (value, mask & ~bit)
            else:
                del groups[key]
            try:
                key = _key(values[row])
            except TypeError:
                groups = ()
                break
            value, mask = groups.get(key, (values[row], 0))
            groups[key] = (value, mask | bit)
            if len(groups) > limit:
                groups = ()
                break
        column._groups = groups
        return column

    def scalars(self):
        """``[(scalar, rows)]``: each distinct scalar found in the values, with the rows
        that hold it anywhere (scalar values hold themselves); ``None`` until the column
        was searched :data:`_INDEX_AFTER` times: on whole objects the index costs several
        searches (10k VMs: 20 MiB, about three searches' time), so it is built for a
        table in steady use only."""
        if self._scalars is None and self.searched < _INDEX_AFTER:
            self.searched += 1
            return None
        return self._once("_scalars", self._index_scalars)

    def _index_scalars(self):
        index = {}
        for row, value in enumerate(self.values):
            found = _scalars(value, []) if type(value) is list or type(value) is dict else (value,)
            for scalar in found:
                rows = index.setdefault(_key(scalar), (scalar, []))[1]
                if not rows or rows[-1] != row:
                    rows.append(row)
        return list(index.values())

    def lines(self):
        """``(text, starts, longest, lines)``: the :func:`canonicalize`-d strings joined by
        ``"\\n"`` (other values as empty lines), where each row starts, the longest line,
        and the lines themselves."""
        return self._once("_lines", self._join)

    def _join(self):
        return _joined([canonicalize(v) if type(v) is str else "" for v in self.values])


def _joined(texts):
    """``(text, starts, longest, texts)`` of the lines of a column (see :meth:`Column.lines`)."""
    lengths = list(map(len, texts))
    # each line starts after the ones before it and their line ends
    starts = list(map(operator.add, itertools.accumulate(lengths, initial=0), range(len(texts))))
    return "\n".join(texts), starts, max(lengths, default=0), texts


def _patched_lines(texts, values, changed):
    texts = list(texts)
    for row in changed:
        value = values[row]
        texts[row] = canonicalize(value) if type(value) is str else ""
    return _joined(texts)


class Table:
    """A list of objects, read by property path on demand (thread-safe, never modified).

    :param objects: the rows, in the order results are wanted.
    """

    def __init__(self, objects):
        self.objects = objects
        self.size = len(objects)
        self.everything = (1 << self.size) - 1
        self._columns = {(): Column(objects, 0, distinct=True)}  # rows are distinct objects
        self._lock = threading.Lock()

    def __len__(self):
        return self.size

    def column(self, path):
        """The :class:`Column` of a property path (a tuple of property names)."""
        column = self._columns.get(path)
        if column is None:
            column = self._extend(self.column(path[:-1]), path[-1])
            with self._lock:
                column = self._columns.setdefault(path, column)
        return column

    def _extend(self, parent, name):
        values, absent = [], []
        append = values.append
        for row, value in enumerate(parent.values):
            if type(value) is dict:
                append(value.get(name, MISSING))
            elif value is None or value is MISSING:
                append(MISSING)
                absent.append(row)
            else:
                append(nodes.get_property(value, name))
        return Column(values, mask_of(absent, self.size) if absent else 0)

    def updated(self, objects, changed):
        """A table of ``objects``, which differ from this table's only at rows ``changed``
        (the same ids, some of them replaced): the columns already read are patched at
        those rows instead of read again, so filters stay fast on a collection that
        changes all the time.  This table is left as it was."""
        if len(objects) != self.size:
            raise ValueError("an updated table has the same rows")
        table = Table(objects)
        for path, column in self._columns.items():
            if not path:
                continue
            parent = table._columns[path[:-1]]  # parents are read (so patched) first
            values, absent, name = list(column.values), column.absent, path[-1]
            for row in changed:
                value, bit = parent.values[row], 1 << row
                if type(value) is dict:
                    values[row], absent = value.get(name, MISSING), absent & ~bit
                elif value is None or value is MISSING:
                    values[row], absent = MISSING, absent | bit
                else:
                    values[row], absent = nodes.get_property(value, name), absent & ~bit
            table._columns[path] = column.updated(values, absent, changed)
        return table


def _few(rows, table):
    """Whether so few rows are left that reading them one by one beats grouping a column."""
    return rows is not None and rows.bit_count() * _SPREAD_SHARE < table.size


def _where(table, column, predicate, rows):
    """The mask of the rows among ``rows`` (``None``: all) whose value satisfies ``predicate``."""
    groups = None if _few(rows, table) and not column.grouped() else column.groups()
    if groups is not None and (rows is None or len(groups) < rows.bit_count()):
        found = 0
        for value, members in groups:
            if predicate(value):
                found |= members
        return found if rows is None else found & rows
    values = column.values
    candidates = range(table.size) if rows is None else rows_of(rows)
    return mask_of([row for row in candidates if predicate(values[row])], table.size)


def _search(node, table, column, rows):
    """A ``some``-style search (through lists and objects), by the cheapest way the column
    allows: per distinct value, per distinct scalar inside, or one pass over the strings."""
    if (_few(rows, table) and not column.grouped()) or column.groups() is not None:
        return _where(table, column, node.match, rows)
    if column.containers:
        index = column.scalars()
        if index is None:
            return _where(table, column, node.match, rows)
        match = node.match
        found = [members for scalar, members in index if match(scalar)]
        found = mask_of(itertools.chain.from_iterable(found), table.size)
        return found if rows is None else found & rows
    if type(node) is nodes.GlobPattern and node.glob.compiled is None:
        return _glob(node.glob, table, column, rows)
    if type(node) is nodes.RegExp:  # mostly distinct strings, e.g. names
        candidates = range(table.size) if rows is None else rows_of(rows)
        values = column.values
        found = jsregex.search_each(node.compiled, [values[row] for row in candidates])
        return mask_of([candidates[i] for i in found], table.size)
    return _where(table, column, node.match, rows)


def _glob(glob, table, column, rows):
    """A glob over a column of strings: one scan of the joined column."""
    if glob.matches_everything():
        found = mask_of([row for row, v in enumerate(column.values) if type(v) is str], table.size)
    else:
        text, starts, longest, _ = column.lines()
        found = mask_of([bisect.bisect_right(starts, at) - 1 for at in glob.match_starts(text, longest)],
                        table.size)
    return found if rows is None else found & rows


def _cost(node, table, path):
    """How many predicate calls evaluating ``node`` may take: cheapest children go first."""
    kind = type(node)
    if kind is nodes.And or kind is nodes.Or:
        return sum(_cost(child, table, path) for child in node.children)
    if kind is nodes.Not:
        return _cost(node.child, table, path)
    if kind is nodes.Property:
        return _cost(node.child, table, path + (node.name,))
    if kind is nodes.Null:
        return 0
    if kind is nodes.TruthyProperty:
        path = path + (node.name,)
    groups = table.column(path).groups()
    weight = 4 if kind is nodes.RegExp else 1
    return weight * (len(groups) if groups is not None else table.size)


def _select(node, table, path, rows):
    kind = type(node)
    if kind is nodes.And:
        for child in sorted(node.children, key=lambda c: _cost(c, table, path)):
            rows = _select(child, table, path, rows)
            if not rows:
                return 0
        return table.everything if rows is None else rows
    if kind is nodes.Or:
        found, left = 0, rows
        for child in sorted(node.children, key=lambda c: _cost(c, table, path)):
            got = _select(child, table, path, left)
            found |= got
            left = (table.everything if left is None else left) & ~got
            if not left:
                break
        return found
    if kind is nodes.Not:
        return (table.everything if rows is None else rows) & ~_select(node.child, table, path, rows)
    if kind is nodes.Null:
        return table.everything if rows is None else rows
    if kind is nodes.Property:
        inner = path + (node.name,)
        return _select(node.child, table, inner, rows) & ~table.column(inner).absent
    if kind is nodes.TruthyProperty:
        column = table.column(path + (node.name,))
        return _where(table, column, truthy, rows) & ~column.absent
    column = table.column(path)
    if kind in _SEARCHES:
        return _search(node, table, column, rows)
    return _where(table, column, node.match, rows)


def select(node, table, rows=None):
    """The row numbers of ``table`` whose object ``node`` matches, in increasing order.

    :param rows: only these row numbers are considered (e.g. those a token's scope lets
        through); ``None`` means all.
    :raises RegexTimeout: the regexes used up the evaluation budget (as ``match`` would).
    """
    if rows is not None:
        rows = mask_of(rows, table.size)
        if not rows:
            return []
    return rows_of(_select(node, table, (), rows))
