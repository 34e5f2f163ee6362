"""XVA streams: a tar with ``ova.xml`` first, then 1 MiB chunks each followed by its XXH64.

All-zero chunks are skipped except the first and the last of each disk, as XAPI does.
"""
import tarfile
import time

import xxhash

CHUNK = 1024 * 1024
BLOCK = 512


def _member(name, data, mtime):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o644
    head = info.tobuf(format=tarfile.USTAR_FORMAT)
    padding = -len(data) % BLOCK
    return head + data + bytes(padding)


def chunk_hash(data):
    """The ``.xxhash`` member: 16 upper-case hex digits of XXH64 (seed 0)."""
    return b"%016X" % xxhash.xxh64_intdigest(data)


def xva_stream(ova_xml, disks, mtime=None):
    """Yield an XVA; ``disks`` is a list of ``(xva_id, disk)`` such as ``("Ref:3", disk)``."""
    mtime = time.time() if mtime is None else mtime
    yield _member("ova.xml", ova_xml.encode("utf-8"), mtime)
    for xva_id, disk in sorted(disks, key=lambda d: d[0]):
        nchunks = max(1, -(-disk.virtual_size // CHUNK))
        wanted = set(disk.allocated_units(CHUNK)) | {0, nchunks - 1}
        for index in sorted(wanted):
            data = disk.read(index * CHUNK, CHUNK)
            name = f"{xva_id}/{index:08d}"
            yield _member(name, data, mtime)
            yield _member(name + ".xxhash", chunk_hash(data), mtime)
    yield bytes(2 * BLOCK)


def read_disks(fileobj):
    """Validate an XVA (tar layout and every checksum); return ``(ova_xml, {id: chunks})``.

    ``chunks`` maps chunk number to bytes.  Raises ``ValueError`` on any inconsistency.
    """
    disks, ova, pending = {}, None, None
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for number, member in enumerate(tar):
            data = tar.extractfile(member).read() if member.isfile() else b""
            if number == 0:
                if member.name != "ova.xml":
                    raise ValueError("ova.xml is not the first member")
                ova = data.decode("utf-8")
                continue
            if member.name.endswith(".xxhash"):
                if pending is None or member.name != pending[0] + ".xxhash":
                    raise ValueError(f"checksum {member.name} without its chunk")
                if data != chunk_hash(pending[1]):
                    raise ValueError(f"checksum mismatch for {pending[0]}")
                prefix, index = pending[0].rsplit("/", 1)
                disks.setdefault(prefix, {})[int(index)] = pending[1]
                pending = None
            else:
                if pending is not None:
                    raise ValueError(f"chunk {pending[0]} has no checksum")
                pending = (member.name, data)
    if ova is None or pending is not None:
        raise ValueError("truncated XVA")
    return ova, disks
