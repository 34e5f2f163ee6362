"""Exports: VMs as XVA and disks as VHD or raw, streamed from the pools.

A running VM is snapshotted first; the snapshot is destroyed when the stream ends, fails
or the client goes away, and a sweep removes snapshots left behind by a crash.
Compression is done by XAPI when the pool can, else here (zstd with threads, or gzip).
"""
import logging
import os
import struct
import threading
import zlib
from typing import NamedTuple, Optional

import zstandard

from ..errors import BadRequest, Conflict, Unavailable, UpstreamError
from ..xapi import XapiError, XapiStream, XapiUnreachable
from .upstream import pool_failures
from .liveness import owner_mark
from .sweeper import EXPORT_MARK, TASK_MARK, destroy_vm_with_disks

log = logging.getLogger(__name__)

VHD_SECTOR = 512


def parse_compress(value):
    """``compress`` query value -> ``None``, ``"gzip"`` or ``"zstd"`` (legacy ``true`` is gzip).

    Only the documented values, as written: spaces or capitals are a 400 like any other.
    """
    if value is None or value in ("", "false", "none", "0"):
        return None
    if value in ("true", "1", "gzip"):
        return "gzip"
    if value == "zstd":
        return "zstd"
    raise BadRequest(f"invalid compress={value!r}: use gzip, zstd or none", valid=["gzip", "zstd", "none"])


class VmExportPlan(NamedTuple):
    """What an XVA export will be, decided before anything starts."""

    vm: dict
    algorithm: Optional[str]  # gzip, zstd or None
    use_snapshot: bool
    filename: str
    content_type: str = "application/octet-stream"


class DiskExportPlan(NamedTuple):
    """What a disk export will be, decided before anything starts."""

    vdi: dict
    base: Optional[dict]  # the snapshot a delta VHD starts from
    filename: str
    content_type: str
    length: Optional[int]  # known up front for raw (the virtual size); VHD: from its block table


DISK_CONTENT_TYPES = {"vhd": "application/vhd", "raw": "application/octet-stream"}


