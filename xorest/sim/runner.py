"""One XAPI call being carried out: its checks, its claims, its duration, its progress.

An operation function receives an :class:`Operation` and the call's arguments.  It
checks and claims under the lock (``with op.locked() as db``), so of two conflicting
calls one wins and the other sees the winner in ``current_operations``; it then works
for the method's duration outside the lock (progress updates, cancellation checks),
and applies its change under the lock.  Its claims are released however it ends.
"""
import contextlib
import logging
import threading
import time

from . import lifecycle
from .rpc import XapiFailure
from .timing import PROGRESS_INTERVAL

log = logging.getLogger(__name__)


class Operation:
    """The context of one call (or of a step inside one).

    :param api: the :class:`~xorest.sim.api.XapiApi` running it.
    :param method: ``Class.message``, which names its duration.
    :param task: the task of an ``Async`` call (progress and cancellation), else ``None``.
    :param span: the part ``(start, length)`` of the task's progress this step covers.
    """

    def __init__(self, api, method, task=None, span=(0.0, 1.0)):
        self.api, self.db, self.method, self.task = api, api.db, method, task
        # current_operations are keyed by the call's task; a synchronous call has a
        # task too in XAPI, one nobody sees: a fresh ref stands for it.
        self.key = task if task is not None else api.db.new_ref()
        self.span = span
        self._claims = []

    @contextlib.contextmanager
    def locked(self):
        """The database, under its lock; changes are announced (``commit``) on the way out."""
        with self.db.lock:
            try:
                yield self.db
            finally:
                self.db.commit()

    def claim(self, cls, ref, op):
        """Show ``op`` as running on the object until this call ends (under the lock)."""
        lifecycle.claim(self.db, cls, ref, self.key, op)
        self._claims.append((cls, ref))

    def release(self):
        """Drop every claim of this call (also when it failed or was cancelled)."""
        if not self._claims:
            return
        with self.locked() as db:
            for cls, ref in reversed(self._claims):
                lifecycle.release(db, cls, ref, self.key)
        self._claims = []

    def cancelled(self):
        return self.task is not None and self.api.is_cancelling(self.task)

    def check_cancelled(self):
        """XAPI checks for cancellation between the steps of an operation."""
        if self.cancelled():
            raise XapiFailure("TASK_CANCELLED", self.task)

    def work(self, method=None, share=1.0):
        """Spend ``method``'s duration (default: this call's), moving the progress over
        ``share`` of this step's span; a cancelled task stops here."""
        seconds = self.api.timing.seconds(method or self.method)
        start, length = self.span
        done = 0.0
        deadline = time.monotonic() + seconds
        while True:
            self.check_cancelled()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.api.stopping.wait(min(left, PROGRESS_INTERVAL))
            done = 1.0 - max(0.0, deadline - time.monotonic()) / seconds
            if self.task is not None:
                self.api.progress(self.task, min(0.99, start + length * share * done))
        self.check_cancelled()
        self.span = (start + length * share, length * (1.0 - share))

    def step(self, method, share):
        """A nested operation (as XAPI's subtasks): its own claims, this call's task,
        ``share`` of what is left of this call's progress."""
        start, length = self.span
        child = Operation(self.api, method, self.task, (start, length * share))
        self.span = (start + length * share, length * (1.0 - share))
        return child

    def later(self, seconds, change):
        """Run ``change(db)`` under the lock after ``seconds`` (a host coming back up...)."""
        def run():
            if self.api.stopping.wait(seconds):
                return
            try:
                with self.locked() as db:
                    change(db)
            except Exception:
                log.exception("delayed change of %s failed", self.method)
        threading.Thread(target=run, name=f"later-{self.method}", daemon=True).start()


def execute(api, method, function, args, task=None):
    """Run one operation function; its claims are released whatever happens."""
    op = Operation(api, method, task)
    try:
        return function(op, *args)
    finally:
        op.release()


def nested(op, method, function, *args, share=1.0):
    """Run ``function`` as a step of ``op`` (XAPI calling itself, as evacuate migrates)."""
    child = op.step(method, share)
    try:
        return function(child, *args)
    finally:
        child.release()
