"""The services of one xorest instance, wired together once (app factory and CLI share it)."""
from .. import config as config_module
from ..cache import ObjectCache
from .actions import ActionService
from .accounts import AccountServices
from .auth import AuthService
from .collections import CollectionService
from .creations import CreationService
from .dashboard import DashboardService
from .deletions import DeletionService
from .edits import EditService
from .events import EventService
from .exports import ExportService
from .feed import FeedClient
from .hostlogs import HostLogService
from .imports import ImportService
from .metrics import MetricsService
from .patches import PatchService
from .pooldashboard import PoolDashboardService
from .poolmetrics import PoolMetrics
from .pools import PoolService
from .smt import SmtService
from .stats import StatsService
from .liveness import Heartbeat
from .sweeper import Sweeper
from .tasks import TaskService
from .vmdashboard import VmDashboardService


class Services(AccountServices):
    """Everything a request needs; connects nothing until :meth:`start`."""

    def __init__(self, config):
        super().__init__(config)
        self.cache = ObjectCache()
        self.auth = AuthService(self.store, config)  # made now, not on first use: request threads share it
        feed = FeedClient(config.pools_socket, self.cache) if config.pools_socket else None
        self.pools = PoolService(self.store, self.cache, config, feed)
        self.tasks = TaskService(self.store, self.pools, config)
        self.collections = CollectionService(self.cache, self.pools, self.store, config, self.tasks)
        self.exports = ExportService(self.collections, self.pools, config, self.tasks)
        self.imports = ImportService(self.collections, self.pools, config, self.tasks)
        self.actions = ActionService(self.collections, self.pools, self.tasks, self.store, config)
        self.edits = EditService(self.collections, self.pools, self.store)
        self.deletions = DeletionService(self.collections, self.pools, self.store)
        self.creations = CreationService(self.collections, self.pools, self.store, config)
        self.sweeper = Sweeper(self.pools)
        self.heartbeat = Heartbeat(self.store)
        self.dashboard = DashboardService(self.collections)
        self.events = EventService(self.store, self.cache, self.collections)
        self.stats = StatsService(self.collections, self.pools, config)
        self.patches = PatchService(self.collections, self.pools)
        self.vm_dashboard = VmDashboardService(self.collections)
        self.pool_dashboard = PoolDashboardService(self.collections, self.pools, self.patches, self.stats)
        self.host_logs = HostLogService(self.collections, self.pools, config, self.tasks)
        self.smt = SmtService(self.collections, self.pools)
        self.pool_metrics = PoolMetrics(self.collections, self.pools, self.stats, config)
        self.metrics = MetricsService(self.collections, self.pools, self.store, self.pool_metrics)

    @classmethod
    def from_mapping(cls, mapping=None):
        return cls(config_module.load(mapping))

    def start(self):
        """Connect the pools in this process (idempotent, fork-aware) and wait, a bounded
        time, for their first load."""
        if self.pools.ensure_started():
            if self.pools.feed is None:  # else the instance's pools daemon sweeps and notes the machine alive
                self.sweeper.start()
                self.heartbeat.start()
            self.pool_metrics.start()
        self.pools.wait_first_attempts(self.config.initial_load_wait)

    def stop(self):
        self.pool_metrics.stop()
        self.pools.stop()
