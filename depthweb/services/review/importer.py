"""Import images into a dataset: a folder, a zip, or uploaded files, with progress.

Each file is decoded with :func:`depthweb.imaging.load_image` (pixel limit before decoding, EXIF
orientation applied, EXIF 35 mm focal kept), stored as a PNG of the normalised RGB pixels in the
content-addressed blob store, and deduplicated by the sha256 of that PNG (the same picture saved
twice, or as PNG and BMP, is one image). Unreadable files are reported (name and reason) and the
import goes on.

Zip archives are read in memory, never extracted: members whose names are absolute or contain
``..`` are refused and reported; an archive whose members would unpack to more than
``max_zip_bytes`` (or hold more than ``MAX_ZIP_MEMBERS`` files) is refused before anything is
read; each member is read with a size cap.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from sqlalchemy.exc import IntegrityError

from depthweb.errors import InputError
from depthweb.imaging import display_name, load_image
from depthweb.services.review.context import ReviewContext
from depthweb.store.auth import Actor, require_role
from depthweb.store.models import Dataset, Role
from depthweb.store.repo import add_image, create_dataset, find_image, get_dataset

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_ZIP_BYTES = 4 * 1024**3
MAX_ZIP_MEMBERS = 100_000
_SKIP_NAMES = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}

ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, name)`` after each file."""


@dataclass
class ImportReport:
    """What an import did: ``failed`` holds ``(file name, reason)`` pairs."""

    dataset: str
    added: int = 0
    duplicates: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.added + self.duplicates + len(self.failed)

    def summary(self) -> str:
        return (f"{self.dataset}: {self.added} added, {self.duplicates} duplicates skipped, "
                f"{len(self.failed)} unreadable")


@dataclass(frozen=True)
class _Item:
    name: str
    read: Callable[[], bytes]


class _Unreadable(Exception):
    """A file that cannot be imported; the message is the reason."""


def _hidden(parts: Sequence[str]) -> bool:
    return any(p.startswith(".") or p in _SKIP_NAMES for p in parts)


def _read_file(path: Path, limit: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise _Unreadable(f"{size / 1e6:.0f} MB is more than the {limit / 1e6:.0f} MB limit")
        return path.read_bytes()
    except OSError as exc:
        raise _Unreadable(f"cannot be read: {exc.strerror or exc}") from exc


def _folder_items(root: Path, limit: int) -> Iterator[_Item]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if _hidden(rel.parts) or path.is_dir():
            continue
        name = f"{root.name}/{rel.as_posix()}"
        if path.is_symlink():
            yield _Item(name, _refuse("is a symbolic link; copy the file itself"))
        elif path.is_file():
            yield _Item(name, lambda p=path: _read_file(p, limit))


def _refuse(reason: str) -> Callable[[], bytes]:
    def read() -> bytes:
        raise _Unreadable(reason)

    return read


def unsafe_member_name(name: str) -> bool:
    """Absolute paths, drive letters, ``..`` components or NUL bytes in a zip member name."""
    norm = name.replace("\\", "/")
    parts = PurePosixPath(norm).parts
    return norm.startswith("/") or ".." in parts or "\x00" in name or (
        len(norm) > 1 and norm[1] == ":"
    )


def _zip_items(path: Path, stack: ExitStack, file_limit: int, zip_limit: int) -> Iterator[_Item]:
    try:
        zf = stack.enter_context(zipfile.ZipFile(path))
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path.name} is not a readable zip archive: {exc}.") from exc
    members = [i for i in zf.infolist() if not i.is_dir()]
    total = sum(i.file_size for i in members)
    if len(members) > MAX_ZIP_MEMBERS or total > zip_limit:
        raise InputError(
            f"{path.name} holds {len(members)} files that unpack to {total / 1e6:.0f} MB; the "
            f"limits are {MAX_ZIP_MEMBERS} files and {zip_limit / 1e6:.0f} MB: split it."
        )
    for info in members:
        name = f"{path.name}:{info.filename}"
        if unsafe_member_name(info.filename):
            yield _Item(name, _refuse("unsafe path in the zip (absolute or with ..); refused"))
        elif not _hidden(PurePosixPath(info.filename.replace("\\", "/")).parts):
            yield _Item(name, lambda i=info: _read_member(zf, i, file_limit))


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    if info.file_size > limit:
        raise _Unreadable(f"unpacks to {info.file_size / 1e6:.0f} MB, over the "
                          f"{limit / 1e6:.0f} MB limit")
    try:
        with zf.open(info) as fh:
            data = fh.read(limit + 1)
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
        raise _Unreadable(f"cannot be unpacked: {exc}") from exc
    if len(data) > limit:
        raise _Unreadable(f"unpacks to more than the {limit / 1e6:.0f} MB limit")
    return data


