"""A XAPI RPC client on ``requests``: JSON-RPC first, XML-RPC fallback, re-login, HOST_IS_SLAVE.

One :class:`XapiClient` per pool connection.  Every call has a (connect, read) timeout,
TLS is verified unless the connection was configured ``insecure``, and nothing but
:class:`XapiError` / :class:`XapiUnreachable` escapes.
"""
import json
import logging
import threading
from urllib.parse import urlsplit, urlunsplit

import requests

from . import codec
from .errors import AuthenticationFailed, HostIsSlave, SessionInvalid, XapiError, XapiUnreachable

log = logging.getLogger(__name__)

USER_AGENT = "xorest"
MAX_REDIRECTS = 3
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _replace_host(url, host):
    parts = urlsplit(url)
    netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class XapiClient:
    """Calls XAPI methods on one pool.

    :param url: ``https://host[:port]`` of the pool master (or any member: ``HOST_IS_SLAVE``
        is followed to the master).
    :param ca_file: a CA bundle to verify the pool's certificate with; ``None`` uses the system's.
    :param insecure: skip TLS verification (only when explicitly configured).
    :param timeout: ``(connect, read)`` seconds for ordinary calls.
    :param members: a callable giving the addresses of the pool's hosts (transfers may be
        redirected there, nowhere else).
    """

    def __init__(self, url, username, password, *, ca_file=None, insecure=False,
                 timeout=(5.0, 60.0), protocol="auto", members=None):
        self.url = url.rstrip("/")
        # Addresses of the pool's hosts: the only places a transfer redirect may lead to.
        self.members = members or (lambda: set())
        self._username = username
        self._password = password
        self.timeout = timeout
        self.protocol = protocol  # auto | json | xml
        self.http = self._new_http()
        # Passed on every request: a session-level verify is overridden by REQUESTS_CA_BUNDLE.
        self.verify = False if insecure else (ca_file or True)
        self.session_ref = None
        self._login_lock = threading.Lock()

    @staticmethod
    def _new_http():
        http = requests.Session()
        http.headers["User-Agent"] = USER_AGENT
        return http

    def detach(self):
        """In a forked copy of the process: open connections of its own, in the same XAPI
        session (the sockets it inherited stay the parent's)."""
        self.http = self._new_http()
        self._login_lock = threading.Lock()

    def __repr__(self):
        return f"<XapiClient {self.url}>"  # never the password nor the session

    # transport -------------------------------------------------------------

    def _post(self, path, body, content_type, timeout):
        try:
            response = self.http.post(self.url + path, data=body.encode("utf-8"),
                                      headers={"Content-Type": content_type},
                                      timeout=timeout or self.timeout, verify=self.verify)
        except requests.exceptions.SSLError as exc:
            raise XapiUnreachable(f"TLS verification failed for {self.url}: {exc}") from None
        except requests.exceptions.RequestException as exc:
            raise XapiUnreachable(f"{self.url}: {_cause(exc)}") from None
        return response

    def _rpc(self, method, params, timeout=None, decode=json.loads):
        if self.protocol in ("auto", "json"):
            response = self._post("/jsonrpc", codec.json_request(method, params),
                                  "application/json", timeout)
            if response.headers.get("Content-Type", "").split(";")[0] == "application/json":
                self.protocol = "json"
                try:
                    return codec.json_response(response.content, decode)
                except ValueError as exc:
                    raise XapiUnreachable(f"{self.url}: invalid JSON-RPC answer: {exc}") from None
            if self.protocol == "json":
                raise XapiUnreachable(f"{self.url}: HTTP {response.status_code} from /jsonrpc")
            log.info("%s has no JSON-RPC, using XML-RPC", self.url)
            self.protocol = "xml"
        response = self._post("/", codec.xml_request(method, params), "text/xml", timeout)
        if response.status_code != 200:
            raise XapiUnreachable(f"{self.url}: HTTP {response.status_code} for {method}")
        try:
            return codec.xml_response(response.content)
        except XapiError:
            raise
        except Exception as exc:
            raise XapiUnreachable(f"{self.url}: invalid XML-RPC answer: {exc}") from None

    # sessions --------------------------------------------------------------

    def login(self):
        """Open a session, following ``HOST_IS_SLAVE`` to the master once."""
        with self._login_lock:
            for attempt in range(2):
                try:
                    self.session_ref = self._rpc("session.login_with_password",
                                                 [self._username, self._password, "1.0", "xorest"])
                    return self.session_ref
                except HostIsSlave as exc:
                    if attempt or not exc.master:
                        raise
                    log.info("%s is not the pool master, following to %s", self.url, exc.master)
                    self.url = _replace_host(self.url, exc.master)
            raise AssertionError("unreachable")

    def logout(self):
        ref, self.session_ref = self.session_ref, None
        if ref:
            try:
                self._rpc("session.logout", [ref], timeout=(self.timeout[0], 5))
            except (XapiError, XapiUnreachable):
                pass

    def close(self):
        self.logout()
        self.http.close()

    def call(self, method, *args, timeout=None, decode=json.loads):
        """Call ``method`` with the session prepended; log in again once on ``SESSION_INVALID``.

        :param decode: how a JSON-RPC answer's bytes are decoded (see :mod:`.eventdecode`);
            XML-RPC answers are decoded whole."""
        if self.session_ref is None:
            self.login()
        ref = self.session_ref
        try:
            return self._rpc(method, [ref, *args], timeout, decode)
        except SessionInvalid:
            with self._login_lock:
                stale = self.session_ref == ref
            if stale:
                log.info("session on %s expired, logging in again", self.url)
                self.login()
            return self._rpc(method, [self.session_ref, *args], timeout, decode)

    # HTTP handlers -----------------------------------------------------------

    def _handler(self, method, path, query, read_timeout, base=None, **kwargs):
        """One request to a transfer handler (on ``base``, by default the pool's URL), in
        this client's session; redirects are never followed here (see :meth:`redirect_base`)."""
        if self.session_ref is None:
            self.login()
        params = dict(query, session_id=self.session_ref)
        try:
            response = self.http.request(method, (base or self.url) + path, params=params, verify=self.verify,
                                         timeout=(self.timeout[0], read_timeout), allow_redirects=False,
                                         **kwargs)
        except requests.exceptions.RequestException as exc:
            raise XapiUnreachable(f"{base or self.url} ({path}): {_cause(exc)}") from None
        if response.status_code == 401:
            response.close()
            raise AuthenticationFailed("SESSION_INVALID", [path])
        return response

    def redirect_base(self, response):
        """``scheme://host[:port]`` a transfer handler redirects to, once checked: only a
        host of this pool (its ``address``) on the pool's port, never from HTTPS to HTTP.
        Only that base is taken from the redirect; the path and parameters (the session)
        stay ours.

        :raises XapiUnreachable: the redirect leads anywhere else.
        """
        location = urlsplit(response.headers.get("Location", ""))
        current = urlsplit(self.url)
        try:
            host, port = (location.hostname or "").lower(), location.port or _DEFAULT_PORTS.get(location.scheme)
        except ValueError:  # a port that is not a number
            host, port = "", None
        if location.scheme not in _DEFAULT_PORTS or not host:
            raise XapiUnreachable("the pool redirected the transfer to an invalid location: refused")
        if current.scheme == "https" and location.scheme != "https":
            raise XapiUnreachable(f"the pool redirected the transfer from HTTPS to {location.scheme}: refused")
        members = {address.lower().strip("[]") for address in self.members()} | {(current.hostname or "").lower()}
        if host not in members or port != (current.port or _DEFAULT_PORTS[current.scheme]):
            raise XapiUnreachable(f"the pool redirected the transfer to {location.netloc}, which is not one of "
                                  "its hosts: refused")
        return f"{location.scheme}://{location.netloc}"

    def get_stream(self, path, query, read_timeout, host=None):
        """``GET`` a transfer handler as a stream, following redirects to the pool's
        hosts (XAPI sends a transfer to the host holding the disk); returns the
        ``requests`` response.  The caller (:mod:`.streams`) owns and closes it.

        ``host`` is the address of the pool member to ask (on the pool's scheme and port)
        instead of the pool's URL: some handlers (``/rrd_updates``) answer only for the
        host they run on.  It must be one of the pool's hosts.
        """
        base = None
        if host is not None:
            if host not in self.members():
                raise XapiUnreachable(f"{host} is not one of the pool's hosts: refused")
            base = _replace_host(self.url, host)
        for _ in range(MAX_REDIRECTS + 1):
            response = self._handler("GET", path, query, read_timeout, base=base, stream=True)
            if not response.is_redirect:
                return response
            response.close()
            base = self.redirect_base(response)
        raise XapiUnreachable(f"more than {MAX_REDIRECTS} redirects for {path}")

    def upload_base(self, path, query):
        """Where an upload must go: XAPI redirects a transfer to the host that holds the
        disk, and a body cannot follow a redirect, so an empty ``PUT`` asks first (as
        Xen Orchestra does).  ``query`` must not name a task: the probe would end it."""
        probe = self._handler("PUT", path, query, self.timeout[1], data=b"")
        probe.close()
        if not probe.is_redirect:
            return self.url
        return self.redirect_base(probe)

    def put_stream(self, path, query, body, read_timeout, base=None):
        """``PUT`` ``body`` (a file-like object with ``len()``, read in blocks) to a handler.

        The length goes in ``Content-Length``: XAPI refuses chunked uploads.  Returns the
        ``requests`` response (XAPI answers before reading; the task has the outcome).
        """
        return self._handler("PUT", path, query, read_timeout, base=base, data=body)


def _cause(exc):
    """What went wrong in a transport failure, without the request's URL (its query holds
    the session and the objects' references): the innermost error urllib3 wrapped."""
    cause = exc
    for _ in range(8):  # requests' error -> urllib3's MaxRetryError -> its reason...
        inner = getattr(cause, "reason", None)
        if not isinstance(inner, BaseException) and cause.args and isinstance(cause.args[0], BaseException):
            inner = cause.args[0]
        if not isinstance(inner, BaseException) or inner is cause:
            break
        cause = inner
    return f"{type(cause).__name__}: {cause}"


__all__ = ["XapiClient", "AuthenticationFailed"]
