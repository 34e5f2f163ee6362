"""Handing memory back to the system after a burst.

A pool's first load decodes its whole event list (hundreds of MiB for 10k VMs) before
the records and objects that are kept are built; once it is freed, glibc's allocator
keeps most of those pages.  :func:`give_back` asks it to return what it can.
"""
import contextlib
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


@contextlib.contextmanager
def long_lived_objects():
    """While a load builds millions of objects that all live (a decoded pool, an unpickled
    one): the cyclic garbage collector is paused, its collections, triggered every few
    hundred allocations, would walk them again and again for nothing (two thirds of a
    10k-VM pool's decoding time); and what was built is frozen (out of its reach, see
    :func:`settle_after_load`) before it resumes.  Reference counting still frees what is
    dropped."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


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
    return _shared(value, ({} if pool is None else pool).setdefault)


def _shared(value, keep):
    # Strings, most values, are kept inline rather than through a call each: this runs
    # over every value of a pool's first load.
    kind = type(value)
    if kind is str:
        return keep(value, value)
    if kind is dict:
        return {keep(k, k) if type(k) is str else k: keep(v, v) if type(v) is str else _shared(v, keep)
                for k, v in value.items()}
    if kind is list:
        return [keep(v, v) if type(v) is str else _shared(v, keep) for v in value]
    if kind is tuple:
        return tuple(_shared(v, keep) for v in value)
    if kind is set or kind is frozenset:
        return kind(_shared(v, keep) for v in value)
    return value
