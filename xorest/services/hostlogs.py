"""A host's logs, streamed from the host itself as Xen Orchestra gets them: its audit trail
(``GET /hosts/<id>/audit.txt``, XAPI's ``/audit_log`` handler: one line per API call the
host carried out) and its log files (``GET /hosts/<id>/logs.tgz``, XAPI's
``/host_logs_download``: the host's ``/var/log`` as a gzipped tar).

Both handlers answer for the host they run on, so the request goes to that host's
address (the pool's URL for the master, whose certificate names that URL).  Each
download is a transfer as an export is (:class:`~.exports.Export`): under a task of the
pool (cancelled if the client leaves), in the task log, and cut if the host fails midway.
"""
import logging
import time
import zlib

from ..errors import Conflict, Unavailable
from ..xapi import XapiError, XapiStream, XapiUnreachable
from .exports import Export, _chain, _prefetch, safe_filename  # an export's framing, shared
from .upstream import pool_failures
from .liveness import owner_mark
from .sweeper import TASK_MARK

log = logging.getLogger(__name__)

AUDIT_PATH, LOGS_PATH = "/audit_log", "/host_logs_download"


class _OnHost:
    """The pool's client, its transfers sent to one host (``None``: the pool's URL)."""

    def __init__(self, client, address):
        self.client, self.address = client, address

    def call(self, method, *args, **kwargs):
        return self.client.call(method, *args, **kwargs)

    def get_stream(self, path, query, read_timeout):
        return self.client.get_stream(path, query, read_timeout, host=self.address)


def _gzip(chunks):
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


class HostLogService:
    """Opens a host's log downloads.

    :param collections: the :class:`~.collections.CollectionService` (the host, in scope).
    :param pools: the :class:`~.pools.PoolService` (the pool's connection).
    :param tasks: the :class:`~.tasks.TaskService` (the downloads are tasks of the log).
    """

    def __init__(self, collections, pools, config, tasks):
        self.collections, self.pools, self.config, self.tasks = collections, pools, config, tasks

    def audit_log(self, key, gzip=False):
        """An :class:`Export` of the host's audit trail (text; ``gzip``: compressed here, for
        a client that accepts ``Content-Encoding: gzip``), named as Xen Orchestra names it."""
        host = self._running(key)
        date = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        export = self._open(host, AUDIT_PATH, "download audit log",
                            safe_filename(f"{host.get('name_label') or host['id']}-{date}-audit", "txt"),
                            "application/octet-stream")
        if gzip:
            export.chunks = _gzip(export.chunks)
        return export

    def logs_archive(self, key):
        """An :class:`Export` of the host's ``/var/log`` as a gzipped tar."""
        host = self._running(key)
        return self._open(host, LOGS_PATH, "download host logs",
                          safe_filename(f"{host.get('name_label') or host['id']}-logs", "tgz"), "application/gzip")

    def _running(self, key):
        host = self.collections.get("hosts", key)
        if host.get("power_state") != "Running":
            raise Conflict(f"host {host['id']} is {str(host.get('power_state')).lower()}: only a running host serves "
                           "its logs", actual=host.get("power_state"), expected="Running", object=host["id"],
                           property="power_state")
        return host

    def _open(self, host, path, name, filename, content_type):
        conn = self.pools.connection_for(host)
        pool = self.collections.cache.snapshot().find("pools", host["$pool"]) or {}
        client = _OnHost(conn.rpc, None if pool.get("master") == host["id"] else host.get("address"))
        task = self.tasks.begin(f"REST API: {name}", object_id=host["id"], object_type="host",
                                kind="xo:rest-api:transfer")
        try:
            with pool_failures(f"host {host['id']} refused the download"):
                stream = XapiStream(client, path, {}, f"xorest {name} {host.get('name_label', '')}",
                                    idle_timeout=self.config.export_idle_timeout, marks={TASK_MARK: owner_mark()})
        except BaseException as exc:
            task.fail(exc)
            raise
        xapi_task = self._task_uuid(conn, stream.task)
        if xapi_task:
            task.link(xapi_task, path)

        def end():
            if stream.done:
                task.succeed({"bytes": stream.bytes})
            else:
                task.fail(Unavailable("the download did not complete (the client left, or the host failed)",
                                      bytes=stream.bytes))
        cleanups = [end, stream.close]
        head, rest = _prefetch(iter(stream), 1, cleanups)  # a failure before the first byte is still an answer
        return Export(_chain(head, rest), filename=filename, content_type=content_type, task=xapi_task,
                      cleanups=cleanups, abort=stream.abort)

    @staticmethod
    def _task_uuid(conn, ref):
        try:
            return conn.rpc.call("task.get_uuid", ref)
        except (XapiError, XapiUnreachable):  # the link is a convenience: the download goes on without it
            log.info("no uuid for the download's task %s", ref)
            return None
