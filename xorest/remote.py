"""A small client of a running xorest's REST API, for the CLI's ``vm`` commands.

It speaks HTTP to xorest as any script would (a token, JSON, ``?sync=true``), so the
commands work against xorest on another machine; nothing here touches the local store.
"""
import re

import requests

from .errors import XorestError

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


class RemoteError(XorestError):
    """xorest answered an error (its message, and XAPI's code when there is one), or
    could not be reached."""


class Remote:
    """xorest at ``url`` (``https://xorest.example.net``), as the holder of ``token``.

    :param ca_file: a CA bundle to verify its certificate (default: the system's).
    :param insecure: do not verify it.
    :param timeout: seconds an answer may take (a synchronous action waits for its end).
    """

    def __init__(self, url, token, ca_file=None, insecure=False, timeout=3600.0):
        self.base = url.rstrip("/") + "/rest/v0"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.verify = False if insecure else (ca_file or True)
        self.timeout = timeout

    def _request(self, method, path, **kwargs):
        try:
            response = self.http.request(method, self.base + path, verify=self.verify,
                                         timeout=(10, self.timeout), **kwargs)
        except requests.exceptions.RequestException as exc:
            raise RemoteError(f"cannot reach {self.base}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"error": response.text.strip() or response.reason}
            data = body.get("data") or {}
            code = f" ({' '.join([data['code'], *data.get('params', [])])})" if data.get("code") else ""
            raise RemoteError(f"{body.get('error', response.reason)}{code}", status=response.status_code, **data)
        return response

    def find_vm(self, key):
        """The VM ``key`` names: its id, or its exact name (which must be unique)."""
        if UUID.match(key) or key.startswith("OpaqueRef:"):
            response = self.http.get(self.base + f"/vms/{key}", verify=self.verify, timeout=(10, 60))
            if response.status_code == 200:
                return response.json()
        quoted = key.replace("\\", "\\\\").replace('"', '\\"')
        found = [vm for vm in self._request("GET", "/vms", params={"fields": "id,name_label,power_state",
                                                                   "filter": f'name_label:"{quoted}"'}).json()
                 if vm["name_label"] == key]
        if not found:
            raise RemoteError(f"no VM with the id or the name {key!r}")
        if len(found) > 1:
            raise RemoteError(f"{len(found)} VMs are named {key!r}: use an id ({', '.join(v['id'] for v in found)})")
        return found[0]

    def action(self, collection, key, name, body=None, wait=True):
        """Run an action; with ``wait``, its result (``None`` or ``{"id": ...}``), else its task's id."""
        response = self._request("POST", f"/{collection}/{key}/actions/{name}", json=body or {},
                                 params={"sync": "true"} if wait else None)
        if not wait:
            return response.json()["taskId"]
        return response.json() if response.content else None

    def delete(self, collection, key):
        self._request("DELETE", f"/{collection}/{key}")
