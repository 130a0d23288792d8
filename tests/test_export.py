import json

import numpy as np
import pytest

from depthweb.services.export import decode_png16, png16_encoding, write_outputs
from depthweb.types import DepthResult, Intrinsics


def _result(depth, kind="metric_depth"):
    h, w = depth.shape
    return DepthResult(depth, kind, Intrinsics.from_fov(w, h, 60), "tiny", "local")


@pytest.mark.parametrize(("max_m", "expected_scale"), [(8.0, 0.001), (80.0, 80.0 / 65535)])
def test_metric_png16_never_truncates(max_m, expected_scale):
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, max_m, (40, 50)).astype(np.float32)
    depth[0, 0] = max_m
    depth[1, 1] = np.nan
    q, scale, offset = png16_encoding(depth, metric=True)
    assert q.dtype == np.uint16 and offset == 0.0
    assert scale == pytest.approx(expected_scale)
    assert q[1, 1] == 0 and (q[np.isfinite(depth)] > 0).all()
    back = q.astype(np.float64) * scale
    ok = np.isfinite(depth)
    assert np.abs(back[ok] - depth[ok]).max() <= scale / 2 + 1e-6


def test_relative_png16_uses_offset_for_nonpositive_values():
    depth = np.linspace(-2.0, 3.0, 100, dtype=np.float32).reshape(10, 10)
    q, scale, offset = png16_encoding(depth, metric=False)
    assert offset < -2.0 and q.min() == 1 and q.max() == 65535
    assert np.allclose(q * scale + offset, depth, atol=scale)


def test_write_outputs_contract(tmp_path):
    depth = np.full((30, 40), 2.5, np.float32)
    depth[:5] = np.nan
    files = write_outputs(_result(depth), tmp_path, "frame")
    names = sorted(p.name for p in files)
    assert names == ["frame.json", "frame.npy", "frame.png", "frame_color.png"]
    meta = json.loads((tmp_path / "frame.json").read_text())
    for key in ("model", "weights", "kind", "unit", "png_scale", "height", "width",
                "intrinsics", "valid_fraction", "timings_ms"):
        assert key in meta
    assert meta["valid_fraction"] == pytest.approx(25 / 30)
    arr = np.load(tmp_path / "frame.npy")
    assert arr.dtype == np.float32 and arr.shape == (30, 40) and np.isnan(arr[:5]).all()
    png = decode_png16(tmp_path / "frame.png", meta)
    assert np.isnan(png[:5]).all() and np.allclose(png[5:], 2.5, atol=1e-3)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_failed_encode_writes_nothing(tmp_path, monkeypatch):
    import depthweb.services.export as export

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(export, "_png_bytes", boom)
    with pytest.raises(OSError):
        write_outputs(_result(np.ones((4, 4), np.float32)), tmp_path, "x")
    assert list(tmp_path.iterdir()) == []
