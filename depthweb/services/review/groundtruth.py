"""Import ground-truth depth for a dataset's images (``depthweb import-depth``).

Each depth file is matched to the image of the dataset whose original file name has the same
stem (``room1.npy`` or ``room1.png`` -> the image imported as ``.../room1.jpg``) and must have
the image's size (H, W), after EXIF orientation. Two formats:

- ``.npy``: float16/32/64 (H, W) (or (H, W, 1)) depth in **metres**; NaN or 0 = no measurement.
- ``.png``: 16-bit grayscale, ``metres = value * png_scale``, 0 = no measurement (default
  ``png_scale`` 0.001: millimetres, the NYU convention; KITTI uses 1/256).

Everything is validated before anything is stored, and a bad file is refused with one sentence
while the other files go on: +/-inf, negative depths, depths over :data:`MAX_DEPTH_M`, no valid
pixel at all, a size other than the image's, integer / bool / complex / text / structured
``.npy`` dtypes, 8-bit or colour PNGs, truncated files. ``.npy`` files are parsed from their
header (shape and dtype checked before any data is read) and never unpickled: an object array
is refused without loading it.

A valid map is stored in the blob store (float32, NaN invalid) as a prediction of the model
:data:`~depthweb.services.review.labels.GROUND_TRUTH_MODEL` (kind ``metric_depth``, weights =
the blob's sha256, so re-importing the same map changes nothing), and the image's review task
points at it while the task is untouched (version 0: nobody reviewed or corrected it, it follows
no earlier ground truth); otherwise the task keeps its label and the report lists the file in
``kept``. Exports then list the image with ``source: ground_truth`` (weight 1).
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from sqlalchemy import select

from depthweb.errors import InputError
from depthweb.geometry.intrinsics import resolve_intrinsics
from depthweb.imaging import display_name
from depthweb.services.review.context import ReviewContext
from depthweb.services.review.importer import MAX_FILE_BYTES
from depthweb.services.review.labels import GROUND_TRUTH_MODEL
from depthweb.store.auth import Actor, require_role
from depthweb.store.models import Image, Role
from depthweb.store.repo import add_prediction, ensure_task, require_dataset
from depthweb.types import DepthKind

log = logging.getLogger(__name__)

DEPTH_SUFFIXES = (".npy", ".png")
DEFAULT_PNG_SCALE = 0.001
MAX_DEPTH_M = 1e6
"""Larger values are not metres (a wrong scale, or a sentinel such as 1e30)."""


@dataclass
class DepthImportReport:
    """What a ground-truth import did: ``failed`` holds ``(file name, sentence)`` pairs;
    ``kept`` the files stored but not made the label, because their task was already worked on."""

    dataset: str
    added: int = 0
    unchanged: int = 0
    kept: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        kept = f", {len(self.kept)} kept their reviewed label" if self.kept else ""
        return (f"{self.dataset}: {self.added} ground-truth maps added, {self.unchanged} "
                f"unchanged{kept}, {len(self.failed)} refused")


# ------------------------------------------------------------------------------ reading
def _npy_header(bio: io.BytesIO, label: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(bio)
        reader = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(
            version)
        if reader is None:
            raise ValueError(f"unsupported .npy version {version}")
        return reader(bio)
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise InputError(f"{label} is not a readable .npy file ({exc}).") from exc


def _check_dtype(dtype: np.dtype, label: str) -> None:
    if dtype.hasobject:
        raise InputError(f"{label} holds Python objects (a pickle), which are never loaded: "
                         "save the depth as a float32 array.")
    if dtype.kind != "f" or dtype.fields is not None:
        raise InputError(f"{label} holds {dtype} values; save the depth in metres as a float32 "
                         ".npy (NaN = no measurement) or a 16-bit PNG with a scale.")


def _check_shape(shape: tuple[int, ...], expected: tuple[int, int], label: str) -> tuple:
    if len(shape) == 3 and shape[2] == 1:
        shape = shape[:2]
    if len(shape) != 2 or tuple(shape) != tuple(expected):
        h, w = expected
        got = "x".join(str(s) for s in shape) or "a scalar"
        raise InputError(f"{label} is {got} but its image is {h}x{w} (rows x columns): the "
                         "depth map must have the image's size.")
    return shape


def read_npy(data: bytes, label: str, expected: tuple[int, int]) -> np.ndarray:
    """A ``.npy`` depth map as float64 (H, W), checked from the header before any data is read
    (shape ``expected``, a float dtype, never an object array)."""
    bio = io.BytesIO(data)
    shape, fortran, dtype = _npy_header(bio, label)
    _check_dtype(dtype, label)
    shape2 = _check_shape(tuple(shape), expected, label)
    count = int(np.prod(shape))
    offset = bio.tell()
    if len(data) - offset < count * dtype.itemsize:
        raise InputError(f"{label} is truncated: its header promises {count} values but the "
                         "file is shorter.")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    arr = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    return arr.reshape(shape2).astype(np.float64)


def read_png16(data: bytes, label: str, expected: tuple[int, int], scale: float) -> np.ndarray:
    """A 16-bit PNG depth map as float64 metres (H, W), 0 -> NaN; size checked before decoding."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as im:
                _check_shape((im.size[1], im.size[0]), expected, label)
                if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
                    raise InputError(f"{label} is a {im.mode} PNG, not 16-bit grayscale: save "
                                     "depth as uint16 (value x --png-scale = metres).")
                raw = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            PILImage.DecompressionBombError) as exc:
        raise InputError(f"{label} is not a readable 16-bit PNG ({exc}).") from exc
    if raw.dtype.kind not in "iu" or (raw.size and (raw.min() < 0 or raw.max() > 65535)):
        raise InputError(f"{label} holds values outside 0..65535; save it as 16-bit.")
    return np.where(raw > 0, raw.astype(np.float64) * scale, np.nan)


