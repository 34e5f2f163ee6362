"""Server actions: connect to a registered pool, or disconnect from it (it stays registered)."""
import time

from ...errors import Conflict, Unavailable
from . import Action

#: How long ``connect`` waits for this process's first attempt to connect.
CONNECT_WAIT = 30.0


def _status(ctx, server):
    return ctx.pools.statuses().get(server["id"], {}).get("status", "disconnected")


def connect(ctx, server, body):
    """Connect to a registered pool: answers once connected here, or with the reason it is not."""
    if server.get("enabled") and _status(ctx, server) != "disconnected":
        raise Conflict(f"the server {server['id']} is already {_status(ctx, server)}", actual=_status(ctx, server),
                       expected="disconnected", object=server["id"], property="status")
    ctx.store.set_server_enabled(server["id"], True)
    ctx.pools.servers_changed()
    conn = ctx.pools.connection_by_key(server["id"])
    deadline = time.monotonic() + CONNECT_WAIT
    while conn is not None and not conn.watcher.synced.is_set() and time.monotonic() < deadline:
        ctx.check_aborted()
        status = conn.status()
        if status["status"] == "disconnected" and status["error"]:
            raise Unavailable(f"cannot connect to {server['host']}: {status['error']}", **status)
        time.sleep(0.1)
    if conn is None or not conn.watcher.synced.is_set():
        raise Unavailable(f"{server['host']} did not answer within {CONNECT_WAIT:g} s: the server stays enabled "
                          "and xorest keeps trying")


def disconnect(ctx, server, body):
    """Disconnect from a pool (every process within seconds); it stays registered."""
    if not server.get("enabled"):
        raise Conflict(f"the server {server['id']} is already disconnected", actual="disconnected",
                       expected=["connected", "connecting"], object=server["id"], property="status")
    ctx.store.set_server_enabled(server["id"], False)
    ctx.pools.servers_changed()


ACTIONS = [
    Action("servers", "connect", "connect server", connect, "pool.admin"),
    Action("servers", "disconnect", "disconnect server", disconnect, "pool.admin"),
]
