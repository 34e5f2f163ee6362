"""XAPI transfer handlers (``/export``, ``/export_raw_vdi``) as closable chunk iterators.

Each stream runs under a task created for it, so its progress is visible and it can be
cancelled.  A stream is complete only when the body ended *and* the task succeeded:
a connection cut at any point, an idle timeout, or a failed task raises, so a
truncated download can never look like a complete one.
"""
import logging
import time

import requests
import urllib3

from .errors import XapiError, XapiUnreachable

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
TASK_SETTLE_SECONDS = 10.0


class XapiStream:
    """One transfer: iterate for bytes, then it checks the task; ``close()`` always cleans up.

    :param client: the pool's :class:`~xorest.xapi.client.XapiClient`.
    :param path: handler path, e.g. ``/export``.
    :param query: handler parameters (``ref``, ``use_compression``, ``vdi``, ``format``...).
    :param idle_timeout: seconds without a byte after which the transfer fails.
    """

    def __init__(self, client, path, query, label, idle_timeout=300.0):
        self.client = client
        self.task = client.call("task.create", label, "xorest transfer")
        self.done = False
        self.bytes = 0
        try:
            self.response = client.get_stream(path, dict(query, task_id=self.task), idle_timeout)
        except BaseException:
            self._cancel_task()
            raise
        if self.response.status_code != 200:
            status = self.response.status_code
            self.response.close()
            error = self._task_error() or XapiError("HTTP_ERROR", [str(status), path])
            self._destroy_task()
            raise error

    @property
    def headers(self):
        return self.response.headers

    def __iter__(self):
        try:
            for chunk in self.response.raw.stream(CHUNK_SIZE, decode_content=False):
                if chunk:
                    self.bytes += len(chunk)
                    yield chunk
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise XapiUnreachable(f"transfer cut after {self.bytes} bytes: {exc}") from None
        error = self._wait_task()
        if error is not None:
            raise error
        self.done = True

    def _task_record(self):
        try:
            return self.client.call("task.get_record", self.task)
        except (XapiError, XapiUnreachable):
            return None

    def _task_error(self):
        record = self._task_record()
        if record and record.get("status") in ("failure", "cancelled"):
            return XapiError.from_description(record.get("error_info") or ["INTERNAL_ERROR"])
        return None

    def _wait_task(self):
        """``None`` if the task succeeded, else the error that ended it."""
        deadline = time.monotonic() + TASK_SETTLE_SECONDS
        while True:
            record = self._task_record()
            status = record.get("status") if record else None
            if status == "success":
                return None
            if status in ("failure", "cancelled"):
                return XapiError.from_description(record.get("error_info") or ["INTERNAL_ERROR"])
            if time.monotonic() > deadline:
                return XapiUnreachable(f"task {self.task} did not settle (status {status})")
            time.sleep(0.05)

    def _cancel_task(self):
        try:
            self.client.call("task.cancel", self.task, timeout=(2.0, 2.0))
        except (XapiError, XapiUnreachable):
            pass

    def _destroy_task(self):
        try:
            self.client.call("task.destroy", self.task, timeout=(2.0, 2.0))
        except (XapiError, XapiUnreachable):
            pass

    def close(self):
        """Cancel the task if the transfer did not finish, close the connection, drop the task."""
        if not self.done:
            self._cancel_task()
        try:
            self.response.close()
        finally:
            self._destroy_task()
