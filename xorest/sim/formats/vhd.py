"""Dynamic and differencing VHD streams, laid out as XAPI's vhd-tool writes them.

Footer at 0, header at 512, one empty sector, BAT at 2048, then the allocated blocks
(a full sector bitmap and 2 MiB of data each) in BAT order, then the footer again.
All fields are big-endian; checksums are the one's complement of the byte sum.
"""
import struct

SECTOR = 512
BLOCK_SIZE = 2 * 1024 * 1024
SECTORS_PER_BLOCK = BLOCK_SIZE // SECTOR
BAT_OFFSET = 2048
UNUSED = 0xFFFFFFFF
DISK_DYNAMIC = 3
DISK_DIFFERENCING = 4


def checksum(data):
    """One's complement of the 32-bit sum of the bytes (checksum field zeroed by caller)."""
    return ~sum(data) & 0xFFFFFFFF


def geometry(size):
    """CHS geometry of the VHD specification for ``size`` bytes."""
    sectors = min(size // SECTOR, 65535 * 16 * 255)
    if sectors >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = sectors // spt
    else:
        spt = 17
        cth = sectors // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = sectors // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = sectors // spt
    return cth // heads, heads, spt


def footer(size, uid, disk_type=DISK_DYNAMIC, timestamp=0):
    """The 512-byte footer (also the header copy at offset 0)."""
    cyl, heads, spt = geometry(size)
    fields = struct.pack(
        ">8sIIQI4sI4sQQHBBII16sB",
        b"conectix", 2, 0x00010000, SECTOR, timestamp, b"caml", 1, b"\0\0\0\0",
        size, size, cyl, heads, spt, disk_type, 0, uid, 0,
    )
    raw = bytearray(fields.ljust(SECTOR, b"\0"))
    struct.pack_into(">I", raw, 64, checksum(raw))
    return bytes(raw)


def header(size, parent=None):
    """The 1024-byte dynamic header; ``parent`` is ``(uid, name, timestamp)`` for a delta."""
    entries = -(-size // BLOCK_SIZE)
    parent_uid, parent_name, parent_ts = parent or (bytes(16), "", 0)
    raw = bytearray(1024)
    struct.pack_into(">8sQQIII", raw, 0, b"cxsparse", 0xFFFFFFFFFFFFFFFF, BAT_OFFSET,
                     0x00010000, entries, BLOCK_SIZE)
    struct.pack_into(">16sI", raw, 40, parent_uid, parent_ts)
    name = parent_name.encode("utf-16-be")[:512]
    raw[64:64 + len(name)] = name
    struct.pack_into(">I", raw, 36, checksum(raw))
    return bytes(raw)


def bat_size(entries):
    return -(-entries * 4 // SECTOR) * SECTOR


def vhd_stream(disk, uid, blocks=None, parent=None):
    """Yield a VHD of ``disk``; ``blocks`` (block indices) defaults to every allocated one.

    With ``parent`` the disk type is differencing and absent blocks come from the parent.
    """
    size = disk.virtual_size
    entries = -(-size // BLOCK_SIZE)
    blocks = sorted(disk.allocated_units(BLOCK_SIZE) if blocks is None else blocks)
    disk_type = DISK_DIFFERENCING if parent else DISK_DYNAMIC
    foot = footer(size, uid, disk_type)
    yield foot + header(size, parent) + bytes(BAT_OFFSET - 3 * SECTOR)
    bat = bytearray(b"\xff" * bat_size(entries))
    first_sector = (BAT_OFFSET + len(bat)) // SECTOR
    for position, block in enumerate(blocks):
        struct.pack_into(">I", bat, block * 4, first_sector + position * (SECTORS_PER_BLOCK + 1))
    yield bytes(bat)
    bitmap = b"\xff" * SECTOR
    for block in blocks:
        data = disk.read(block * BLOCK_SIZE, BLOCK_SIZE)
        yield bitmap + data.ljust(BLOCK_SIZE, b"\0")
    yield foot


def parse(data):
    """Parse a whole VHD held in memory (tests and tools): returns footer fields and blocks."""
    foot = data[:SECTOR]
    if foot[:8] != b"conectix" or data[-SECTOR:] != foot:
        raise ValueError("bad VHD footer")
    stored = struct.unpack_from(">I", foot, 64)[0]
    zeroed = bytearray(foot)
    zeroed[64:68] = b"\0\0\0\0"
    if checksum(zeroed) != stored:
        raise ValueError("bad footer checksum")
    size = struct.unpack_from(">Q", foot, 48)[0]
    disk_type = struct.unpack_from(">I", foot, 60)[0]
    head = data[SECTOR:SECTOR + 1024]
    if head[:8] != b"cxsparse":
        raise ValueError("bad VHD header")
    bat_offset, _, entries, block_size = struct.unpack_from(">QIII", head, 16)
    parent_uid = head[40:56]
    blocks = {}
    for index in range(entries):
        sector = struct.unpack_from(">I", data, bat_offset + index * 4)[0]
        if sector != UNUSED:
            start = sector * SECTOR + SECTOR  # skip the bitmap
            blocks[index] = data[start:start + block_size]
    return {"size": size, "type": disk_type, "uid": foot[68:84], "parent_uid": parent_uid,
            "block_size": block_size, "blocks": blocks}
