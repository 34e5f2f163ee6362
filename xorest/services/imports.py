"""Imports: disks from raw or VHD bodies, VMs from XVA bodies, streamed into the pools.

The body goes to XAPI's ``/import_raw_vdi`` or ``/import`` as it arrives (constant memory,
any size), with its ``Content-Length``: XAPI needs the size up front and refuses chunked
bodies.
"""
import logging
import re
import struct
from datetime import datetime, timezone

from ..errors import BadRequest, LengthRequired, PayloadTooLarge, UpstreamError
from ..xapi import BodyEndedEarly, XapiError, XapiUnreachable, XapiUpload
from .pools import pool_failures

log = logging.getLogger(__name__)


class ImportService:
    """Writes uploads into the pools: disk contents, new disks, new VMs.

    :param collections: a :class:`~xorest.services.collections.CollectionService`.
    :param pools: the :class:`~xorest.services.pools.PoolService`.
    """

    def __init__(self, collections, pools, config):
        self.collections = collections
        self.pools = pools
        self.config = config

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
        self._upload(self.pools.connection_for(vdi), "/import_raw_vdi", {"vdi": vdi["_xapiRef"], "format": fmt},
                     vdi["name_label"], source, length)

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
        with pool_failures("the pool refused to create the disk"):
            ref = conn.rpc.call("VDI.create", {
                "name_label": label, "name_description": name_description, "SR": sr["_xapiRef"],
                "virtual_size": str(size), "type": "user", "sharable": False, "read_only": False,
                "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": []})
            uuid = conn.rpc.call("VDI.get_uuid", ref)
        try:
            self._upload(conn, "/import_raw_vdi", {"vdi": ref, "format": fmt}, label, source, length)
        except BaseException:
            try:
                conn.rpc.call("VDI.destroy", ref)
            except (XapiError, XapiUnreachable) as exc:
                log.warning("cannot destroy the disk %s of a failed import: %s", uuid, exc)
            raise
        return uuid

    def import_vm(self, pool_key, source, length, sr_key=None):
        """A new halted VM from an XVA body (plain, gzip or zstd: the pool detects which),
        with its disks on the SR ``sr_key`` (default: the pool's default SR).

        :returns: the new VM's uuid.
        """
        _require_length(length)
        pool = self.collections.get("pools", pool_key)
        query = {}
        if sr_key:
            sr = self.collections.get("srs", sr_key)
            if sr["$pool"] != pool["id"]:
                raise BadRequest(f"the SR {sr_key} is not in the pool {pool_key}", parameter="sr")
            query["sr_id"] = sr["_xapiRef"]
        conn = self.pools.connection_for(pool)
        result = self._upload(conn, "/import", query, pool["name_label"] or pool["id"], source, length)
        refs = re.findall(r"OpaqueRef:[0-9a-fA-F-]+", result or "")
        if not refs:
            raise UpstreamError(f"the pool imported the XVA but named no VM ({result!r})")
        with pool_failures("the pool lost the imported VM"):
            return conn.rpc.call("VM.get_uuid", refs[0])

    def _upload(self, conn, path, query, name, source, length):
        """Send the body under a task; returns the task's result."""
        with pool_failures("the pool refused the import"):
            upload = XapiUpload(conn.rpc, path, query, f"xorest import {name}",
                                idle_timeout=self.config.export_idle_timeout)
        try:
            result = upload.send(source, length)
        except BodyEndedEarly as exc:
            log.warning("import into %s stopped: %s", name, exc)
            raise BadRequest(f"{exc}; the import was cancelled", received=exc.sent, expected=exc.length) from None
        except XapiError as exc:
            log.warning("import into %s failed after %d bytes: %s", name, upload.bytes, exc)
            raise UpstreamError(f"the pool failed the import: {exc}", code=exc.code, params=exc.params) from None
        except XapiUnreachable as exc:
            log.warning("import into %s failed after %d bytes: %s", name, upload.bytes, exc)
            raise UpstreamError(f"the pool went away during the import: {exc}") from None
        log.info("imported %d bytes into %s", length, name)
        return result


VHD_FOOTER = 512


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
