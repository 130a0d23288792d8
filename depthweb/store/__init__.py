"""Persistence: engine factory, ORM models, migrations, blob store, auth and repository functions.

Importing this package opens nothing; engines are made with :func:`make_engine` at the edge.
"""

from depthweb.store.auth import (
    SYSTEM,
    LoginThrottle,
    authenticate,
    create_user,
    get_user,
    require_role,
    update_user,
)
from depthweb.store.blobs import BlobRef, BlobStore
from depthweb.store.engine import make_engine, session_factory, session_scope
from depthweb.store.errors import (
    InvalidActionError,
    NotFoundError,
    PermissionDeniedError,
    StaleRevisionError,
)
from depthweb.store.migrate import current_revision, require_current_schema, upgrade
from depthweb.store.models import Action, Decision, Role, TaskStatus

__all__ = [
    "SYSTEM",
    "Action",
    "BlobRef",
    "BlobStore",
    "Decision",
    "InvalidActionError",
    "LoginThrottle",
    "NotFoundError",
    "PermissionDeniedError",
    "Role",
    "StaleRevisionError",
    "TaskStatus",
    "authenticate",
    "create_user",
    "current_revision",
    "get_user",
    "make_engine",
    "require_current_schema",
    "require_role",
    "session_factory",
    "session_scope",
    "update_user",
    "upgrade",
]
