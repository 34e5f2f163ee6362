"""Users, passwords and tokens: issue, verify, renew, revoke, with login throttling.

Tokens are 32 random bytes in base64url (43 characters), stored only as SHA-256 hashes
and compared in constant time.  A renewal joins the family of the token it renews, and a
token made with a token remembers it: revoking any token revokes its family and every token
made with them; a new password revokes all of a user's tokens (in the same transaction).

Password attempts are counted in the store *before* the password is checked, per account
and client address (a pause after each failure, doubling, then a lock-out) and per client
address over all accounts (a cap): concurrent guesses cannot slip past the count, and an
attempt that must wait is answered at once with 429 and ``Retry-After``; no request
thread ever sleeps.  Answers never tell whether an account exists.
"""
import functools
import hashlib
import hmac
import logging
import math
import secrets
import time

from werkzeug.security import check_password_hash, generate_password_hash

from ..errors import BadRequest, Conflict, Forbidden, NotFound, StoreUnavailable, TooManyRequests, Unauthorized
from ..store import LoginLimit
from .permissions import ROLES, check_role, effective_role, user_role, weaker
from .scopes import Scope

log = logging.getLogger(__name__)


@functools.cache
def _dummy_hash():
    """Checked against when the account does not exist, so both paths cost one KDF run.
    Made at the first login whatever its account (not at import: a KDF run is 0.1 s
    that every process and every CLI command would pay)."""
    return generate_password_hash("xorest-dummy-password")


#: Per client address, failures over all accounts allowed in a window (spraying many emails).
ADDRESS_ATTEMPTS_FACTOR = 10


