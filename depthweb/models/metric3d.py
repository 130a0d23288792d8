"""Metric3D v1 (ConvNeXt) and v2 (ViT) through ONNX Runtime, with the canonical-camera transform.

What the code follows (read in the public sources, re-implemented here):

- ``YvanYin/Metric3D`` ``hubconf.py`` (its ``__main__`` usage example) and
  ``mono/utils/do_test.py``: keep-aspect resize so the image fits the input canvas
  (616x1064 for ViT, 544x1216 for ConvNeXt), ``scale = min(H / h, W / w)``, resized size
  ``(int(h * scale), int(w * scale))`` (bilinear), pad to the canvas with the ImageNet mean
  colour ``(123.675, 116.28, 103.53)`` (top/left get ``pad // 2``), normalise with
  ``std (58.395, 57.12, 57.375)``, run, cut the padding off, resize bilinearly to the original
  size, then de-canonicalise with the focal length *of the network input*:
  ``depth = pred * (fx * scale) / 1000`` (canonical focal 1000 px) and clamp to [0, 300] m.
- ``YvanYin/Metric3D`` ``onnx/metric3d_onnx_export.py`` and ``onnx/test.onnx.py``: the official
  export takes ``image`` (1, 3, H, W) float32 RGB in 0-255 (the normalisation is inside the
  graph, the padding colour is the mean so it normalises to 0) and returns ``pred_depth``
  (1, 1, H, W), fixed shape (1x3x616x1064 ViT, 1x3x544x1216 ConvNeXt).
- ``onnx-community/metric3d-vit-small`` / ``-vit-large`` (export described in Metric3D issue #117
  and transformers.js PR #1254; ``preprocessor_config.json`` has ``do_rescale`` and
  ``do_normalize`` false): input ``pixel_values`` (B, 3, H, W) float32 RGB in 0-255 with dynamic
  batch/height/width; outputs ``predicted_depth`` (canonical depth), ``predicted_normal``
  (B, 3, H, W) and ``normal_confidence`` (B, H, W). Depth/confidence maps are accepted with or
  without a singleton channel axis.
- Normals: channels (nx, ny, nz) in the camera frame (Metric3D issue #70); returned as (H, W, 3),
  renormalised to unit length after resizing, in the network's own convention (OpenCV camera
  axes: x right, y down, z forward). The fourth channel of Metric3D's normal head is the kappa of
  Bae et al. 2021 (``elu(k) + 1.01``, ``mono/model/decode_heads``); we turn it into a [0, 1]
  confidence ``1 - alpha / (pi / 2)`` with the expected angular error
  ``alpha = 2k / (k^2 + 1) + pi e^{-pi k} / (1 + e^{-pi k})`` (monotone, alpha(0) = pi / 2).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depthweb.config import get_settings
from depthweb.errors import DepthwebError
from depthweb.geometry.intrinsics import resolve_intrinsics
from depthweb.models.base import DepthBackend, checked_batch
from depthweb.models.loading import ResolvedWeights
from depthweb.models.onnx_utils import (
    Letterbox,
    OnnxModel,
    as_maps,
    as_vector_maps,
    chunks,
    find_onnx_file,
    resize_linear,
)
from depthweb.models.specs import ModelSpec
from depthweb.types import DepthResult, Intrinsics, IntrinsicsSource

log = logging.getLogger(__name__)

CANONICAL_FOCAL_PX = 1000.0
"""Focal length of Metric3D's canonical camera, in pixels of the network input."""
MAX_DEPTH_M = 300.0
PAD_RGB = (123.675, 116.28, 103.53)
"""ImageNet mean in 0-255: the padding colour, which the graph normalises to 0."""


@dataclass(frozen=True)
class IONames:
    """Input/output names of one kind of Metric3D export."""

    source: str
    image: str
    depth: str
    normal: str | None = None
    normal_confidence: str | None = None


IO_SCHEMES = (
    IONames("onnx-community export", "pixel_values", "predicted_depth", "predicted_normal",
            "normal_confidence"),
    IONames("official export script", "image", "pred_depth"),
)


def canonical_to_metric(canonical: np.ndarray, fx_network: float) -> np.ndarray:
    """Canonical-camera depth -> metres: ``pred * fx_network / 1000``, clamped to [0, 300]."""
    return np.clip(canonical * (fx_network / CANONICAL_FOCAL_PX), 0.0, MAX_DEPTH_M)


def kappa_to_confidence(kappa: np.ndarray) -> np.ndarray:
    """Normal-head kappa (> 0) -> confidence in [0, 1] via the expected angular error."""
    k = np.maximum(kappa.astype(np.float64), 0.0)
    e = np.exp(-math.pi * k)
    alpha = 2.0 * k / (k * k + 1.0) + math.pi * e / (1.0 + e)
    return np.clip(1.0 - alpha / (math.pi / 2.0), 0.0, 1.0).astype(np.float32)


def unit_normals(normals: np.ndarray) -> np.ndarray:
    """(H, W, 3) vectors -> float32 unit vectors; zero-length ones become NaN."""
    normals = normals.astype(np.float32, copy=False)
    norm = np.sqrt(np.einsum("...i,...i->...", normals, normals))[..., None]
    out = np.full_like(normals, np.nan)
    np.divide(normals, norm, out=out, where=norm > 1e-8)
    return out


