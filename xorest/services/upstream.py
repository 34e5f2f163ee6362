"""Talking to a pool for a request or a command: its failures as API errors, and the
login probe made before a server is added (light on imports: ``xorest server add`` uses
it without the request services)."""
import contextlib

from ..errors import NotFound, Unavailable, UpstreamError
from ..xapi import XapiClient, XapiError, XapiUnreachable


@contextlib.contextmanager
def pool_failures(refused):
    """Turn a pool's failures into API errors: a vanished object is a 404, an XAPI error a
    502 (``refused``, then XAPI's code), an unreachable pool a 503."""
    try:
        yield
    except XapiError as exc:
        if exc.code in ("HANDLE_INVALID", "UUID_INVALID"):
            raise NotFound(f"the pool no longer has this object ({exc})") from None
        raise UpstreamError(f"{refused}: {exc}", code=exc.code, params=exc.params) from None
    except XapiUnreachable as exc:
        raise Unavailable(f"the pool is not reachable: {exc}") from None


def probe_server(url, username, password, ca_file=None, insecure=False, timeout=10.0):
    """Log in to a pool as xorest will, and out again: the pool's name on success.

    :raises Unavailable: unreachable, TLS verification failed, or not XAPI.
    :raises UpstreamError: the pool refused the credentials (or answered another error).
    """
    client = XapiClient(url, username, password, ca_file=ca_file, insecure=insecure,
                        timeout=(timeout, timeout))
    try:
        with pool_failures("the pool refused the login"):
            client.login()
            pool_ref = client.call("pool.get_all")[0]
            return client.call("pool.get_name_label", pool_ref) or client.url
    finally:
        client.close()
