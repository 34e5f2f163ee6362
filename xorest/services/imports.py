"""Imports: disks from raw or VHD bodies, VMs from XVA bodies, streamed into the pools.

The body goes to XAPI's ``/import_raw_vdi`` or ``/import`` as it arrives (constant memory,
any size), with its ``Content-Length``: XAPI needs the size up front and refuses chunked
bodies.  Its first bytes are checked before anything is created: a body that is not what
it claims to be is the client's error (400), not the pool's.  A disk created for an
import carries a mark until it is complete, so a process killed midway leaves nothing
that looks whole (see :mod:`.sweeper`).
"""
import contextlib
import logging
import re
import struct
import tarfile
import zlib
from datetime import datetime, timezone

import zstandard

from ..errors import BadRequest, LengthRequired, PayloadTooLarge, Unavailable, UpstreamError
from ..xapi import BodyEndedEarly, XapiError, XapiUnreachable, XapiUpload
from .execution import tracked
from .upstream import pool_failures
from .liveness import owner_mark
from .sweeper import IMPORT_MARK, TASK_MARK

#: XAPI's codes for an upload it could not read, per format: the body was wrong, not the
#: pool.  ``VDI_IO_ERROR`` is what XAPI answers for a VHD it cannot parse, and also for a
#: storage fault: only a parsed format (VHD) blames the body with it; raw content is never
#: parsed, so there it is the pool's failure.
BAD_BODY_CODES = {"xva": ("IMPORT_ERROR", "IMPORT_INCOMPATIBLE_VERSION"), "vhd": ("VDI_IO_ERROR",), "raw": ()}

log = logging.getLogger(__name__)


class ImportService:
    """Writes uploads into the pools: disk contents, new disks, new VMs.

    :param collections: a :class:`~xorest.services.collections.CollectionService`.
    :param pools: the :class:`~xorest.services.pools.PoolService`.
    """

    def __init__(self, collections, pools, config, tasks=None):
        self.collections = collections
        self.pools = pools
        self.config = config
        self.tasks = tasks  # imports appear in the task log while they run

    def import_vdi_content(self, key, fmt, source, length):
        """Replace the content of the VDI ``key`` with a ``raw`` or ``vhd`` body.

        :param source: a file-like object to read the body from.
        :param length: the body's announced length (``None`` when the client sent none).
        """
        _require_length(length)
        vdi = self.collections.get("vdis", key)
        if fmt == "raw" and length > vdi["size"]:
            raise PayloadTooLarge(f"{length} bytes do not fit in this {vdi['size']}-byte disk",
                                  size=vdi["size"])
        if vdi.get("read_only"):
            raise BadRequest("this disk is read-only")
        if fmt == "vhd":
            head = _read_exactly(source, VHD_FOOTER)
            vhd_virtual_size(head)
            source = _Prefixed(head, source)
        with tracked(self.tasks, "import VDI content", vdi, {"format": fmt, "length": length}) as task:
            self._upload(self.pools.connection_for(vdi), "/import_raw_vdi", {"vdi": vdi["_xapiRef"], "format": fmt},
                         vdi["name_label"], source, length, task)

    def create_vdi(self, sr_key, fmt, source, length, name_label=None, name_description=""):
        """A new disk on the SR ``sr_key``, filled from a ``raw`` or ``vhd`` body.

        Its size is the body's length (raw) or the one its VHD footer gives; the disk is
        destroyed again if the upload fails.

        :returns: the new VDI's uuid.
        """
        _require_length(length)
        sr = self.collections.get("srs", sr_key)
        if fmt == "vhd":
            head = _read_exactly(source, VHD_FOOTER)
            size = vhd_virtual_size(head)
            source = _Prefixed(head, source)
        else:
            size = length
        conn = self.pools.connection_for(sr)
        label = name_label or f"[xorest] Imported disk - {datetime.now(timezone.utc).isoformat(timespec='seconds')}"
        with tracked(self.tasks, "import VDI", sr, {"format": fmt, "length": length, "name_label": label}) as task:
            return self._create_vdi(conn, sr, fmt, source, length, size, label, name_description, task)

    def _create_vdi(self, conn, sr, fmt, source, length, size, label, name_description, task):
        with pool_failures("the pool refused to create the disk"):
            ref = conn.rpc.call("VDI.create", {
                "name_label": label, "name_description": name_description, "SR": sr["_xapiRef"],
                "virtual_size": str(size), "type": "user", "sharable": False, "read_only": False,
                "other_config": {IMPORT_MARK: owner_mark()}, "xenstore_data": {}, "sm_config": {}, "tags": []})
            uuid = conn.rpc.call("VDI.get_uuid", ref)
        try:
            self._upload(conn, "/import_raw_vdi", {"vdi": ref, "format": fmt}, label, source, length, task)
            # Complete only once unmarked: a marked disk is swept as half-made.
            with pool_failures("the pool took the disk but could not finalise it"):
                conn.rpc.call("VDI.remove_from_other_config", ref, IMPORT_MARK)
        except BaseException:
            try:
                conn.rpc.call("VDI.destroy", ref)
            except (XapiError, XapiUnreachable) as exc:
                log.warning("cannot destroy the disk %s of a failed import: %s", uuid, exc)
            raise
        if task is not None:
            task.log["result"] = {"id": uuid}
        return uuid

    def import_vm(self, pool_key, source, length, sr_key=None):
        """A new halted VM from an XVA body (plain, gzip or zstd: the pool detects which),
        with its disks on the SR ``sr_key`` (default: the pool's default SR).

        :returns: the new VM's uuid.
        """
        _require_length(length)
        pool = self.collections.get("pools", pool_key)
        head = _read_head(source, XVA_HEAD)
        check_xva_head(head, length)
        source = _Prefixed(head, source)
        query = {}
        if sr_key:
            sr = self.collections.get("srs", sr_key)
            if sr["$pool"] != pool["id"]:
                raise BadRequest(f"the SR {sr_key} is not in the pool {pool_key}", parameter="sr")
            query["sr_id"] = sr["_xapiRef"]
        conn = self.pools.connection_for(pool)
        with tracked(self.tasks, "import VM", pool, {"format": "xva", "length": length, "sr": sr_key}) as task:
            result = self._upload(conn, "/import", query, pool["name_label"] or pool["id"], source, length, task)
            refs = re.findall(r"OpaqueRef:[0-9a-fA-F-]+", result or "")
            if not refs:
                raise UpstreamError(f"the pool imported the XVA but named no VM ({result!r})")
            with pool_failures("the pool lost the imported VM"):
                uuid = conn.rpc.call("VM.get_uuid", refs[0])
            if task is not None:
                task.log["result"] = {"id": uuid}
            return uuid

    def _upload(self, conn, path, query, name, source, length, task=None):
        """Send the body under a task; returns the task's result."""
        with pool_failures("the pool refused the import"):
            upload = XapiUpload(conn.rpc, path, query, f"xorest import {name}",
                                idle_timeout=self.config.export_idle_timeout, marks={TASK_MARK: owner_mark()})
        if task is not None:
            task.written.add(conn)  # what was imported shows in reads right after the answer
            with contextlib.suppress(XapiError, XapiUnreachable):
                task.link(conn.rpc.call("task.get_uuid", upload.task), path)
        try:
            result = upload.send(source, length)
        except BodyEndedEarly as exc:
            log.warning("import into %s stopped: %s", name, exc)
            raise BadRequest(f"{exc}; the import was cancelled", received=exc.sent, expected=exc.length) from None
        except XapiError as exc:
            log.warning("import into %s failed after %d bytes: %s", name, upload.bytes, exc)
            if exc.code in BAD_BODY_CODES[query.get("format", "xva")]:
                raise BadRequest(f"the pool could not read the body: {exc}", code=exc.code,
                                 params=exc.params) from None
            raise UpstreamError(f"the pool failed the import: {exc}", code=exc.code, params=exc.params) from None
        except XapiUnreachable as exc:
            log.warning("import into %s failed after %d bytes: %s", name, upload.bytes, exc)
            raise Unavailable(f"the pool went away during the import: {exc}") from None
        log.info("imported %d bytes into %s", length, name)
        return result


