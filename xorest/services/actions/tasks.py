"""The task action: abort a running task (from any process)."""
import time

from . import Action

#: How long a synchronous abort waits for the task to end.
ABORT_WAIT = 30.0


def abort(ctx, task, body):
    """Abort a running task: its XAPI tasks are cancelled, it ends in failure."""
    tasks = ctx.tasks
    tasks.abort(task["id"])
    deadline = time.monotonic() + ABORT_WAIT
    while tasks.get(task["id"])["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)


ACTIONS = [Action("tasks", "abort", "abort task", abort, "vm.operate")]