def _items(
    sources: Sequence[str | Path], stack: ExitStack, file_limit: int, zip_limit: int
) -> list[_Item]:
    items: list[_Item] = []
    for src in sources:
        path = Path(src).expanduser()
        if path.is_dir():
            items.extend(_folder_items(path, file_limit))
        elif path.suffix.lower() == ".zip" and path.is_file():
            items.extend(_zip_items(path, stack, file_limit, zip_limit))
        elif path.exists():
            items.append(_Item(path.name, lambda p=path: _read_file(p, file_limit)))
        else:
            items.append(_Item(path.name, _refuse("does not exist")))
    return items


def encode_png(rgb: np.ndarray) -> bytes:
    """Deterministic PNG bytes of an RGB uint8 (H, W, 3) image."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]),
                           [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise InputError("The image could not be encoded as PNG.")
    return buf.tobytes()


def stored_name(name: str) -> str:
    """The file name as the database keeps it: verbatim, except that bytes which are not UTF-8
    (a non-UTF-8 file name on disk) become U+FFFD, as no database can store them."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def ensure_dataset(ctx: ReviewContext, name: str, user: Actor) -> Dataset:
    """The dataset called ``name``, created (by an admin) when missing."""
    require_role(user, Role.ADMIN)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:  # a non-UTF-8 command-line byte or a lone surrogate
        raise InputError(f"The dataset name {display_name(name)!r} is not valid Unicode text; "
                         "type it again.") from exc
    try:
        with ctx.session() as s:
            return get_dataset(s, name.strip()) or create_dataset(session=s, user=user, name=name)
    except IntegrityError:  # created by a concurrent import
        with ctx.session(readonly=True) as s:
            found = get_dataset(s, name.strip())
        if found is None:
            raise
        return found


def _import_one(
    ctx: ReviewContext, item: _Item, dataset_id: int, user: Actor, report: ImportReport
) -> None:
    loaded = load_image(item.read(), max_pixels=ctx.settings.max_pixels, name=item.name)
    png = encode_png(loaded.rgb)
    sha = hashlib.sha256(png).hexdigest()
    with ctx.session(readonly=True) as s:
        existing = find_image(s, dataset_id=dataset_id, sha256=sha)
    if existing is not None:
        report.duplicates += 1
        return
    ref = ctx.store.put_bytes(png, ".png")  # the file first, then the row that points to it
    with ctx.session() as s:
        image, created = add_image(
            session=s, user=user, dataset_id=dataset_id, blob=ref, store=ctx.store,
            width=loaded.width, height=loaded.height,
            exif_focal_35mm=loaded.exif_focal_35mm, original_filename=stored_name(item.name),
        )
    if created:
        report.added += 1
        report.image_ids.append(image.id)
    else:
        report.duplicates += 1


def import_images(
    ctx: ReviewContext,
    source: str | Path | Sequence[str | Path],
    *,
    dataset: str,
    user: Actor,
    progress: ProgressFn | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_zip_bytes: int = MAX_ZIP_BYTES,
) -> ImportReport:
    """Import a folder (recursively, hidden files skipped), a ``.zip``, image files, or a list
    of any of these (e.g. browser uploads) into ``dataset`` (created when missing).

    ``user`` must be an admin (the CLI passes ``SYSTEM``). Returns counts and the unreadable
    files; raises :class:`InputError` (before the dataset is created) for a zip that is refused
    as a whole and when the sources hold no file at all (an empty folder or zip).
    """
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    require_role(user, Role.ADMIN)
    with ExitStack() as stack:
        items = _items(sources, stack, max_file_bytes, max_zip_bytes)
        if not items:
            names = ", ".join(display_name(Path(s).name) for s in sources[:3]) or "nothing"
            raise InputError(f"No files to import were found in {names}; nothing was imported.")
        ds = ensure_dataset(ctx, dataset, user)
        report = ImportReport(ds.name)
        for done, item in enumerate(items, start=1):
            try:
                _import_one(ctx, item, ds.id, user, report)
            except (_Unreadable, InputError) as exc:
                name = display_name(item.name)
                reason = f"{name} {exc}." if isinstance(exc, _Unreadable) else str(exc)
                report.failed.append((name, reason))
                log.info("import: %s", reason)
            if progress is not None:
                progress(done, len(items), item.name)
    log.info("import into %s: %s", ds.name, report.summary())
    return report
