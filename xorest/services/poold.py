"""The pools daemon: the one process of a ``xorest serve`` instance that watches its pools.

It holds the instance's XAPI event session of each pool, maps records into objects once,
and feeds every worker (:mod:`.feed`); it also sweeps what dead processes left in the
pools.  ``xorest serve`` starts it before its workers and restarts it if it dies
(:class:`xorest.serve.PoolsDaemon`); a worker that restarts gets the pools from it, not
from XAPI.
"""
import logging
import os
import signal
import threading

from ..store import open_store
from .feed import FeedServer
from .pools import PoolService
from .liveness import Heartbeat
from .sweeper import Sweeper

log = logging.getLogger(__name__)


class PoolsDaemon:
    """The daemon's services: pools watched into a cache that feeds the workers.

    It follows the store's servers more often than a worker would: the ``xorest server
    add`` of an admin, or another instance's, starts loading within a tenth of a second
    (a look at the store costs about 50 us).

    :param config: the instance's :class:`~xorest.config.Config`.
    :param socket_path: where the workers connect.
    """

    RECONCILE_SECONDS = 0.1

    def __init__(self, config, socket_path):
        self.config = config
        self.store = open_store(config)
        self.feed = FeedServer(socket_path, pools=lambda: self.pools.connections(),
                               reconcile=lambda: self.pools.reconcile(),
                               on_leave=lambda: self.sweeper.sweep_soon())  # a worker may have died
        self.pools = PoolService(self.store, self.feed, config, isolated_loads=True)
        self.pools.RECONCILE_SECONDS = self.RECONCILE_SECONDS
        self.sweeper = Sweeper(self.pools)
        self.heartbeat = Heartbeat(self.store)

    def start(self):
        """Listen, then connect the pools (workers may join at any time)."""
        self.feed.start()
        self.pools.ensure_started()
        self.sweeper.start()
        self.heartbeat.start()
        return self

    def stop(self):
        self.heartbeat.stop()
        self.feed.stop()
        self.pools.stop()


def run(config, socket_path):
    """Run the daemon in the foreground until SIGTERM or SIGINT."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    parent = os.getppid()
    daemon = PoolsDaemon(config, socket_path).start()
    log.info("pools daemon serving %s", socket_path)
    try:
        while not stop.wait(1.0):
            if os.getppid() != parent:  # the instance is gone (killed): so is its daemon
                log.warning("the xorest instance that started this pools daemon is gone; stopping")
                break
    finally:
        daemon.stop()
        log.info("pools daemon stopped")
