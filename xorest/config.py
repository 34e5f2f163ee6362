"""All configuration, in one place: defaults < file (``--config``) < ``XOREST_*`` variables < mapping.

The file is JSON or ``KEY = value`` lines (the keys as the variable names without the
``XOREST_`` prefix, case-insensitive).  Nothing else in xorest reads ``os.environ``.
"""
import dataclasses
import json
import os
import re
from dataclasses import dataclass

from .errors import ConfigError

#: Longest text the unit parsers read: longer is refused before any regex runs (npm ``ms``
#: refuses over 100 characters too), so no input can make them slow.
MAX_UNIT_TEXT = 100

# Patterns run on stripped text of at most MAX_UNIT_TEXT characters: whatever the input,
# a match costs a bounded number of steps.
DURATION = re.compile(r"(\d+(?:\.\d+)?) *([smhdw]?)")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _unit_text(text):
    """``text`` stripped, or ``None`` when it is too long to be a number with a unit."""
    text = str(text).strip()
    return text if len(text) <= MAX_UNIT_TEXT else None


def parse_duration(text):
    """Seconds from ``30``, ``90s``, ``15m``, ``12h``, ``7d`` or ``2w``."""
    if isinstance(text, (int, float)):
        return float(text)
    stripped = _unit_text(text)
    match = DURATION.fullmatch(stripped) if stripped is not None else None
    if not match:
        raise ValueError(f"not a duration: {str(text)[:40]!r} (use e.g. 30s, 15m, 12h, 7d)")
    return float(match.group(1)) * UNITS[match.group(2)]


_MS_UNITS = {"ms": 0.001, "msec": 0.001, "msecs": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
             "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "mins": 60,
             "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
             "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
             "y": 31557600, "yr": 31557600, "yrs": 31557600, "year": 31557600, "years": 31557600}
_MS_DURATION = re.compile(r"(-?(?:\d+(?:\.\d*)?|\.\d+)) *([a-z]*)", re.IGNORECASE)


