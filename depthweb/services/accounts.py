"""Account changes that end login sessions: password resets and disabling / enabling users.

Used by the CLI (as the local operator, :data:`~depthweb.store.SYSTEM`) and by the Admin tab
(as the logged-in admin, checked server-side). Every change goes through
:func:`depthweb.store.update_user`, which revokes the user's open login sessions when the
password changes or the account is disabled, so an old cookie stops working on the next request.
"""

from __future__ import annotations

from depthweb.services.review.context import ReviewContext
from depthweb.store import get_user, require_role, update_user
from depthweb.store.auth import Actor, SystemActor
from depthweb.store.models import Role

Acting = str | SystemActor | None
"""Who acts: :data:`~depthweb.store.SYSTEM` (the CLI) or the web user's name (None: nobody
logged in, refused)."""


def _actor(session, acting: Acting) -> Actor:
    """The acting admin (a web user must be an active admin in the database)."""
    if isinstance(acting, SystemActor):
        return acting
    actor = get_user(session, acting) if acting else None
    require_role(actor, Role.ADMIN)
    assert actor is not None  # require_role refused None
    return actor


def set_password(ctx: ReviewContext, name: str, password: str, *, acting: Acting) -> None:
    """Give ``name`` a new password; their existing logins end."""
    with ctx.session() as s:
        update_user(session=s, actor=_actor(s, acting), name=(name or "").strip(),
                    password=password or "")


def set_active(ctx: ReviewContext, name: str, active: bool, *, acting: Acting) -> None:
    """Enable or disable ``name``; disabling ends their logins (the last admin stays)."""
    with ctx.session() as s:
        update_user(session=s, actor=_actor(s, acting), name=(name or "").strip(),
                    active=bool(active))