def hash_token(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def public_token(row):
    """A token row as its owner may see it: no hash, the scope as an object."""
    token = {k: v for k, v in row.items() if k not in ("token_hash", "scope")}
    token["scope"] = Scope.from_json(row.get("scope")).to_dict()
    return token


def public_user(row):
    """A user as the API shows it (``permission`` is Xen Orchestra's: admin or none)."""
    role = user_role(row)
    return {"id": row["id"], "email": row["email"], "permission": "admin" if role == "pool-admin" else "none",
            "role": role, "created_at": row["created_at"]}


def token_scope(row):
    """The :class:`~.scopes.Scope` of a token row (unscoped: empty)."""
    return Scope.from_json(row.get("scope")) if row else Scope()


class AuthService:
    """Authentication for the API and the CLI.

    :param store: a :class:`~xorest.store.Store`.
    :param config: the instance :class:`~xorest.config.Config`.
    """

    def __init__(self, store, config):
        self.store = store
        self.config = config

    # users -----------------------------------------------------------------

    def add_user(self, email, password, role=None):
        """A new user with ``role`` (``None``: none, only their own tokens)."""
        _check_email(email)
        _check_password(password)
        try:
            check_role(role)
        except ValueError as exc:
            raise BadRequest(str(exc), parameter="role") from None
        row = self.store.add_user(email, generate_password_hash(password), role)
        if row is None:
            raise Conflict(f"user {email} already exists")
        log.info("user %s added (role %s)", row["id"], role)
        return row

    def update_user(self, key, email=None, role=..., password=None):
        """Change a user's email, role and/or password (a new password revokes their tokens)."""
        user = self._user(key)
        if email is not None:
            _check_email(email)
        if role is not ...:
            try:
                check_role(role)
            except ValueError as exc:
                raise BadRequest(str(exc), parameter="role") from None
        row = self.store.update_user(user["id"], email=email, role=role)
        if row is None:
            raise Conflict(f"user {email} already exists")
        if password is not None:
            self.set_password(row["id"], password)
        log.info("user %s updated", user["id"])
        return self._user(user["id"])

    def set_password(self, email, password):
        """Set a new password and revoke every token of the user (a password change is
        what people do when they suspect a leak); returns how many were revoked."""
        user = self._user(email)
        _check_password(password)
        revoked = self.store.set_password_hash(user["id"], generate_password_hash(password))
        if revoked is None:
            raise NotFound(f"no such user {email}")
        log.info("password of user %s changed, %d tokens revoked", user["id"], revoked)
        return revoked

    def _user(self, key):
        user = self.store.get_user(key)
        if user is None:
            raise NotFound(f"no such user {key}")
        return user

    def remove_user(self, key):
        return self.store.remove_user(self._user(key)["id"])

    def _login_limits(self, email, client):
        config = self.config
        return (LoginLimit(f"account:{(email or '').lower()}|{client}", config.login_max_failures,
                           config.login_delay_base),
                LoginLimit(f"address:{client}", config.login_max_failures * ADDRESS_ATTEMPTS_FACTOR))

    def check_password(self, email, password, client="-"):
        """The user for a correct password; throttled per account and client address.

        :raises Unauthorized: wrong email or password (the same answer for both).
        :raises TooManyRequests: this attempt must wait (``retry_after`` seconds).
        :raises StoreUnavailable: the attempt cannot be counted, so it is not checked.
        """
        account, address = limits = self._login_limits(email, client)
        wait = self.store.take_login_attempt(limits, time.time(), self.config.login_failure_window)
        if wait > 0:
            raise TooManyRequests("too many failed attempts, retry later", retry_after=max(1, math.ceil(wait)))
        dummy = _dummy_hash()  # before anything depends on the account
        user = self.store.get_user(email) if email else None
        valid = check_password_hash(user["password_hash"] if user else dummy, password or "")
        if user is None or not valid:
            self.store.record_login_failure([account.key, address.key], time.time())
            log.info("failed password for an account from %s", client)
            raise Unauthorized("invalid credentials")
        try:
            self.store.record_login_success(clear=[account.key], release=[address.key])
        except StoreUnavailable:
            pass  # bookkeeping: the attempt stays counted until its window passes
        return user

    # tokens ----------------------------------------------------------------

    def issue_token(self, user, ttl=None, description="", family_id=None, role=None, scope=None, creator=None):
        """Create a token; returns ``(token, row)``.  The token itself is never stored.

        :param family_id: the family of the token this one renews.
        :param role: what the token may do, at most its user's role (``None``: the user's).
        :param scope: a :class:`~.scopes.Scope` (``None``: unscoped).
        :param creator: the token row the request came with, if any: a token cannot make a
            token stronger or wider than itself.
        """
        if role is not None:
            if role not in ROLES:
                raise BadRequest(f"unknown role {role!r}: use one of {', '.join(ROLES)}", parameter="role")
            ceiling = effective_role(user, creator)
            if weaker(role, ceiling) != role:
                raise Forbidden(f"a token cannot have the {role} role: at most {ceiling}", parameter="role")
        elif creator is not None and creator.get("role"):
            role = creator["role"]
        scope = (scope or Scope()).within(token_scope(creator)) if creator is not None else scope
        ttl = self.config.token_ttl if ttl is None else float(ttl)
        if not math.isfinite(ttl):
            raise BadRequest("expiresIn must be a finite number of seconds or a duration such as 7d")
        if ttl <= 60:
            raise BadRequest("expiresIn must be more than 60 seconds")
        if ttl > self.config.token_max_ttl:
            raise BadRequest(f"expiresIn exceeds the maximum of {int(self.config.token_max_ttl)} seconds")
        token = secrets.token_urlsafe(32)
        while token.startswith("-"):  # a leading dash reads as an option to command-line tools
            token = secrets.token_urlsafe(32)
        row = self.store.add_token(hash_token(token), user["id"], time.time() + ttl, description[:200],
                                   family_id, role, scope.to_json() if scope else None,
                                   parent_id=creator["id"] if creator is not None else None)
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
            try:
                self.store.touch_token(row["id"], now)  # at most once a minute: no write per request
            except StoreUnavailable:
                pass  # bookkeeping only: the token is valid whether or not this is recorded
        return user, row

    def maybe_renew(self, user, row):
        """A fresh token when ``row`` passed the renewal threshold (once), else ``None``.

        The old token stays valid until its own expiry.
        """
        life = row["expires_at"] - row["created_at"]
        left = row["expires_at"] - time.time()
        if row["renewed_at"] is not None or left >= life * self.config.token_renew_fraction:
            return None
        try:
            if not self.store.mark_renewed(row["id"], time.time()):
                return None
            ttl = max(61.0, min(life, self.config.token_max_ttl))
            return self.issue_token(user, ttl, f"renewal of {row['id']}", row.get("family_id") or row["id"],
                                    creator=row)  # the same role and scope
        except StoreUnavailable:
            return None  # no renewal this time; the current token is still valid

    def list_tokens(self, email=None):
        user_id = self._user(email)["id"] if email else None
        return [public_token(r) for r in self.store.list_tokens(user_id)]

    def revoke_token(self, token_id, owner=None):
        """Revoke a token (by id, or by the token itself), its renewals and the tokens made
        with them; returns the number of tokens revoked.

        :param owner: the user (row, id or email) whose token it must be, as the caller is
            allowed to revoke (``None``: anyone's; the caller checked it may).  Another
            user's token is answered as if it did not exist.
        """
        row = self.store.get_token(token_id) or self.store.get_token_by_hash(hash_token(token_id))
        if owner is not None and not isinstance(owner, dict):
            owner = self._user(owner)
        if row is None or (owner is not None and row["user_id"] != owner["id"]):
            raise NotFound("no such token")
        revoked = self.store.revoke_token(row["id"])
        if not revoked:
            raise NotFound(f"token {row['id']} is already revoked")
        log.info("token %s revoked (%d with its renewals and the tokens made with them)", row["id"], revoked)
        return revoked


def _check_email(email):
    if not email or "@" not in email and email != "admin":
        raise BadRequest(f"not an email address: {email!r}", parameter="email")


def _check_password(password):
    if len(password or "") < 8:
        raise BadRequest("the password must have at least 8 characters", parameter="password")
