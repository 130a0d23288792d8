"""Upload limits on the review app (``DEPTHWEB_MAX_UPLOAD_MB=8``): a bigger file is refused by
``/gradio_api/upload`` with 413 for every user, nothing of it stays in Gradio's temp dir, the
endpoints that take files (admin import, the mask editor) are refused before they run, the
server keeps serving, and an upload's file name cannot climb out of the temp dir."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.security.conftest import state_snapshot
from tests.security.endpoints import make_case

LIMIT_MB = 8

def big_png(path, mb: float = LIMIT_MB + 1, seed: int = 0):
    """A valid PNG of random pixels (incompressible) of about ``mb`` MB."""
    side = int((mb * 1024 * 1024 / 3) ** 0.5) + 8
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(
        path, compress_level=0)
    assert path.stat().st_size > LIMIT_MB * 1024 * 1024
    return path

def big_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file() and p.stat().st_size > 1024 * 1024 * 4]

@pytest.mark.parametrize("who", ["boss", "view"])
def test_an_upload_over_the_limit_gets_413_and_leaves_nothing(sec_server, http, tmp_path, who):
    client = http(who)
    blob = big_png(tmp_path / "big.png").read_bytes()
    before = big_files(sec_server.root / "gradio")
    r = client.post("/gradio_api/upload", files={"files": ("big.png", blob, "image/png")})
    assert r.status_code == 413, (r.status_code, r.text[:200])
    assert big_files(sec_server.root / "gradio") == before
    small = client.post("/gradio_api/upload",
                        files={"files": ("ok.txt", b"small enough", "text/plain")})
    assert small.status_code == 200 and client.get("/config").status_code == 200
    assert http(None).post("/gradio_api/upload",
                           files={"files": ("x.txt", b"x", "text/plain")}).status_code == 401

def test_the_file_endpoints_refuse_an_oversized_file_before_running(sec_server, login, ctx,
                                                                    tmp_path):
    from gradio_client import handle_file

    case = make_case(ctx, tmp_path, str(sec_server.teacher_weights))
    big = big_png(tmp_path / "big-layer.png", seed=1)
    editor = {"background": None, "layers": [handle_file(str(big))], "composite": None}
    before = state_snapshot(ctx, sec_server.data_dir)
    calls = [
        ("boss", "/admin_import", ([handle_file(str(big))], "oversized")),
        ("rev", "/review_save_mask", (case.task_id, case.version, editor, "union")),
        ("rev", "/review_fill", (case.task_id, case.version, editor, "far")),
    ]
    for who, api, args in calls:
        with pytest.raises(Exception, match=r"413|too large|exceeds|size") as err:
            login(who).predict(*args, api_name=api)
        assert "Traceback" not in str(err.value)
    assert state_snapshot(ctx, sec_server.data_dir) == before
    assert login("rev").predict(case.task_id, api_name="/review_open")[0] == case.task_id

def test_an_upload_name_cannot_leave_the_temp_dir(sec_server, http):
    client = http("rev")
    names = ["../../../../../../tmp/escaped.png", "..\\..\\escaped.png", "/etc/escaped.png",
             "%2e%2e%2fescaped.png", "....//escaped.png"]
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, "PNG")
    temp = (sec_server.root / "gradio").resolve()
    for name in names:
        r = client.post("/gradio_api/upload", files={"files": (name, buf.getvalue(),
                                                              "image/png")})
        assert r.status_code == 200, (name, r.status_code)
        (stored,) = r.json()

        assert Path(stored).resolve().is_relative_to(temp), (name, stored)
    assert not (sec_server.root / "escaped.png").exists()
