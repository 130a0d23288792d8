"""With no network and no other weights, the bundled student serves monocular depth."""

import numpy as np

from depthweb.config import get_settings
from depthweb.models.loading import is_available
from depthweb.models.registry import get_spec, load_backend


def test_bundled_student_loads_offline_without_weights_option():
    spec = get_spec("depthweb-student")
    assert is_available(spec)
    backend = load_backend("depthweb-student", device="cpu")
    assert backend.weights_label == "bundled:assets/student"
    rgb = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    result = backend.infer_image(rgb)
    assert result.depth.shape == (120, 200) and result.kind == "relative_disparity"
    assert any("synthetic" in n for n in result.notes)  # the result says what the model is


def test_app_defaults_to_the_student_when_nothing_else_is_available():
    from depthweb.ui.common import Context

    ctx = Context.create(get_settings())
    available = ctx.available_names()
    assert available == ["depthweb-student"]  # isolated HF cache, no model dir
    assert ctx.default_model() == "depthweb-student"