def validated_depth(values: np.ndarray, label: str) -> np.ndarray:
    """float64 (H, W) metres (NaN / 0 = no measurement) -> float32 with NaN invalid, or a
    one-sentence :class:`InputError` for inf, negative, absurd or all-invalid maps."""
    if np.isinf(values).any():
        raise InputError(f"{label} has {int(np.isinf(values).sum())} infinite values: mark "
                         "pixels without a measurement as NaN or 0.")
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() < 0:
        raise InputError(f"{label} has negative depths (down to {finite.min():.4g} m): depth "
                         "is a distance in metres, NaN or 0 where unknown.")
    if finite.size and finite.max() > MAX_DEPTH_M:
        raise InputError(f"{label} has depths up to {finite.max():.4g} m, over the "
                         f"{MAX_DEPTH_M:g} m limit: check its unit or PNG scale.")
    depth = np.where(values > 0, values, np.nan).astype(np.float32)
    if not np.isfinite(depth).any():
        raise InputError(f"{label} has no valid depth at all (every pixel is NaN or 0).")
    return depth


def read_depth(
    data: bytes, label: str, expected: tuple[int, int], *, png_scale: float = DEFAULT_PNG_SCALE
) -> np.ndarray:
    """Depth file bytes (``.npy`` or ``.png`` by ``label``'s suffix) -> float32 (H, W) metres,
    NaN invalid, validated (see the module docstring)."""
    suffix = PurePosixPath(label).suffix.lower()
    if not data:
        raise InputError(f"{label} is empty (0 bytes).")
    if suffix == ".npy":
        values = read_npy(data, label, expected)
    elif suffix == ".png":
        values = read_png16(data, label, expected, png_scale)
    else:
        raise InputError(f"{label} is not a .npy or .png depth file.")
    return validated_depth(values, label)


# ------------------------------------------------------------------------------ import
def depth_files(sources: Sequence[str | Path]) -> list[Path]:
    """Depth files named by ``sources``: files as given, folders searched recursively for
    ``.npy`` / ``.png`` files (hidden ones skipped), sorted."""
    out: list[Path] = []
    for src in sources:
        path = Path(src).expanduser()
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix.lower() in DEPTH_SUFFIXES
                          and p.is_file() and not any(x.startswith(".") for x in
                                                      p.relative_to(path).parts))
        else:
            out.append(path)
    return out


