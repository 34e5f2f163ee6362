"""Handing memory back to the system after a burst.

A pool's first load decodes its whole event list (hundreds of MiB for 10k VMs) before
the records and objects that are kept are built; once it is freed, glibc's allocator
keeps most of those pages.  :func:`give_back` asks it to return what it can.
"""
import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

_libc = None


def _trim():
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    if _libc and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)


def give_back():
    """Return freed heap memory to the system (glibc; elsewhere nothing happens)."""
    try:
        _trim()
    except Exception as exc:  # never worth failing for
        log.debug("malloc_trim failed: %s", exc)


def settle_after_load():
    """After a pool's whole load: move its objects (millions of long-lived, acyclic ones)
    out of the cyclic collector's reach, or every full collection pauses all request
    threads for hundreds of milliseconds (reference counting still frees them); and
    return the load's transient memory to the system."""
    gc.freeze()
    give_back()


def share_strings(value, pool=None):
    """``value`` (JSON-like: dicts, lists, tuples, sets) rebuilt with one string object per
    distinct text.  A decoded pool repeats the same references and uuids in many records
    as separate strings; shared, a 10k-VM pool's records take 151 MiB instead of 213, and
    pickling keeps the sharing (it pickles each object once)."""
    pool = {} if pool is None else pool
    kind = type(value)
    if kind is str:
        return pool.setdefault(value, value)
    if kind is dict:
        return {pool.setdefault(k, k) if type(k) is str else k: share_strings(v, pool) for k, v in value.items()}
    if kind is list:
        return [share_strings(v, pool) for v in value]
    if kind is tuple:
        return tuple(share_strings(v, pool) for v in value)
    if kind is set or kind is frozenset:
        return kind(share_strings(v, pool) for v in value)
    return value
