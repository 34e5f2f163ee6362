"""Imports: a disk's content written from a raw or VHD body, streamed into the pool.

The body goes to XAPI's ``/import_raw_vdi`` as it arrives (constant memory, any size),
with its ``Content-Length``: XAPI needs the size up front and refuses chunked bodies.
"""
import logging

from ..errors import BadRequest, LengthRequired, PayloadTooLarge, UpstreamError
from ..xapi import BodyEndedEarly, XapiError, XapiUnreachable, XapiUpload
from .exports import pool_failures

log = logging.getLogger(__name__)


class ImportService:
    """Writes uploads into the pools' disks.

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
        :returns: the number of bytes written.
        """
        if length is None:
            raise LengthRequired("send the body with a Content-Length: the pool needs the size up front")
        vdi = self.collections.get("vdis", key)
        if fmt == "raw" and length > vdi["size"]:
            raise PayloadTooLarge(f"{length} bytes do not fit in this {vdi['size']}-byte disk",
                                  size=vdi["size"])
        if vdi.get("read_only"):
            raise BadRequest("this disk is read-only")
        conn = self.pools.connection_for(vdi)
        with pool_failures("the pool refused the import"):
            upload = XapiUpload(conn.rpc, "/import_raw_vdi", {"vdi": vdi["_xapiRef"], "format": fmt},
                                f"xorest import {vdi['name_label']}", idle_timeout=self.config.export_idle_timeout)
        try:
            upload.send(source, length)
        except BodyEndedEarly as exc:
            log.warning("import into %s stopped: %s", key, exc)
            raise BadRequest(f"{exc}; the import was cancelled", received=exc.sent, expected=exc.length) from None
        except XapiError as exc:
            log.warning("import into %s failed after %d bytes: %s", key, upload.bytes, exc)
            raise UpstreamError(f"the pool failed the import: {exc}", code=exc.code, params=exc.params) from None
        except XapiUnreachable as exc:
            log.warning("import into %s failed after %d bytes: %s", key, upload.bytes, exc)
            raise UpstreamError(f"the pool went away during the import: {exc}") from None
        log.info("imported %d bytes (%s) into %s", length, fmt, key)
        return length
