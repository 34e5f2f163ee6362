"""Helpers for long streaming responses: noticing a client that went away."""
import select
import socket

#: Seconds between looks at a silent client.
WATCH_INTERVAL = 0.5


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
