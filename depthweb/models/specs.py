"""The one pinned table of model specs: name -> family, hub id, revision, licence, kind, input size.

A revision is a commit hash where we have verified one; ``main`` otherwise (those entries are
listed as unpinned by ``depthweb models`` so nobody mistakes them for reproducible).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from depthweb.types import DepthKind


@dataclass(frozen=True)
class ModelSpec:
    """One servable model.

    ``input_size``: shorter-side target (int) for models that keep the aspect ratio, or the fixed
    (height, width) canvas of models that resize-and-pad (Metric3D, ONNX exports).
    ``multiple``: input sides are rounded to a multiple of it (14 for ViT patch 14).
    ``options``: family-specific settings (e.g. ``max_depth`` of the DA-V2 metric heads, ONNX file).
    """

    name: str
    family: str
    kind: DepthKind
    hub_id: str | None
    revision: str = "main"
    licence: str = "unknown"
    input_size: int | tuple[int, int] = 518
    multiple: int = 14
    description: str = ""
    options: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"{self.hub_id}@{self.revision}" if self.hub_id else "local"

    @property
    def pinned(self) -> bool:
        return len(self.revision) == 40


def _da(name: str, hub: str, licence: str, kind: DepthKind, desc: str, **opts) -> ModelSpec:
    return ModelSpec(name, "depth_anything", kind, hub, opts.pop("revision", "main"), licence,
                     518, 14, desc, opts)


_R = DepthKind.RELATIVE_DISPARITY
_M = DepthKind.METRIC_DEPTH

SPECS: tuple[ModelSpec, ...] = (
    _da("depth-anything-small", "LiheYoung/depth-anything-small-hf", "apache-2.0", _R,
        "Depth Anything v1 ViT-S, relative inverse depth"),
    _da("depth-anything-base", "LiheYoung/depth-anything-base-hf", "apache-2.0", _R,
        "Depth Anything v1 ViT-B, relative inverse depth"),
    _da("depth-anything-large", "LiheYoung/depth-anything-large-hf", "apache-2.0", _R,
        "Depth Anything v1 ViT-L, relative inverse depth"),
    _da("depth-anything-v2-small", "depth-anything/Depth-Anything-V2-Small-hf", "apache-2.0", _R,
        "Depth Anything V2 ViT-S, relative inverse depth",
        revision="5426e4f0f36572d16453bbda7a8389317b1bef99"),
    _da("depth-anything-v2-base", "depth-anything/Depth-Anything-V2-Base-hf", "cc-by-nc-4.0", _R,
        "Depth Anything V2 ViT-B, relative inverse depth"),
    _da("depth-anything-v2-large", "depth-anything/Depth-Anything-V2-Large-hf", "cc-by-nc-4.0", _R,
        "Depth Anything V2 ViT-L, relative inverse depth"),
    *(
        _da(f"depth-anything-v2-metric-{scene}-{size}",
            f"depth-anything/Depth-Anything-V2-Metric-{scene.title()}-{size.title()}-hf",
            "apache-2.0" if size == "small" else "cc-by-nc-4.0", _M,
            f"Depth Anything V2 ViT-{size[0].upper()} metric head, {scene} (max {depth} m)",
            max_depth=float(depth))
        for scene, depth in (("indoor", 20), ("outdoor", 80))
        for size in ("small", "base", "large")
    ),
    ModelSpec("depth-pro", "depth_pro", _M, "apple/DepthPro-hf", "main", "apple-amlr",
              1536, 1, "Apple Depth Pro: metric depth and focal length from one image",
              {"fov_head": True}),
    ModelSpec("metric3d-v2-vit-small", "metric3d", _M, "onnx-community/metric3d-vit-small",
              "main", "bsd-2-clause", (616, 1064), 1,
              "Metric3D v2 ViT-S (ONNX): metric depth and surface normals; needs intrinsics",
              {"onnx_file": "onnx/model.onnx", "version": 2}),
    ModelSpec("metric3d-v2-vit-large", "metric3d", _M, "onnx-community/metric3d-vit-large",
              "main", "bsd-2-clause", (616, 1064), 1,
              "Metric3D v2 ViT-L (ONNX): metric depth and surface normals; needs intrinsics",
              {"onnx_file": "onnx/model.onnx", "version": 2}),
    ModelSpec("metric3d-v1-convnext-large", "metric3d", _M, None, "main", "bsd-2-clause",
              (544, 1216), 1,
              "Metric3D v1 ConvNeXt-L (ONNX from the official export script; pass --weights)",
              {"onnx_file": "metric3d_convnext_large.onnx", "version": 1}),
    ModelSpec("unidepth-v2-vits14", "unidepth", _M, None, "main", "cc-by-nc-4.0", (462, 616), 14,
              "UniDepth V2 ViT-S (ONNX from the official export script, or the unidepth package)",
              {"onnx_file": "unidepthv2.onnx",
               "package_id": "lpiccinelli/unidepth-v2-vits14"}),
    ModelSpec("unidepth-v2-vitl14", "unidepth", _M, None, "main", "cc-by-nc-4.0", (462, 616), 14,
              "UniDepth V2 ViT-L (ONNX from the official export script, or the unidepth package)",
              {"onnx_file": "unidepthv2.onnx",
               "package_id": "lpiccinelli/unidepth-v2-vitl14"}),
    ModelSpec("depthweb-student", "student", _R, None, "main", "apache-2.0", 128, 32,
              "Compact offline student trained on this project's synthetic scenes (CPU; "
              "relative inverse depth)", {"bundled": "assets/student"}),
)

SPEC_BY_NAME: dict[str, ModelSpec] = {s.name: s for s in SPECS}
