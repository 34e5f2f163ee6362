"""gunicorn settings for xorest: ``gunicorn -c deploy/gunicorn.conf.py wsgi:application``.

The values come from ``xorest.serve.gunicorn_settings()`` (also used by ``xorest serve``):
``GUNICORN_SETTINGS``, plus the hooks of the instance's pools daemon (one process watches
the pools for every worker; ``XOREST_POOLS_DAEMON=false`` makes each worker watch them)
and its number of workers.  Override any of them below.  Why they are what they are:

- ``worker_class = "gthread"``: the main thread heartbeats while others stream, so an
  hour-long export is never killed by ``timeout`` (which is a liveness check only).
- ``threads``: each running export holds one thread; keep it above your concurrent exports.
- ``graceful_timeout = 3600`` and ``max_requests = 0``: reloads and recycling never cut a
  running export.
"""
from xorest.serve import gunicorn_settings

globals().update(gunicorn_settings())

# nginx reaches gunicorn over this socket (deploy/nginx/xorest.conf); only the xorest
# group may open it: add nginx's user to it (usermod -aG xorest www-data), and set
# XOREST_TRUSTED_PROXIES=unix.
bind = "unix:/run/xorest/gunicorn.sock"
umask = 0o007
# threads = 64
# workers = 2  # each worker holds every pool's objects: about 200 MiB per 10,000 VMs
