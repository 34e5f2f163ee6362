"""XAPI transfer handlers: downloads (``/export``, ``/export_raw_vdi``) as closable chunk
iterators, uploads (``/import_raw_vdi``) of an exact length.

Each stream runs under a task created for it, so its progress is visible and it can be
cancelled.  A stream is complete only when the body ended *and* the task succeeded:
a connection cut at any point, an idle timeout, or a failed task raises, so a
truncated download can never look like a complete one.
"""
import logging
import threading
import time

import requests
import urllib3

from .errors import XapiError, XapiUnreachable

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
TASK_SETTLE_SECONDS = 10.0
#: How long a cancelled transfer's task is waited for, to be destroyed once it ended.
TASK_CLEANUP_SECONDS = 120.0
#: XAPI's statuses of a task that ended (``cancelling`` has not).
ENDED = ("success", "failure", "cancelled")


class _Transfer:
    """A transfer under its own XAPI task: its progress is visible, and it can be cancelled.

    :param marks: ``other_config`` entries for the task (who made it, for a later sweep).
    """

    def __init__(self, client, label, marks=None):
        self.client = client
        self.task = client.call("task.create", label, "xorest transfer")
        self.done = False
        try:
            for key, value in (marks or {}).items():
                client.call("task.add_to_other_config", self.task, key, value)
        except BaseException:
            self._destroy_task()
            raise

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
            try:
                record = self.client.call("task.get_record", self.task)
            except XapiError as exc:
                return exc  # the task is gone (destroyed): nothing left to wait for
            except XapiUnreachable:
                record = None
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
        """Destroy the task once it has ended: XAPI only marks a running (or cancelling)
        task for destruction and leaves it behind; a task not ended yet is destroyed by a
        background thread when it ends, so the caller's thread is not held."""
        if self._ended():
            self._destroy_now()
        else:
            threading.Thread(target=self._destroy_when_ended, name="xapi-task-cleanup", daemon=True).start()

    def _ended(self):
        record = self._task_record()
        return record is None or record.get("status") in ENDED

    def _destroy_when_ended(self):
        deadline = time.monotonic() + TASK_CLEANUP_SECONDS
        while not self._ended():
            if time.monotonic() > deadline:
                log.warning("task %s did not end in %g s; left to the pool", self.task, TASK_CLEANUP_SECONDS)
                return
            time.sleep(0.1)
        self._destroy_now()

    def _destroy_now(self):
        try:
            self.client.call("task.destroy", self.task, timeout=(2.0, 2.0))
        except (XapiError, XapiUnreachable):
            pass


class XapiStream(_Transfer):
    """One download: iterate for bytes, then it checks the task; ``close()`` always cleans up.

    :param client: the pool's :class:`~xorest.xapi.client.XapiClient`.
    :param path: handler path, e.g. ``/export``.
    :param query: handler parameters (``ref``, ``use_compression``, ``vdi``, ``format``...).
    :param idle_timeout: seconds without a byte after which the transfer fails.
    """

    def __init__(self, client, path, query, label, idle_timeout=300.0, marks=None):
        super().__init__(client, label, marks)
        self.bytes = 0
        self.body_complete = False  # the pool sent its whole body (the task may still settle)
        self.aborted = False
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
        length = self.response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        try:
            for chunk in self.response.raw.stream(CHUNK_SIZE, decode_content=False):
                if chunk:
                    self.bytes += len(chunk)
                    if self.bytes == length:
                        # complete before the last piece goes out: a client that leaves as
                        # soon as it has it must not be taken for one that left midway
                        self.body_complete = True
                    yield chunk
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if self.aborted:
                raise XapiUnreachable(f"transfer aborted after {self.bytes} bytes") from None
            raise XapiUnreachable(f"transfer cut after {self.bytes} bytes: {exc}") from None
        self.body_complete = True
        error = self._wait_task()
        if error is not None:
            raise error
        self.done = True

    def abort(self):
        """Stop a transfer whose client went away (safe from another thread): cancel the
        task and break a blocked read.  A transfer whose body is complete is left alone:
        its task is settling, and the client had every byte."""
        if self.body_complete or self.done:
            return
        self.aborted = True
        self._cancel_task()
        self.response.close()

    def close(self):
        """Cancel the task if the transfer did not finish, close the connection, drop the task."""
        if not self.done and not self.aborted:
            self._cancel_task()
        try:
            self.response.close()
        finally:
            self._destroy_task()


class BodyEndedEarly(Exception):
    """The body to upload ended before its announced length."""

    def __init__(self, sent, length):
        super().__init__(f"the body ended after {sent} of {length} bytes")
        self.sent, self.length = sent, length


class _ExactBody:
    """What ``requests`` sends: exactly ``length`` bytes of ``source`` (its length goes in
    ``Content-Length``), or :class:`BodyEndedEarly` after ``on_short()`` ran while the
    upstream request is still open."""

    def __init__(self, source, length, on_short):
        self.source, self.length, self.on_short = source, length, on_short
        self.sent = 0

    def __len__(self):
        return self.length

    def read(self, size=-1):
        left = self.length - self.sent
        if left <= 0:
            return b""
        try:
            data = self.source.read(min(left, max(size, CHUNK_SIZE)))  # big blocks: fewer round trips
        except Exception:  # a client gone mid-body surfaces as many kinds of error
            data = b""
        if not data:
            self.on_short()
            raise BodyEndedEarly(self.sent, self.length)
        self.sent += len(data)
        return data


class XapiUpload(_Transfer):
    """One upload (``/import_raw_vdi``) under its own task.

    XAPI reads a body until its ``Content-Length`` or the connection's end, and takes the
    end of the connection for the end of the data; so a body that ends early cancels the
    task *before* the connection closes, and the pool drops the upload.
    """

    def __init__(self, client, path, query, label, idle_timeout=300.0, marks=None):
        super().__init__(client, label, marks)
        self.path, self.query, self.idle_timeout = path, query, idle_timeout
        self.bytes = 0

    def send(self, source, length):
        """Upload exactly ``length`` bytes read from ``source``; returns the task's result
        (XAPI's XML text of it, e.g. the new VM's ref for ``/import``), raises otherwise.

        :raises BodyEndedEarly: ``source`` ended first (the task is cancelled).
        :raises XapiError: the pool failed the upload (``error_info`` of the task).
        :raises XapiUnreachable: the pool went away.
        """
        body = _ExactBody(source, length, self._cancel_task)
        try:
            try:
                base = self.client.upload_base(self.path, self.query)
                response = self.client.put_stream(self.path, dict(self.query, task_id=self.task), body,
                                                  self.idle_timeout, base=base)
            finally:
                self.bytes = body.sent
            response.close()
            if response.status_code != 200:
                raise self._task_error() or XapiError("HTTP_ERROR", [str(response.status_code), self.path])
            error = self._wait_task()
            if error is not None:
                raise error
            self.done = True
            return (self._task_record() or {}).get("result", "")
        except BaseException:
            if not self.done:
                self._cancel_task()
            raise
        finally:
            self._destroy_task()