class Export:
    """What the API streams: metadata, a chunk iterator and ``close()`` (idempotent)."""

    def __init__(self, chunks, *, filename, content_type, length=None, task=None, compression=None,
                 cleanups=(), abort=None, snapshot=None):
        self.chunks = chunks
        self.snapshot = snapshot  # uuid of the snapshot exported in place of a VM, if any
        self.filename = filename
        self.content_type = content_type
        self.length = length
        self.task = task
        self.compression = compression
        self._cleanups = list(cleanups)
        self._abort = abort
        self._closed = False
        self._lock = threading.Lock()

    @property
    def closed(self):
        return self._closed

    def abort(self):
        """The client went away: stop the transfer now (safe from any thread).

        Only breaks the upstream read; the clean-ups run when the response closes.  A
        transfer that already has its whole body is left to finish.
        """
        if self._abort is not None and not self._closed:
            self._abort()

    def close(self):
        """Run the clean-ups once (cancel the task, close upstream, drop the snapshot).

        Safe from any thread: a disconnect watchdog may call it while another thread is
        blocked reading the pool, which then fails and ends the response.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except Exception:
                log.exception("export clean-up failed")


def _gateway_compressor(algorithm, config):
    if algorithm == "zstd":
        threads = config.zstd_threads if config.zstd_threads >= 0 else (os.cpu_count() or 1)
        cctx = zstandard.ZstdCompressor(level=config.zstd_level, threads=threads)
        obj = cctx.compressobj()
        return obj.compress, lambda: obj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
    obj = zlib.compressobj(6, zlib.DEFLATED, 31)
    return obj.compress, obj.flush


def _compress(chunks, algorithm, config):
    compress, finish = _gateway_compressor(algorithm, config)
    pending, pending_size = [], 0
    for chunk in chunks:
        out = compress(chunk)
        if out:
            pending.append(out)
            pending_size += len(out)
            if pending_size >= 1 << 20:
                yield b"".join(pending)
                pending, pending_size = [], 0
    pending.append(finish())
    yield b"".join(pending)


def vhd_length(head):
    """Exact size of a VHD stream from its first bytes (footer, header, BAT), or ``None``."""
    if len(head) < 1536 or head[:8] != b"conectix" or head[512:520] != b"cxsparse":
        return None
    bat_offset, _, entries, block_size = struct.unpack_from(">QIII", head, 528)
    bat_end = bat_offset + entries * 4
    if len(head) < bat_end:
        return None
    sectors = [s for s in struct.unpack_from(f">{entries}I", head, bat_offset) if s != 0xFFFFFFFF]
    bitmap = -(-block_size // VHD_SECTOR // 8 // VHD_SECTOR) * VHD_SECTOR
    if not sectors:
        return -(-bat_end // VHD_SECTOR) * VHD_SECTOR + VHD_SECTOR
    return max(sectors) * VHD_SECTOR + bitmap + block_size + VHD_SECTOR


def _prefetch(stream, minimum, cleanups):
    """Read at least ``minimum`` bytes (or the whole body) before headers are sent.

    A failure here can still be a proper HTTP error: it is translated and clean-up runs.
    """
    iterator = iter(stream)
    head = b""
    try:
        while len(head) < minimum:
            head += next(iterator)
    except StopIteration:
        pass
    except (XapiError, XapiUnreachable) as exc:
        for cleanup in reversed(cleanups):
            cleanup()
        if isinstance(exc, XapiUnreachable):
            raise Unavailable(f"the pool stopped sending: {exc}") from None
        raise UpstreamError(f"the pool failed the export: {exc}", code=exc.code) from None
    return head, iterator


def _chain(head, iterator):
    if head:
        yield head
    yield from iterator


def safe_filename(name, extension):
    cleaned = "".join(c if c.isprintable() and c not in '/\\"' else "_" for c in name).strip(" .")
    return f"{cleaned or 'export'}.{extension}"


class ExportService:
    """Opens exports on the right pool connection.

    :param collections: a :class:`~xorest.services.collections.CollectionService`.
    :param pools: the :class:`~xorest.services.pools.PoolService`.
    """

    def __init__(self, collections, pools, config, tasks=None):
        self.collections = collections
        self.pools = pools
        self.config = config
        self.tasks = tasks  # exports appear in the task log while they run

    def _task(self, name, obj, params, stream_of):
        """A task for an export, and the clean-up that ends it (success only if every
        byte went out and the pool's task succeeded)."""
        if self.tasks is None:
            return None, lambda: None
        task = self.tasks.begin(f"REST API: {name}", object_id=obj["id"], object_type=obj["type"], params=params,
                                kind="xo:rest-api:transfer")

        def end():
            stream = stream_of()
            if stream is not None and stream.done:
                task.succeed({"bytes": stream.bytes})
            else:
                task.fail(Unavailable("the export did not complete (the client left, or the pool failed)",
                                      bytes=stream.bytes if stream is not None else 0))
        return task, end

    def _choose(self, algorithm, pool_obj):
        if algorithm is None:
            return None, None
        mode = self.config.compression
        host_can = algorithm == "gzip" or bool(pool_obj and pool_obj.get("zstdSupported"))
        if mode == "gateway" or (mode == "auto" and not host_can):
            return None, "gateway"
        if mode == "host" and not host_can:
            raise BadRequest(f"this pool cannot compress with {algorithm} (XOREST_COMPRESSION=host)")
        return algorithm, "host"

    def _open(self, conn, path, query, label):
        with pool_failures("the pool refused the export"):
            return XapiStream(conn.rpc, path, query, label, idle_timeout=self.config.export_idle_timeout,
                              marks={TASK_MARK: owner_mark()})

    def _task_uuid(self, conn, task_ref):
        try:
            return conn.rpc.call("task.get_uuid", task_ref)
        except (XapiError, XapiUnreachable):
            return None

    def _stream_chunks(self, stream, algorithm_here):
        def upstream():
            try:
                yield from stream
            except (XapiError, XapiUnreachable) as exc:
                if stream.aborted:
                    log.info("export stopped after %d bytes: the client went away", stream.bytes)
                else:
                    log.warning("export failed after %d bytes: %s", stream.bytes, exc)
                raise
        chunks = upstream()
        return _compress(chunks, algorithm_here, self.config) if algorithm_here else chunks

    def plan_vm_export(self, collection, key, compress, use_snapshot=None):
        """Check an XVA export's request without starting it (``HEAD`` answers from this).

        :returns: a :class:`VmExportPlan`.
        :raises BadRequest, Conflict, NotFound: as the export itself would.
        """
        algorithm = parse_compress(compress)
        vm = self.collections.get(collection, key)
        running = vm["type"] == "VM" and vm.get("power_state") in ("Running", "Paused")
        if use_snapshot is None:
            use_snapshot = running
        if use_snapshot and vm["type"] != "VM":
            raise BadRequest(f"use_snapshot is for VMs; this is a {vm['type']}", parameter="use_snapshot")
        if running and not use_snapshot:
            raise Conflict(f"the VM is {vm['power_state'].lower()}: export it through a snapshot "
                           "(leave use_snapshot out) or shut it down first")
        extension = {"gzip": "xva.gz", "zstd": "xva.zst"}.get(algorithm, "xva")
        return VmExportPlan(vm, algorithm, use_snapshot, safe_filename(vm["name_label"], extension))

    def open_vm_export(self, collection, key, compress, use_snapshot=None):
        """An :class:`Export` of a VM, snapshot or template as XVA.

        :param use_snapshot: export a snapshot taken for the purpose (destroyed afterwards)
            instead of the VM itself; ``None`` does so only when the VM is running, which
            XAPI cannot export directly.
        """
        plan = self.plan_vm_export(collection, key, compress, use_snapshot)
        vm, algorithm = plan.vm, plan.algorithm
        conn = self.pools.connection_for(vm)
        pool_obj = self.collections.cache.snapshot().find("pools", vm["$pool"])
        host_algorithm, where = self._choose(algorithm, pool_obj)
        opened = []
        task, end_task = self._task("export VM", vm, {"format": "xva", "compress": algorithm},
                                    lambda: opened[0] if opened else None)
        cleanups, target, snapshot_uuid = [end_task], vm["_xapiRef"], None
        try:
            if plan.use_snapshot:
                target, snapshot_uuid = self._snapshot(conn, vm)
                cleanups.append(lambda: self._destroy_snapshot_later(conn, target))
            query = {"ref": target, "use_compression": {"gzip": "true", "zstd": "zstd"}.get(host_algorithm, "false")}
            stream = self._open(conn, "/export", query, f"xorest export {vm['name_label']}")
        except BaseException as exc:
            if task is not None:
                task.fail(exc)
            for cleanup in cleanups[1:]:
                cleanup()
            raise
        opened.append(stream)
        cleanups.append(stream.close)
        chunks = self._stream_chunks(stream, algorithm if where == "gateway" else None)
        head, rest = _prefetch(chunks, 1, cleanups)
        xapi_task = self._task_uuid(conn, stream.task)
        if task is not None:
            task.link(xapi_task, "/export")
        return Export(_chain(head, rest), filename=plan.filename,
                      content_type=plan.content_type, task=xapi_task,
                      compression=(algorithm, where) if algorithm else None, cleanups=cleanups,
                      abort=stream.abort, snapshot=snapshot_uuid)

    def plan_vdi_export(self, collection, key, fmt, base=None):
        """Check a disk export's request without starting it (``HEAD`` answers from this).

        :returns: a :class:`DiskExportPlan`.
        """
        vdi = self.collections.get(collection, key)
        base_obj = None
        if base:
            if fmt != "vhd":
                raise BadRequest("base= is only for .vhd exports")
            base_obj = self.collections.get("vdi-snapshots", base)
        return DiskExportPlan(vdi, base_obj, safe_filename(vdi["name_label"], fmt), DISK_CONTENT_TYPES[fmt],
                              vdi["size"] if fmt == "raw" else None)

    def open_vdi_export(self, collection, key, fmt, base=None):
        """An :class:`Export` of a disk as ``vhd`` (optionally a delta from ``base``) or ``raw``."""
        plan = self.plan_vdi_export(collection, key, fmt, base)
        vdi = plan.vdi
        conn = self.pools.connection_for(vdi)
        query = {"vdi": vdi["_xapiRef"], "format": fmt}
        if plan.base is not None:
            query["base"] = plan.base["_xapiRef"]
        opened = []
        task, end_task = self._task("export VDI", vdi, {"format": fmt, "base": base},
                                    lambda: opened[0] if opened else None)
        try:
            stream = self._open(conn, "/export_raw_vdi", query, f"xorest export {vdi['name_label']}")
        except BaseException as exc:
            if task is not None:
                task.fail(exc)
            raise
        opened.append(stream)
        cleanups = [end_task, stream.close]
        chunks = self._stream_chunks(stream, None)
        length = plan.length
        if fmt == "raw":
            head, rest = _prefetch(chunks, 1, cleanups)
        else:
            head, rest = _prefetch(chunks, 2048 + 4 * (-(-vdi["size"] // (2 << 20))) + 512, cleanups)
            length = vhd_length(head)
        xapi_task = self._task_uuid(conn, stream.task)
        if task is not None:
            task.link(xapi_task, "/export_raw_vdi")
        return Export(_chain(head, rest), filename=plan.filename, content_type=plan.content_type,
                      length=length, task=xapi_task, cleanups=cleanups, abort=stream.abort)

    # snapshots of running VMs ---------------------------------------------------

    def _snapshot(self, conn, vm):
        """Snapshot ``vm`` for an export, marked as ours for the sweep: ``(ref, uuid)``."""
        ref = None
        try:
            ref = conn.rpc.call("VM.snapshot", vm["_xapiRef"], f"{vm['name_label']} (xorest export)", [])
            conn.rpc.call("VM.add_to_other_config", ref, EXPORT_MARK, owner_mark())
            return ref, conn.rpc.call("VM.get_uuid", ref)
        except (XapiError, XapiUnreachable) as exc:
            if ref is not None:  # unmarked, the sweep would never find it
                self._destroy_snapshot_later(conn, ref)
            if isinstance(exc, XapiUnreachable):
                raise Unavailable(str(exc)) from None
            raise UpstreamError(f"cannot snapshot the VM: {exc}", code=exc.code) from None

    @staticmethod
    def _destroy_snapshot_later(conn, ref):
        """Destroy in the background: the pool may hold the snapshot a while after the
        transfer ends (its export task settling), and a request thread must not wait."""
        threading.Thread(target=destroy_vm_with_disks, args=(conn, ref), name="export-snapshot-cleanup",
                         daemon=True).start()