VHD_FOOTER = 512
XVA_HEAD = 256 << 10  # enough compressed bytes to reach the first tar header


def _require_length(length):
    if length is None:
        raise LengthRequired("send the body with a Content-Length: the pool needs the size up front")


def _read_exactly(source, size):
    data = b""
    while len(data) < size:
        block = source.read(size - len(data))
        if not block:
            raise BadRequest(f"the body ended after {len(data)} bytes, before a VHD footer")
        data += block
    return data


def _read_head(source, size):
    """Up to ``size`` bytes from the start of the body (less if the body is shorter)."""
    data = b""
    while len(data) < size:
        block = source.read(size - len(data))
        if not block:
            break
        data += block
    return data


def check_xva_head(head, length):
    """Refuse a body that does not start as an XVA: a tar whose first member is
    ``ova.xml``, plain or compressed with gzip or zstd (what XAPI reads)."""
    compressed = head[:2] == b"\x1f\x8b" or head[:4] == b"\x28\xb5\x2f\xfd"
    if head[:2] == b"\x1f\x8b":
        try:
            plain = zlib.decompressobj(31).decompress(head, 512)
        except zlib.error as exc:
            raise BadRequest(f"not an XVA: the body is not valid gzip ({exc})") from None
    elif head[:4] == b"\x28\xb5\x2f\xfd":
        try:
            plain = zstandard.ZstdDecompressor().decompressobj().decompress(head)[:512]
        except zstandard.ZstdError as exc:
            raise BadRequest(f"not an XVA: the body is not valid zstd ({exc})") from None
    else:
        plain = head[:512]
    if len(plain) < 512:
        if compressed and len(head) < length:
            return  # the compressed head gave too little to tell: the pool checks the rest
        raise BadRequest("not an XVA: the body is shorter than a tar header")
    try:
        member = tarfile.TarInfo.frombuf(plain, "utf-8", "surrogateescape")
    except tarfile.TarError as exc:
        raise BadRequest(f"not an XVA: the body does not start with a tar header ({exc})") from None
    if member.name != "ova.xml":
        raise BadRequest(f"not an XVA: its first member is {member.name!r}, not ova.xml")


def vhd_virtual_size(footer):
    """The disk size a VHD's footer (its first 512 bytes, for a dynamic VHD) announces."""
    if footer[:8] != b"conectix":
        raise BadRequest("not a VHD: the body does not start with a VHD footer (send raw content with ?raw)")
    return struct.unpack_from(">Q", footer, 48)[0]


class _Prefixed:
    """A file-like reader: ``head`` first, then ``source``."""

    def __init__(self, head, source):
        self.head, self.source = head, source

    def read(self, size=-1):
        if self.head:
            data, self.head = (self.head, b"") if size < 0 else (self.head[:size], self.head[size:])
            return data
        return self.source.read(size)
