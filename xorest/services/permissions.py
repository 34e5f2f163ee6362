"""Who may do what: roles, the permissions routes declare, and the one decision.

Roles are named as XAPI's RBAC roles, each including the ones before it.  A route
declares the permission it needs (see ``xorest/api/routes.py``); :func:`authorize` is the
only place that decides, for every route.
"""
from ..errors import Forbidden

#: Roles, weakest first; each has the permissions of those before it.
ROLES = ("read-only", "vm-operator", "vm-admin", "pool-operator", "pool-admin")

#: Permission -> the weakest role holding it.  ``public`` needs no credentials and
#: ``self`` only valid ones (a user managing their own tokens).
PERMISSIONS = {
    "public": None,
    "self": None,
    "read": "read-only",  # collections, objects, stats, events, metrics
    "vm.operate": "vm-operator",  # VM power actions, snapshots
    "vm.admin": "vm-admin",  # exports, imports, clone, edits and deletions of VMs and disks, VBDs, VIFs
    "pool.operate": "pool-operator",  # host and SR actions
    "pool.admin": "pool-admin",  # servers, users, pools, everything
}


def user_role(user):
    """A user's role, or ``None``: such a user may only manage their own tokens."""
    role = user.get("role")
    return role if role in ROLES else None


def weaker(first, second):
    """The weaker of two roles (``None`` is weaker than any)."""
    if first is None or second is None:
        return None
    return first if ROLES.index(first) <= ROLES.index(second) else second


def effective_role(user, token):
    """What a request may do: its user's role, lowered to its token's when it has one."""
    role = user_role(user)
    if token is not None and token.get("role"):
        role = weaker(role, token["role"])
    return role


def check_role(role):
    """``role`` if it names a role, else :class:`ValueError` listing them."""
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


def has_permission(role, permission):
    """Whether ``role`` (``None``: no role) holds ``permission``."""
    needed = PERMISSIONS[permission]
    if needed is None:
        return True
    return role is not None and ROLES.index(role) >= ROLES.index(needed)


def authorize(user, token, permission):
    """Allow the request or raise :class:`Forbidden` naming what is missing.

    :param user: the authenticated user's row.
    :param token: the token row used (``None`` for a password login).
    :param permission: what the route declares (a key of :data:`PERMISSIONS`).
    """
    if permission not in PERMISSIONS:
        raise ValueError(f"undeclared permission {permission!r}")
    role = effective_role(user, token)
    if not has_permission(role, permission):
        if role is None:
            raise Forbidden("only admin users can use the API", permission=permission)
        raise Forbidden(f"the {role} role does not allow {permission}", permission=permission,
                        required=PERMISSIONS[permission])