def parse_client_duration(value):
    """Seconds from a duration as Xen Orchestra's clients send it: a number of
    milliseconds, or text as npm ``ms`` reads it (``7d``, ``2 days``, ``1h``, ``500``: ms)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("must be a number of milliseconds or a duration such as 7d")
    if isinstance(value, (int, float)):
        return value / 1000
    stripped = _unit_text(value)
    match = _MS_DURATION.fullmatch(stripped) if stripped is not None else None
    if not match or match.group(2).lower() not in ("", *_MS_UNITS):
        raise ValueError(f"not a duration: {value[:40]!r} (use e.g. 7d, 12h, 30m, or milliseconds)")
    return float(match.group(1)) * _MS_UNITS.get(match.group(2).lower(), 0.001)


_SIZE = re.compile(r"(\d{1,15}(?:\.\d{1,15})?) *([kmgt]?)(?:i?b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value):
    """Bytes from a number or text with a binary unit (``512K``, ``64MiB``, ``4 GB``), as
    Xen Orchestra's ``parseSize`` reads them.

    :raises ValueError: not a size (booleans, negative or non-finite numbers included).
    """
    if isinstance(value, bool):
        raise ValueError("not a size")
    if isinstance(value, (int, float)):
        if not value >= 0 or value == float("inf"):
            raise ValueError("not a size")
        return int(value)
    stripped = _unit_text(value) if isinstance(value, str) else None
    match = _SIZE.fullmatch(stripped) if stripped is not None else None
    if not match:
        raise ValueError("not a size")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


#: Where prometheus_client keeps the values of processes sharing them (gunicorn's workers);
#: ``xorest serve`` sets it for its workers (:mod:`xorest.serve`).
PROMETHEUS_MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def prometheus_multiproc_dir():
    """The folder this process shares its Prometheus values in, or ``None`` (it keeps them)."""
    return os.environ.get(PROMETHEUS_MULTIPROC_VARIABLE) or None


def private_directory(folder):
    """Create ``folder`` (and its parents) with mode 0700 if it is missing: the data
    directory holds the database and the key that decrypts pool passwords."""
    if not os.path.isdir(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)  # makedirs' mode is filtered by the umask


def _bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _list(value):
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return tuple(item.strip() for item in str(value).split(",") if item.strip())


@dataclass(frozen=True)
class Config:
    """Settings of one xorest instance (see README, "Configuration")."""

    data_dir: str = "./var"
    database: str = ""  # default: <data_dir>/xorest.sqlite3
    database_url: str = ""  # postgresql://user:password@host/db: one database for several instances
    listen: str = "127.0.0.1:8080"
    token_ttl: float = 30 * 86400.0
    token_max_ttl: float = 182 * 86400.0
    token_renew_fraction: float = 0.5  # renew when less than this fraction of life is left
    trusted_proxies: tuple = ()  # addresses whose X-Forwarded-* headers are believed
    compression: str = "auto"  # auto | host | gateway
    zstd_level: int = 3
    zstd_threads: int = -1  # -1: one per core
    xapi_connect_timeout: float = 5.0
    xapi_read_timeout: float = 60.0
    export_idle_timeout: float = 300.0  # an export silent this long fails visibly (either side)
    client_timeout: float = 60.0  # a client silent this long while sending or receiving is dropped
    client_head_timeout: float = 20.0  # a request head must arrive within this
    event_timeout: float = 30.0
    initial_load_wait: float = 15.0  # a fresh process waits this long for its first pool load
    reconnect_max_delay: float = 30.0
    login_delay_base: float = 0.5  # growing delay after a failed password
    login_max_failures: int = 10  # then refuse until the window passes
    login_failure_window: float = 900.0
    regex_timeout: float = 0.1
    audit_retention: float = 90 * 86400.0  # audit entries older than this are dropped
    jsonrpc_max_connections: int = 1000  # WebSockets at /api/ per worker (one thread serves them all)
    jsonrpc_idle_timeout: float = 300.0  # a WebSocket client silent this long (no pong either) is closed
    jsonrpc_signin_timeout: float = 60.0  # a WebSocket not signed in after this is closed
    jsonrpc_max_message: int = 1 << 20  # bytes of one JSON-RPC message from a client
    jsonrpc_max_buffer: int = 4 << 20  # bytes of answers a WebSocket client has not read; beyond, it is closed
    jsonrpc_call_threads: int = 8  # JSON-RPC calls running at once per worker (more wait their turn)
    events_max_streams: int = 8  # /rest/v0/events streams per worker (each holds a thread)
    metrics_interval: float = 15.0  # seconds between two readings of the hosts' RRDs for /metrics (0: none)
    sync_wait: float = 10.0  # how long a read waits for the pool's events to show a write
    task_wait: float = 60.0  # GET /tasks/<id>?wait=true answers after this even if the task runs on
    task_keep: int = 1000  # ended tasks kept in the log (older ones are deleted)
    log_level: str = "INFO"
    # Set by ``xorest serve`` for its workers: the socket of the instance's pools daemon,
    # which watches the pools for them (empty: this process watches them itself).
    pools_socket: str = ""
    pools_daemon: bool = True  # ``xorest serve`` runs one (false: each worker watches the pools)

    @property
    def database_path(self):
        return self.database or os.path.join(self.data_dir, "xorest.sqlite3")


_CONVERTERS = {
    "token_ttl": parse_duration, "token_max_ttl": parse_duration,
    "login_failure_window": parse_duration, "export_idle_timeout": parse_duration,
    "client_timeout": parse_duration, "client_head_timeout": parse_duration, "audit_retention": parse_duration,
    "jsonrpc_idle_timeout": parse_duration, "jsonrpc_signin_timeout": parse_duration,
    "sync_wait": parse_duration, "task_wait": parse_duration, "metrics_interval": parse_duration,
    "trusted_proxies": _list,
}


def _convert(name, value):
    fields = {f.name: f for f in dataclasses.fields(Config)}
    if name not in fields:
        raise ConfigError(f"unknown setting {name!r}")
    try:
        if name in _CONVERTERS:
            return _CONVERTERS[name](value)
        kind = type(fields[name].default)
        if kind is bool:
            return _bool(value)
        if kind in (int, float):
            return kind(value)
        if kind is dict:
            return dict(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"XOREST_{name.upper()}: {exc}") from None


def read_file(path):
    """Settings from a JSON file or ``KEY = value`` lines."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if text.lstrip().startswith("{"):
        raw = json.loads(text)
    else:
        raw = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if "=" not in line:
                raise ConfigError(f"{path}:{number}: expected KEY = value")
            key, _, value = line.partition("=")
            raw[key.strip()] = value.strip().strip('"')
    return {k.lower().removeprefix("xorest_"): v for k, v in raw.items()}


def load(mapping=None, environ=None, path=None):
    """Build a validated :class:`Config`.

    :param mapping: overrides with the highest precedence (tests, ``create_app``).
    :param environ: defaults to ``os.environ``; only ``XOREST_*`` variables are read.
    :param path: a config file; defaults to ``XOREST_CONFIG`` if set.
    """
    environ = os.environ if environ is None else environ
    values = {}
    path = path or environ.get("XOREST_CONFIG")
    if path:
        values.update(read_file(path))
    for key, value in environ.items():
        if key.startswith("XOREST_") and key != "XOREST_CONFIG":
            values[key[7:].lower()] = value
    values.update({k.lower(): v for k, v in (mapping or {}).items()})
    config = Config(**{name: _convert(name, value) for name, value in values.items()})
    if config.compression not in ("auto", "host", "gateway"):
        raise ConfigError("XOREST_COMPRESSION must be auto, host or gateway")
    if config.database_url and not config.database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("XOREST_DATABASE_URL must be a postgresql:// URL (none: SQLite in the data directory)")
    if config.token_ttl > config.token_max_ttl:
        raise ConfigError("XOREST_TOKEN_TTL exceeds XOREST_TOKEN_MAX_TTL")
    return config
