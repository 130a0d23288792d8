"""Import: duplicates skipped, unreadable files reported without stopping, zip slip and zip
bombs refused, EXIF focal kept; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from depthweb.errors import InputError
from depthweb.services.review import ReviewContext, import_images
from depthweb.store import SYSTEM, BlobRef, PermissionDeniedError
from depthweb.store.models import Image
from tests.review.conftest import review_settings, smooth_image, write_images


def stored_images(ctx: ReviewContext) -> list[Image]:
    with ctx.session(readonly=True) as s:
        rows = s.scalars(select(Image).order_by(Image.id)).all()
        for r in rows:
            _ = r.blob.path
        return list(rows)


def png_bytes(rgb: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, fmt, **kw)
    return buf.getvalue()


def test_folder_import_skips_duplicates_and_reports_bad_files(ctx, image_folder, tmp_path):
    folder = image_folder(range(4))
    # the same pixels as img000 in another format is a duplicate; a copy of img001 too
    (folder / "copy.bmp").write_bytes(png_bytes(smooth_image(0), "BMP"))
    (folder / "sub").mkdir()
    (folder / "sub" / "copy1.png").write_bytes((folder / "img001.png").read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "empty.png").write_bytes(b"")
    (folder / ".DS_Store").write_bytes(b"junk")  # hidden: skipped silently
    calls = []
    report = import_images(ctx, folder, dataset="street", user=SYSTEM,
                           progress=lambda d, t, n: calls.append((d, t, n)))
    assert (report.added, report.duplicates) == (4, 2)
    failed = dict(report.failed)
    assert set(failed) == {"photos/broken.jpg", "photos/empty.png"}
    assert "broken.jpg" in failed["photos/broken.jpg"] and "corrupt" in failed["photos/broken.jpg"]
    assert "empty" in failed["photos/empty.png"]
    assert [c[0] for c in calls] == list(range(1, 9)) and {c[1] for c in calls} == {8}

    images = stored_images(ctx)
    assert len(images) == 4 and [i.id for i in images] == sorted(report.image_ids)
    for im in images:
        data = ctx.store.get_bytes(BlobRef.from_row(im.blob))
        assert hashlib.sha256(data).hexdigest() == im.sha256 == im.blob_sha256
        assert data.startswith(b"\x89PNG") and (im.width, im.height) == (64, 48)

    again = import_images(ctx, folder, dataset="street", user=SYSTEM)
    assert (again.added, again.duplicates, len(again.failed)) == (0, 6, 2)
    assert len(stored_images(ctx)) == 4


def test_pixel_limit_is_reported_and_the_rest_imported(db_url, tmp_path):
    folder = tmp_path / "mixed"
    write_images(folder, [1, 2])
    write_images(folder, [3], h=200, w=300)
    settings = review_settings(tmp_path, db_url).model_copy(update={"max_pixels": 10_000})
    with ReviewContext.from_settings(settings) as ctx:
        report = import_images(ctx, folder, dataset="d", user=SYSTEM)
        assert report.added == 2
        [(name, reason)] = report.failed
        assert name == "mixed/img003.png" and "limit" in reason and "resize" in reason


def test_zip_members_with_unsafe_names_are_refused(ctx, tmp_path):
    good = png_bytes(smooth_image(5))
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/ok.png", good)
        zf.writestr("b/ok2.png", png_bytes(smooth_image(6)))
        zf.writestr("../evil.png", png_bytes(smooth_image(7)))
        zf.writestr("x/../../evil2.png", png_bytes(smooth_image(8)))
        zf.writestr("/abs.png", png_bytes(smooth_image(9)))
        zf.writestr("__MACOSX/a/._ok.png", b"resource fork")
        zf.writestr("notes.txt", b"hello")
    report = import_images(ctx, archive, dataset="zipped", user=SYSTEM)
    assert report.added == 2
    failed = dict(report.failed)
    unsafe = {k for k, v in failed.items() if "unsafe path" in v}
    assert unsafe == {"upload.zip:../evil.png", "upload.zip:x/../../evil2.png",
                      "upload.zip:/abs.png"}
    assert set(failed) - unsafe == {"upload.zip:notes.txt"}
    assert not (tmp_path.parent / "evil.png").exists() and not (tmp_path / "evil2.png").exists()
    names = {im.original_filename for im in stored_images(ctx)}
    assert names == {"upload.zip:a/ok.png", "upload.zip:b/ok2.png"}


def test_zip_bomb_is_refused_before_reading(ctx, tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.png", png_bytes(smooth_image(1)))
        zf.writestr("zeros.png", b"\0" * (8 * 1024 * 1024))
    assert archive.stat().st_size < 100_000
    with pytest.raises(InputError, match="split it"):
        import_images(ctx, archive, dataset="bombed", user=SYSTEM,
                      max_zip_bytes=4 * 1024 * 1024)
    assert stored_images(ctx) == []
    report = import_images(ctx, archive, dataset="bombed", user=SYSTEM,
                           max_file_bytes=1024 * 1024)  # per-member cap instead
    assert report.added == 1 and "limit" in dict(report.failed)["bomb.zip:zeros.png"]


def test_uploaded_files_keep_exif_focal_and_orientation(ctx, tmp_path):
    rgb = smooth_image(11, 40, 60)
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    exif.get_ifd(0x8769)[0xA405] = 28
    photo = tmp_path / "phone.jpg"
    photo.write_bytes(png_bytes(rgb, "JPEG", exif=exif.tobytes(), quality=95))
    plain = write_images(tmp_path / "up", [12])[0]
    report = import_images(ctx, [photo, plain, tmp_path / "missing.png"], dataset="uploads",
                           user=SYSTEM)
    assert report.added == 2 and [n for n, _ in report.failed] == ["missing.png"]
    by_name = {im.original_filename: im for im in stored_images(ctx)}
    assert by_name["phone.jpg"].exif_focal_35mm == pytest.approx(28.0)
    assert (by_name["phone.jpg"].width, by_name["phone.jpg"].height) == (40, 60)
    assert by_name["img012.png"].exif_focal_35mm is None


def test_only_admins_import(ctx, users, image_folder):
    folder = image_folder([1])
    for name in ("rev", "view"):
        with pytest.raises(PermissionDeniedError):
            import_images(ctx, folder, dataset="x", user=users[name])
    report = import_images(ctx, folder, dataset="x", user=users["admin"])
    assert report.added == 1
    with ctx.session(readonly=True) as s:
        assert s.scalar(select(func.count(Image.id))) == 1
