"""Users, passwords and tokens: issue, verify, renew, revoke, with login throttling.

Tokens are 32 random bytes in base64url (43 characters), stored only as SHA-256 hashes
and compared in constant time.  Failed password attempts slow down per account and
client address, then are refused for a while; answers never tell whether an account exists.
"""
import hashlib
import hmac
import logging
import secrets
import time

from werkzeug.security import check_password_hash, generate_password_hash

from ..errors import BadRequest, Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized

log = logging.getLogger(__name__)

# Checked against when the account does not exist, so both paths cost one KDF run.
_DUMMY_HASH = generate_password_hash("xorest-dummy-password")
MAX_DELAY = 5.0


def hash_token(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def public_token(row):
    """A token row without its hash."""
    return {k: v for k, v in row.items() if k != "token_hash"}


def public_user(row):
    return {"id": row["id"], "email": row["email"], "permission": "admin" if row["is_admin"] else "none",
            "created_at": row["created_at"]}


class AuthService:
    """Authentication for the API and the CLI.

    :param store: a :class:`~xorest.store.Store`.
    :param config: the instance :class:`~xorest.config.Config`.
    """

    def __init__(self, store, config, sleep=time.sleep):
        self.store = store
        self.config = config
        self.sleep = sleep

    # users -----------------------------------------------------------------

    def add_user(self, email, password, is_admin=False):
        if not email or "@" not in email and email != "admin":
            raise BadRequest(f"not an email address: {email!r}")
        if len(password or "") < 8:
            raise BadRequest("the password must have at least 8 characters")
        row = self.store.add_user(email, generate_password_hash(password), is_admin)
        if row is None:
            raise Conflict(f"user {email} already exists")
        log.info("user %s added (admin=%s)", row["id"], bool(is_admin))
        return row

    def set_password(self, email, password):
        user = self._user(email)
        if len(password or "") < 8:
            raise BadRequest("the password must have at least 8 characters")
        self.store.set_password_hash(user["id"], generate_password_hash(password))

    def _user(self, key):
        user = self.store.get_user(key)
        if user is None:
            raise NotFound(f"no such user {key}")
        return user

    def remove_user(self, key):
        return self.store.remove_user(self._user(key)["id"])

    def check_password(self, email, password, client="-"):
        """The user for a correct password; throttled per account and client address.

        :raises Unauthorized: wrong email or password (the same answer for both).
        :raises TooManyRequests: too many recent failures for this account and address.
        """
        key = f"{(email or '').lower()}|{client}"
        failures = self.store.get_failures(key)
        now = time.time()
        if failures and now - failures["last_at"] < self.config.login_failure_window:
            if failures["count"] >= self.config.login_max_failures:
                retry = int(self.config.login_failure_window - (now - failures["last_at"])) + 1
                raise TooManyRequests("too many failed attempts, retry later", retry_after=retry)
            self.sleep(min(MAX_DELAY, self.config.login_delay_base * 2 ** (failures["count"] - 1)))
        user = self.store.get_user(email) if email else None
        valid = check_password_hash(user["password_hash"] if user else _DUMMY_HASH, password or "")
        if user is None or not valid:
            self.store.add_failure(key, time.time())
            log.info("failed password for an account from %s", client)
            raise Unauthorized("invalid credentials")
        if failures:
            self.store.clear_failures(key)
        return user

    # tokens ----------------------------------------------------------------

    def issue_token(self, user, ttl=None, description=""):
        """Create a token; returns ``(token, row)``.  The token itself is never stored."""
        ttl = self.config.token_ttl if ttl is None else float(ttl)
        if ttl <= 60:
            raise BadRequest("expiresIn must be more than 60 seconds")
        if ttl > self.config.token_max_ttl:
            raise BadRequest(f"expiresIn exceeds the maximum of {int(self.config.token_max_ttl)} seconds")
        token = secrets.token_urlsafe(32)
        row = self.store.add_token(hash_token(token), user["id"], time.time() + ttl, description[:200])
        log.info("token %s issued for user %s", row["id"], user["id"])
        return token, row

    def authenticate(self, token):
        """``(user, token row)`` for a valid token; :class:`Unauthorized` otherwise."""
        if not token or len(token) > 200:
            raise Unauthorized("invalid token")
        digest = hash_token(token)
        row = self.store.get_token_by_hash(digest)
        if row is None or not hmac.compare_digest(row["token_hash"], digest):
            raise Unauthorized("invalid token")
        now = time.time()
        if row["revoked_at"] is not None:
            raise Unauthorized("token revoked")
        if row["expires_at"] <= now:
            raise Unauthorized("token expired")
        user = self.store.get_user(row["user_id"])
        if user is None:
            raise Unauthorized("invalid token")
        if row["last_used_at"] is None or now - row["last_used_at"] > 60:
            self.store.touch_token(row["id"], now)  # at most once a minute: no write per request
        return user, row

    def maybe_renew(self, user, row):
        """A fresh token when ``row`` passed the renewal threshold (once), else ``None``.

        The old token stays valid until its own expiry.
        """
        life = row["expires_at"] - row["created_at"]
        left = row["expires_at"] - time.time()
        if row["renewed_at"] is not None or left >= life * self.config.token_renew_fraction:
            return None
        if not self.store.mark_renewed(row["id"], time.time()):
            return None
        ttl = max(61.0, min(life, self.config.token_max_ttl))
        return self.issue_token(user, ttl, f"renewal of {row['id']}")

    def list_tokens(self, email=None):
        user_id = self._user(email)["id"] if email else None
        return [public_token(r) for r in self.store.list_tokens(user_id)]

    def revoke_token(self, token_id, user=None):
        if user is not None and not user["is_admin"]:
            owned = {t["id"] for t in self.store.list_tokens(user["id"])}
            if token_id not in owned:
                raise Forbidden("not your token")
        if not self.store.revoke_token(token_id):
            raise NotFound(f"no such active token {token_id}")
        log.info("token %s revoked", token_id)
