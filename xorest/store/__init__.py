"""Persistent state: users, tokens, pool servers and login throttling.

:class:`Store` is the interface; :class:`~xorest.store.sqlite.SqliteStore` the default
backend (one file, WAL, safe across gunicorn workers and threads).  Another backend
(Redis, for several instances) implements the same methods.
"""
import abc

__all__ = ["Store", "open_store"]


class Store(abc.ABC):
    """What services need from persistent storage.  Rows are plain dicts."""

    # users
    @abc.abstractmethod
    def add_user(self, email, password_hash, is_admin): ...
    @abc.abstractmethod
    def get_user(self, key): ...  # by id or email
    @abc.abstractmethod
    def list_users(self): ...
    @abc.abstractmethod
    def remove_user(self, user_id): ...
    @abc.abstractmethod
    def set_password_hash(self, user_id, password_hash): ...

    # tokens
    @abc.abstractmethod
    def add_token(self, token_hash, user_id, expires_at, description): ...
    @abc.abstractmethod
    def get_token_by_hash(self, token_hash): ...
    @abc.abstractmethod
    def list_tokens(self, user_id=None): ...
    @abc.abstractmethod
    def revoke_token(self, token_id): ...
    @abc.abstractmethod
    def touch_token(self, token_id, when): ...
    @abc.abstractmethod
    def mark_renewed(self, token_id, when): ...

    # servers
    @abc.abstractmethod
    def add_server(self, url, username, password, ca_file, insecure, label): ...
    @abc.abstractmethod
    def list_servers(self, with_secrets=False): ...
    @abc.abstractmethod
    def remove_server(self, server_id): ...

    # login throttling
    @abc.abstractmethod
    def get_failures(self, key): ...
    @abc.abstractmethod
    def add_failure(self, key, when): ...
    @abc.abstractmethod
    def clear_failures(self, key): ...


def open_store(config):
    """The store configured for this instance (SQLite in the data directory)."""
    from .sqlite import SqliteStore

    return SqliteStore(config.database_path, secret_path=config.data_dir)