class Metric3DBackend(DepthBackend):
    """Metric depth (and normals for v2) from a Metric3D ONNX export.

    Metric3D predicts depth for a canonical camera, so it needs the focal length: the known
    intrinsics (user or EXIF) are used, else the assumed FOV, and the result says which.
    """

    def __init__(self, spec: ModelSpec, weights_path: Path, weights_label: str, device: str,
                 model: OnnxModel, names: IONames, canvas_hw: tuple[int, int]) -> None:
        super().__init__(spec, weights_path, weights_label, device)
        self.model = model
        self.names = names
        self.canvas_hw = canvas_hw
        self.outputs = [n for n in (names.depth, names.normal, names.normal_confidence)
                        if n is not None and n in model.outputs]
        image_info = model.inputs[names.image]
        self.batch_size = int(spec.options.get("batch_size", 4)) if image_info.dynamic_batch else 1

    @classmethod
    def load(cls, spec: ModelSpec, weights: ResolvedWeights, device: str) -> Metric3DBackend:
        path = find_onnx_file(weights.path, spec.options.get("onnx_file"))
        model = OnnxModel.open(path, device)
        names = next((s for s in IO_SCHEMES if s.image in model.inputs), IO_SCHEMES[0])
        model.require(
            inputs=[names.image], outputs=[names.depth], backend=f"Metric3D ({names.source})",
            hint="export it with onnx/metric3d_onnx_export.py from YvanYin/Metric3D or use "
                 "onnx-community/metric3d-vit-small",
        )
        canvas = model.inputs[names.image].static_hw or tuple(spec.input_size)
        log.info("Metric3D v%s %s: canvas %s, outputs %s", spec.options.get("version"),
                 names.source, canvas, list(model.outputs))
        return cls(spec, path, weights.label, device, model, names, canvas)

    def infer_batch(
        self,
        images: Sequence[np.ndarray],
        intrinsics: Sequence[Intrinsics | None] | None = None,
    ) -> list[DepthResult]:
        """Each RGB uint8 (H, W, 3) image -> metric depth (H, W), normals (H, W, 3) if given."""
        images, known = checked_batch(images, intrinsics)
        results: list[DepthResult | None] = [None] * len(images)
        for chunk in chunks(range(len(images)), self.batch_size):
            for i, result in zip(chunk, self._run_chunk([images[i] for i in chunk],
                                                        [known[i] for i in chunk]), strict=True):
                results[i] = result
        return [r for r in results if r is not None]

    def _run_chunk(self, images: list[np.ndarray],
                   known: list[Intrinsics | None]) -> list[DepthResult]:
        t0 = time.perf_counter()
        boxes = [Letterbox.fit(im.shape[:2], self.canvas_hw) for im in images]
        batch = np.stack([_canvas_input(im, box) for im, box in zip(images, boxes, strict=True)])
        t1 = time.perf_counter()
        outs = self.model.run({self.names.image: batch}, self.outputs)
        t2 = time.perf_counter()
        n = len(images)
        depth = as_maps(outs[self.names.depth], self.canvas_hw)
        normal = outs.get(self.names.normal or "")
        kappa = outs.get(self.names.normal_confidence or "")
        normal = None if normal is None else as_vector_maps(normal, self.canvas_hw)
        kappa = None if kappa is None else as_maps(kappa, self.canvas_hw)
        results = []
        for j, (image, box) in enumerate(zip(images, boxes, strict=True)):
            t3 = time.perf_counter()
            result = self._postprocess(image, box, known[j], depth[j],
                                       None if normal is None else normal[j],
                                       None if kappa is None else kappa[j])
            result.timings_ms.update({
                "preprocess": (t1 - t0) * 1000 / n,
                "inference": (t2 - t1) * 1000 / n,
                "postprocess": (time.perf_counter() - t3) * 1000,
            })
            results.append(result)
        return results

    def _postprocess(self, image: np.ndarray, box: Letterbox, known: Intrinsics | None,
                     canonical: np.ndarray, normal: np.ndarray | None,
                     kappa: np.ndarray | None) -> DepthResult:
        h, w = image.shape[:2]
        camera, notes = self._camera(known, w, h)
        fx_network = camera.fx * box.scale  # the focal of the image the network saw
        depth = canonical_to_metric(box.to_source(canonical), fx_network)
        normals = confidence = None
        if normal is not None:
            normals = unit_normals(box.to_source(normal))
        if kappa is not None:
            confidence = kappa_to_confidence(box.to_source(kappa))
            notes.append("confidence is the surface-normal head's (from its kappa), not a depth "
                         "error estimate")
        return DepthResult(
            depth=depth.astype(np.float32), kind=self.spec.kind, intrinsics=camera,
            model=self.spec.name, weights=self.weights_label, confidence=confidence,
            normals=normals, notes=notes,
        )

    @staticmethod
    def _camera(known: Intrinsics | None, w: int, h: int) -> tuple[Intrinsics, list[str]]:
        """The camera used for de-canonicalisation, and the notes a user should read."""
        camera = known or resolve_intrinsics(w, h, default_fov_deg=get_settings().default_fov_deg)
        if not (math.isfinite(camera.fx) and camera.fx > 0):
            raise DepthwebError(f"Metric3D needs a positive focal length, got fx={camera.fx}.")
        notes = []
        if camera.source == IntrinsicsSource.ASSUMED_FOV:
            what = camera.note or f"an assumed {camera.fov_x_deg(w):.1f} deg horizontal FOV"
            notes.append(
                f"Metric3D needs the focal length: metric scale rests on {what}; pass a focal "
                f"length or field of view (or use a photo with EXIF) for true metres"
            )
        return camera, notes


def _canvas_input(image: np.ndarray, box: Letterbox) -> np.ndarray:
    """RGB uint8 (h, w, 3) -> float32 (3, H, W) in 0-255 on the mean-padded canvas."""
    resized = resize_linear(image.astype(np.float32), box.new_hw)
    return np.moveaxis(box.pad(resized, PAD_RGB), -1, 0)
