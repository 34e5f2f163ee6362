"""XAPI's asynchronous calls: ``Async.<method>`` starts a task; its record gives the
progress, then the result or the error.  The task is destroyed once read, as Xen
Orchestra does (tasks otherwise pile up in the pool until it restarts)."""
import logging
import time
import xmlrpc.client

from .errors import XapiError, XapiUnreachable

log = logging.getLogger(__name__)

#: Seconds between two looks at a running task: short at first, then longer.
POLL_FIRST, POLL_MAX = 0.05, 0.5
#: How long an unreachable pool may stay so while a task is followed (a master restarting).
UNREACHABLE_GRACE = 60.0


def parse_result(text):
    """A task's ``result`` (an XML-RPC ``<value>``) as Python: a ref, a list of refs, ``""``."""
    if not text:
        return ""
    try:
        (value,), _ = xmlrpc.client.loads(f"<methodResponse><params><param>{text}</param></params></methodResponse>")
        return value
    except Exception:  # expat and xmlrpc raise several kinds: not XML-RPC, keep the text
        return text


class AsyncCall:
    """One ``Async.<method>`` call and its task.

    :param client: the pool's :class:`~xorest.xapi.client.XapiClient`.
    :param method: ``Class.message`` (without ``Async.``).
    :param marks: ``other_config`` entries for its task (the process that follows it).
    """

    def __init__(self, client, method, *args, marks=None):
        self.client, self.method = client, method
        self.task = client.call(f"Async.{method}", *args)
        self.uuid = None
        self.cancel_sent = False
        for key, value in (marks or {}).items():  # who started it, for a later sweep
            try:
                client.call("task.add_to_other_config", self.task, key, value)
            except (XapiError, XapiUnreachable) as exc:
                log.info("cannot mark task %s (%s): %s", self.task, method, exc)

    def task_uuid(self):
        """The task's uuid (what Xen Orchestra shows), ``None`` if it cannot be read."""
        if self.uuid is None:
            try:
                self.uuid = self.client.call("task.get_uuid", self.task)
            except (XapiError, XapiUnreachable):
                return None
        return self.uuid

    def cancel(self):
        """Ask the pool to cancel the task (it stops at its next cancellation point)."""
        self.cancel_sent = True
        try:
            self.client.call("task.cancel", self.task)
        except (XapiError, XapiUnreachable) as exc:
            log.info("cannot cancel task %s (%s): %s", self.task, self.method, exc)

    def wait(self, on_progress=None, should_cancel=None):
        """Follow the task to its end; returns its result.

        :param on_progress: called with the progress (0 to 1) as it changes.
        :param should_cancel: polled; when it returns true, the task is cancelled.
        :raises XapiError: the task failed or was cancelled (``TASK_CANCELLED``).
        :raises XapiUnreachable: the pool stayed unreachable too long.
        """
        delay, last_progress, unreachable_since = POLL_FIRST, None, None
        while True:
            if should_cancel is not None and not self.cancel_sent and should_cancel():
                self.cancel()
            try:
                record = self.client.call("task.get_record", self.task)
                unreachable_since = None
            except XapiUnreachable:
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > UNREACHABLE_GRACE:
                    raise
                record = None
            if record is not None:
                if on_progress is not None and record.get("progress") != last_progress:
                    last_progress = record.get("progress")
                    on_progress(float(last_progress or 0.0))
                status = record.get("status")
                if status == "success":
                    self._destroy()
                    return parse_result(record.get("result"))
                if status in ("failure", "cancelled"):
                    self._destroy()
                    raise XapiError.from_description(record.get("error_info") or ["INTERNAL_ERROR"])
            time.sleep(delay)
            delay = min(POLL_MAX, delay * 1.5)

    def _destroy(self):
        try:
            self.client.call("task.destroy", self.task)
        except (XapiError, XapiUnreachable):
            pass
