"""Helpers for long streaming responses and uploads: the client's socket and protocol."""
import select
import socket

from flask import request

from ..errors import XorestError

#: Seconds between looks at a silent client.
WATCH_INTERVAL = 0.5


class FramingUnavailable(XorestError):
    """An HTTP/1.0 client asked for a body whose length is not known in advance."""

    status = 505  # 426 would need an Upgrade header, which gunicorn does not let through
    message = ("HTTP/1.0 cannot tell a cut stream from a complete one when the length is not known "
               "in advance: use HTTP/1.1 (curl without -0)")


def poll_client(sock, timeout):
    """Wait up to ``timeout`` seconds for news from the client's socket.

    ``"gone"``: it closed its end (or the socket broke); ``"talking"``: it sent bytes (a
    pipelined request, left unread: from then on, only a failed write can tell);
    ``"quiet"``: nothing happened.
    """
    try:
        readable, _, _ = select.select([sock], [], [], timeout)
        if not readable:
            return "quiet"
        return "gone" if sock.recv(1, socket.MSG_PEEK) == b"" else "talking"
    except (OSError, ValueError):
        return "gone"


def client_socket():
    """The client's socket under gunicorn, else ``None`` (other WSGI servers)."""
    return request.environ.get("gunicorn.socket")


def stopping_check():
    """A callable telling whether the worker serving this request is shutting down
    (gunicorn, see ``serve.py``); taken in the view, usable from its stream."""
    return getattr(client_socket(), "stopping", None) or (lambda: False)


def client_speaks_http10():
    """Whether the client (behind a trusted proxy: the proxy's client) uses HTTP/1.0."""
    protocol = request.environ.get("xorest.client_protocol") or request.environ.get("SERVER_PROTOCOL", "")
    return protocol.upper() == "HTTP/1.0"


def require_framing(length):
    """Refuse a body of unknown ``length`` to an HTTP/1.0 client: only closing the
    connection could end it, and a cut would then look complete."""
    if length is None and client_speaks_http10():
        raise FramingUnavailable(supported=["HTTP/1.1"])


def set_client_timeout(seconds):
    """Let this request's client be silent up to ``seconds`` (a transfer's idle timeout)."""
    sock = client_socket()
    if sock is not None:
        try:
            sock.settimeout(seconds)
        except OSError:
            pass
