"""xorest: a REST gateway for XCP-ng / XenServer pools (Xen Orchestra REST API v0 compatible)."""

__version__ = "0.1.0"


def create_app(config=None):
    """Build the WSGI application; see :func:`xorest.api.create_app`."""
    from .app import create_app as _create_app

    return _create_app(config)