def image_stem(original_filename: str) -> str:
    """The stem depth files are matched by: ``"photos/a/room1.jpg"`` and ``"x.zip:room1.jpg"``
    -> ``"room1"``."""
    return PurePosixPath(original_filename.rsplit(":", 1)[-1].replace("\\", "/")).stem


def _images_by_stem(ctx: ReviewContext, dataset: str) -> tuple[int, str, dict[str, list]]:
    with ctx.session(readonly=True) as s:
        ds = require_dataset(s, dataset)
        rows = s.execute(select(Image.id, Image.original_filename, Image.width, Image.height,
                                Image.exif_focal_35mm).where(Image.dataset_id == ds.id)).all()
    by_stem: dict[str, list] = {}
    for row in rows:
        by_stem.setdefault(image_stem(row.original_filename or ""), []).append(row)
    return ds.id, ds.name, by_stem


def _read_bytes(path: Path, label: str) -> bytes:
    if path.is_dir():
        raise InputError(f"{label} is a folder, not a depth file.")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(f"{label} is {size / 1e6:.0f} MB, over the "
                             f"{MAX_FILE_BYTES / 1e6:.0f} MB limit.")
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{label} cannot be read: {exc.strerror or exc}.") from exc


def _import_one(ctx: ReviewContext, path: Path, by_stem: dict, user: Actor,
                report: DepthImportReport, png_scale: float, focal_px: float | None) -> None:
    label = display_name(path.name)
    if not path.exists():
        raise InputError(f"{label} does not exist: check the path.")
    matches = by_stem.get(path.stem, [])
    if len(matches) != 1:
        where = "no image" if not matches else f"{len(matches)} images"
        raise InputError(f"{label} matches {where} named {display_name(path.stem)}.* in "
                         f"{report.dataset}: name each depth file after its image.")
    image = matches[0]
    depth = read_depth(_read_bytes(path, label), label, (image.height, image.width),
                       png_scale=png_scale)
    try:
        cam = resolve_intrinsics(image.width, image.height, focal_px=focal_px,
                                 exif_focal_35mm=image.exif_focal_35mm,
                                 default_fov_deg=ctx.settings.default_fov_deg)
    except ValueError as exc:
        raise InputError(f"The {exc}.") from exc
    ref = ctx.store.put_array(depth)  # the file first, then the rows that point to it
    with ctx.session() as s:
        pred, created = add_prediction(
            session=s, user=user, image_id=image.id, model=GROUND_TRUTH_MODEL,
            weights=ref.sha256, kind=DepthKind.METRIC_DEPTH, intrinsics=cam, depth=ref,
            store=ctx.store)
        task, _ = ensure_task(session=s, user=user, image_id=image.id, prediction_id=pred.id)
        follows = task.prediction_id == pred.id
    if not created:
        report.unchanged += 1
        return
    report.added += 1
    if not follows:
        report.kept.append(label)


def import_ground_truth(
    ctx: ReviewContext,
    sources: str | Path | Sequence[str | Path],
    *,
    dataset: str,
    user: Actor,
    png_scale: float = DEFAULT_PNG_SCALE,
    focal_px: float | None = None,
) -> DepthImportReport:
    """Import ground-truth depth files (or folders of them) for the images of ``dataset``
    (module docstring); admins only (the CLI passes ``SYSTEM``). ``focal_px``: the camera's
    focal length in pixels when known (else EXIF or the assumed FOV). A refused file is
    reported and the others go on."""
    require_role(user, Role.ADMIN)
    if not (math.isfinite(png_scale) and png_scale > 0):
        raise InputError(f"The PNG scale must be a positive number of metres per unit, got "
                         f"{png_scale:g}.")
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    files = depth_files(sources)
    if not files:
        raise InputError("No .npy or .png depth files were found in the given paths.")
    _, name, by_stem = _images_by_stem(ctx, dataset)
    report = DepthImportReport(name)
    for path in files:
        try:
            _import_one(ctx, path, by_stem, user, report, png_scale, focal_px)
        except InputError as exc:
            report.failed.append((display_name(path.name), str(exc)))
            log.info("import-depth: %s", exc)
    log.info("import-depth into %s: %s", name, report.summary())
    return report
