"""Deterministic sparse disk contents, derived from the seed and the VDI's uuid.

A disk is mostly zeros with a few allocated extents of pseudo-random bytes, so a
test can recompute any byte of any export.  Writes (imports) go to an overlay of
64 KiB pages on top of the generated content.
"""
import functools
import random

PAGE = 64 * 1024
MiB = 1024 * 1024
ZERO_PAGE = bytes(PAGE)


@functools.lru_cache(maxsize=64)
def _extent_bytes(seed, length):
    return random.Random(seed).randbytes(length)


class DiskContent:
    """The bytes of one virtual disk: generated extents plus written pages."""

    def __init__(self, virtual_size, extents=(), pages=None):
        self.virtual_size = virtual_size
        self.extents = tuple(sorted(extents))  # (offset, length, seed), page aligned
        self.pages = dict(pages or {})  # page index -> PAGE bytes

    @classmethod
    def generate(cls, seed, vdi_uuid, virtual_size):
        """A few extents placed by a RNG seeded with ``seed`` and the disk's uuid."""
        rng = random.Random(f"{seed}:{vdi_uuid}")
        npages = virtual_size // PAGE
        extents, used = [], set()
        for _ in range(rng.randint(2, 6)):
            length = rng.choice((1, 2, 4, 8, 16, 32)) * PAGE
            start = rng.randrange(0, max(1, npages - length // PAGE)) * PAGE
            span = set(range(start // PAGE, (start + length) // PAGE))
            if span & used:
                continue
            used |= span
            extents.append((start, length, rng.getrandbits(64)))
        return cls(virtual_size, extents)

    def copy(self):
        """An independent copy (clone or snapshot of the disk)."""
        return DiskContent(self.virtual_size, self.extents, self.pages)

    def with_write(self, offset, data):
        """Write ``data`` at ``offset`` (read-modify-write on page boundaries)."""
        end = min(offset + len(data), self.virtual_size)
        pos = offset
        while pos < end:
            index = pos // PAGE
            page = bytearray(self.read(index * PAGE, PAGE))
            start = pos - index * PAGE
            take = min(PAGE - start, end - pos)
            page[start:start + take] = data[pos - offset:pos - offset + take]
            self.pages[index] = bytes(page)
            pos += take

    def allocated_ranges(self):
        """Byte ranges that may hold non-zero data, sorted."""
        ranges = [(o, o + n) for o, n, _ in self.extents]
        ranges += [(i * PAGE, (i + 1) * PAGE) for i in self.pages]
        return sorted(ranges)

    def allocated_units(self, unit):
        """Indices of ``unit``-sized blocks that intersect allocated data."""
        units = set()
        for start, end in self.allocated_ranges():
            units.update(range(start // unit, (end - 1) // unit + 1))
        return sorted(u for u in units if u * unit < self.virtual_size)

    def read(self, offset, length):
        """Bytes ``[offset, offset+length)``; zeros where nothing is allocated."""
        length = max(0, min(length, self.virtual_size - offset))
        buf = None
        end = offset + length
        for ext_off, ext_len, seed in self.extents:
            lo, hi = max(offset, ext_off), min(end, ext_off + ext_len)
            if lo < hi:
                if buf is None:
                    buf = bytearray(length)
                data = _extent_bytes(seed, ext_len)
                buf[lo - offset:hi - offset] = data[lo - ext_off:hi - ext_off]
        if self.pages:
            for index in range(offset // PAGE, (end - 1) // PAGE + 1 if length else 0):
                page = self.pages.get(index)
                if page is None:
                    continue
                lo, hi = max(offset, index * PAGE), min(end, (index + 1) * PAGE)
                if buf is None:
                    buf = bytearray(length)
                buf[lo - offset:hi - offset] = page[lo - index * PAGE:hi - index * PAGE]
        if buf is None:
            return bytes(length) if length != PAGE else ZERO_PAGE
        return bytes(buf)

    def iter_raw(self, chunk=4 * MiB):
        """The whole disk as raw bytes, in chunks; zero chunks are shared, not allocated."""
        zeros = bytes(chunk)
        ranges = self.allocated_ranges()
        for offset in range(0, self.virtual_size, chunk):
            n = min(chunk, self.virtual_size - offset)
            if any(s < offset + n and e > offset for s, e in ranges):
                yield self.read(offset, n)
            else:
                yield zeros if n == chunk else bytes(n)


class DiskStore:
    """Contents of every VDI, generated lazily from the seed on first read."""

    def __init__(self, db, seed):
        self.db = db
        self.seed = seed
        self._contents = {}  # vdi ref -> DiskContent, once materialised or copied

    def create(self, vdi_ref):
        """Register a new VDI; its content is generated on first use."""
        self._contents.pop(vdi_ref, None)

    def get(self, vdi_ref):
        content = self._contents.get(vdi_ref)
        if content is None:
            record = self.db.record("VDI", vdi_ref)
            content = DiskContent.generate(self.seed, record["uuid"], record["virtual_size"])
            self._contents[vdi_ref] = content
        return content

    def create_empty(self, vdi_ref, virtual_size):
        """A new disk full of zeros (``VDI.create``)."""
        self._contents[vdi_ref] = DiskContent(virtual_size)

    def copy(self, source_ref, target_ref):
        """The target VDI starts with the source's exact content (clone, snapshot)."""
        self._contents[target_ref] = self.get(source_ref).copy()

    def resize(self, vdi_ref, virtual_size):
        """Grow a disk (``VDI.resize``): the new space reads as zeros.  Call it before the
        record's size changes: a disk not read yet is generated from that size."""
        self.get(vdi_ref).virtual_size = virtual_size

    def forget(self, vdi_ref):
        self._contents.pop(vdi_ref, None)
