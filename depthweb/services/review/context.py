"""Where the review platform keeps its state: the database engine and the blob store.

Both come from :class:`~depthweb.config.Settings`: the database URL
(``settings.resolved_database_url``: an SQLite file under ``data_dir`` unless
``DEPTHWEB_DATABASE_URL`` says otherwise) and the blob store at ``<data_dir>/blobs``. Keep
``data_dir`` outside every folder the web app serves. Sessions are opened at the edge (one per
service call or web request) with :meth:`ReviewContext.session`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from depthweb.config import Settings, get_settings
from depthweb.errors import DepthwebError
from depthweb.services.review.cache import PageCache
from depthweb.services.review.picture_files import PictureFiles
from depthweb.services.review.previews import PREVIEW_DIRNAME, PreviewFiles
from depthweb.store import (
    BlobStore,
    make_engine,
    require_current_schema,
    session_scope,
    upgrade,
)

log = logging.getLogger(__name__)

BLOB_DIRNAME = "blobs"


def blob_root(settings: Settings) -> Path:
    """``<data_dir>/blobs``: the content-addressed arrays and images (unless
    ``DEPTHWEB_BLOB_URL`` puts them elsewhere, see :func:`blob_store`)."""
    return Path(settings.data_dir).expanduser() / BLOB_DIRNAME


def preview_root(settings: Settings) -> Path:
    """``<data_dir>/previews``: display-size review pictures, derived from the blobs (a cache,
    safe to delete; :mod:`depthweb.services.review.previews`)."""
    return Path(settings.data_dir).expanduser() / PREVIEW_DIRNAME


def blob_store(settings: Settings) -> BlobStore:
    """The blob store of ``settings``: ``blob_url`` (a shared path or ``s3://...``) when set,
    else :func:`blob_root`."""
    return BlobStore(settings.blob_url or blob_root(settings),
                     storage_options=settings.blob_storage_options)


def database_label(engine: Engine) -> str:
    """The engine's URL with the password hidden (for messages and logs)."""
    return engine.url.render_as_string(hide_password=True)


@dataclass
class ReviewContext:
    """An engine and a blob store; make one per process (CLI command, web app) and share it.

    Use :meth:`from_settings`; :meth:`close` (or ``with``) disposes of the engine when the
    context created it.
    """

    settings: Settings
    engine: Engine
    store: BlobStore
    owns_engine: bool = field(default=True, repr=False)
    cache: PageCache = field(default_factory=PageCache, repr=False)
    pictures: PictureFiles = field(default_factory=PictureFiles, repr=False)
    previews: PreviewFiles | None = field(default=None, repr=False)

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        engine: Engine | None = None,
        check_schema: bool = True,
        create: bool = False,
    ) -> ReviewContext:
        """Open the database of ``settings`` (or use ``engine``) and its blob store.

        With ``create`` the schema is created or migrated first (what ``depthweb db upgrade``
        does), for deployments with no command line such as a Hugging Face Space.

        With ``check_schema`` the database must be migrated to the newest revision (else a
        :class:`DepthwebError` says to run ``depthweb db upgrade``); an unreachable database is
        reported the same way, in one sentence.
        """
        settings = settings or get_settings()
        owns = engine is None
        engine = engine or make_engine(settings.resolved_database_url)
        ctx = cls(settings, engine, blob_store(settings), owns,
                  previews=PreviewFiles(preview_root(settings)))
        if check_schema:
            try:
                if create:
                    upgrade(engine)
                require_current_schema(engine)
            except SQLAlchemyError as exc:
                ctx.close()
                raise DepthwebError(
                    f"Cannot open the database {database_label(engine)} "
                    f"({type(getattr(exc, 'orig', None) or exc).__name__}): check "
                    "DEPTHWEB_DATABASE_URL and that the server is running."
                ) from exc
            except DepthwebError:
                ctx.close()
                raise
        return ctx

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction (commit on success, roll back on error); see ``session_scope``."""
        with session_scope(self.engine, readonly=readonly) as s:
            yield s

    def close(self) -> None:
        self.pictures.close()
        if self.owns_engine:
            self.engine.dispose()

    def __enter__(self) -> ReviewContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
