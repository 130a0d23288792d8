"""UniDepth V2: ONNX Runtime on the official export, or a thin adapter to the ``unidepth`` package.

ONNX path, following ``lpiccinelli-eth/UniDepth`` ``unidepth/models/unidepthv2/export.py`` (the
export) and ``unidepthv2.py`` (``infer``: the pre/post-processing the export leaves out), read and
re-implemented here. Two generations of that script write different names (:data:`EXPORTS`):

- current: input ``rgbs`` (B, 3, H, W) float32, already normalised (``rgb / 255`` then ImageNet
  mean/std), fixed H, W (default 462x630, multiples of 14; dynamic batch); ``--with-camera`` adds
  ``rays`` (B, 3, H, W): unit viewing rays through the pixel centres ``(u + 0.5, v + 0.5)`` of
  that input. Outputs ``pts_3d`` (B, 3, H, W) camera-frame points in metres (depth is the z
  channel), ``confidence`` (B, 1, H, W) and ``intrinsics`` (B, 3, 3) in input pixels.
- 2024: input ``image`` (same layout; default 462x616) [+ ``K`` (B, 3, 3)]; outputs ``out_K``
  (B, 3, 3), ``depth`` (B, 1, H, W) metric z-depth, ``depth_ssi`` (unused), ``confidence``.
- pre-processing here: keep-aspect resize (bilinear, antialiased as the official ``_preprocess``)
  to fit the export's input, padded centred with 0 after normalisation (the mean colour, as the
  official ``infer`` pads); a known camera is mapped to the input: ``fx * sx``, ``cx * sx + left``
  (and turned into rays for the current export).
- post-processing: cut the padding, resize to the original size; predicted intrinsics back to
  the original pixels ``fx / sx``, ``(cx - left) / sx`` (``sx, sy`` the exact per-axis resize
  factors), checked for plausibility (an implausible focal falls back to the assumed FOV with a
  note). Confidence (a per-image ranking, see the V2 README) is clipped to [0, 1].

Package path: ``from unidepth.models import UniDepthV2``; ``UniDepthV2.from_pretrained(id)``;
``model.infer(rgb (3, H, W) uint8 tensor, camera (3, 3) tensor or None)`` returning a dict with
``depth`` (B, 1, H, W), ``intrinsics`` (B, 3, 3) and ``confidence`` (B, 1, H, W) at the input
resolution (the README usage). Selected by weights ``package:<hub id or dir>`` or the spec option
``runtime: package`` (then ``package_id``). The package is optional (not on PyPI).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depthweb.config import get_settings
from depthweb.errors import ModelUnavailableError
from depthweb.geometry.intrinsics import checked_prediction, resolve_intrinsics
from depthweb.models.base import DepthBackend, check_rgb, checked_batch
from depthweb.models.loading import ResolvedWeights
from depthweb.models.onnx_utils import Letterbox, OnnxModel, as_maps, chunks, find_onnx_file
from depthweb.models.specs import ModelSpec
from depthweb.types import DepthResult, Intrinsics, IntrinsicsSource

log = logging.getLogger(__name__)

PACKAGE_PREFIX = "package:"


@dataclass(frozen=True)
class ExportIO:
    """The input/output names of one generation of the official ONNX export."""

    name: str
    image: str
    camera: str  # optional input: a K matrix or unit rays
    out_k: str
    out_depth: str  # (B, 1, H, W) depth, or (B, 3, H, W) points whose z channel is the depth
    confidence: str = "confidence"

    @property
    def camera_as_rays(self) -> bool:
        return self.camera == "rays"

    @property
    def depth_from_points(self) -> bool:
        return self.out_depth == "pts_3d"


EXPORTS = (
    ExportIO("current export", "rgbs", "rays", "intrinsics", "pts_3d"),
    ExportIO("2024 export", "image", "K", "out_K", "depth"),
)
_FIXED_SOURCES = (IntrinsicsSource.USER, IntrinsicsSource.EXIF, IntrinsicsSource.CALIB)


def package_ref(spec: ModelSpec, weights: ResolvedWeights) -> str | None:
    """The ``unidepth`` package model to load (hub id or dir), or None for the ONNX path."""
    for candidate in (weights.label, str(weights.path)):
        if candidate.startswith(PACKAGE_PREFIX):
            return candidate[len(PACKAGE_PREFIX):] or spec.options.get("package_id")
    if spec.options.get("runtime") == "package":
        return spec.options.get("package_id") or str(weights.path)
    return None


def camera_matrix(k: Intrinsics, sx: float = 1.0, sy: float = 1.0, left: float = 0.0,
                  top: float = 0.0) -> np.ndarray:
    """3x3 K of ``k`` seen in an image resized by (sx, sy) and shifted by (left, top)."""
    return np.array([[k.fx * sx, 0.0, k.cx * sx + left], [0.0, k.fy * sy, k.cy * sy + top],
                     [0.0, 0.0, 1.0]], dtype=np.float32)


def intrinsics_from_matrix(m: np.ndarray, sx: float = 1.0, sy: float = 1.0, left: float = 0.0,
                           top: float = 0.0, note: str = "") -> Intrinsics:
    """Inverse of :func:`camera_matrix`: K in network pixels -> predicted original-pixel camera."""
    return Intrinsics(float(m[0, 0]) / sx, float(m[1, 1]) / sy, (float(m[0, 2]) - left) / sx,
                      (float(m[1, 2]) - top) / sy, IntrinsicsSource.PREDICTED, note)


def choose_camera(predicted: Intrinsics, known: Intrinsics | None, w: int, h: int,
                  used_known: bool) -> tuple[Intrinsics, list[str]]:
    """Reported intrinsics: the fixed known camera, else the checked prediction; plus notes."""
    if known is not None and (used_known or known.source in _FIXED_SOURCES):
        notes = []
        if not used_known:
            notes.append(f"this UniDepth model took no camera input, so depth comes from its own "
                         f"predicted camera (fx={predicted.fx:.1f} px); the intrinsics reported "
                         f"are the given {known.source} ones")
        elif known.source == IntrinsicsSource.ASSUMED_FOV:
            notes.append(f"UniDepth was given an assumed camera ({known.note}); metric scale "
                         f"rests on it")
        return known, notes
    checked, note = checked_prediction(predicted, w, h, get_settings().default_fov_deg)
    return checked, [note] if note else []


class UniDepthBackend(DepthBackend):
    """UniDepth V2 on an ONNX export made with the official script (``load`` may instead return
    a :class:`UniDepthPackageBackend` when the package path is selected)."""

    def __init__(self, spec: ModelSpec, weights_path: Path, weights_label: str, device: str,
                 model: OnnxModel, canvas_hw: tuple[int, int], io: ExportIO = EXPORTS[1]) -> None:
        super().__init__(spec, weights_path, weights_label, device)
        self.model = model
        self.canvas_hw = canvas_hw
        self.io = io
        self.takes_camera = io.camera in model.inputs
        self.outputs = [io.out_k, io.out_depth] + ([io.confidence]
                                                   if io.confidence in model.outputs else [])
        dynamic = model.inputs[io.image].dynamic_batch
        self.batch_size = int(spec.options.get("batch_size", 4)) if dynamic else 1

    @classmethod
    def load(cls, spec: ModelSpec, weights: ResolvedWeights, device: str) -> DepthBackend:
        ref = package_ref(spec, weights)
        if ref is not None:
            return UniDepthPackageBackend.from_package(spec, ref, weights.label, device)
        path = find_onnx_file(weights.path, spec.options.get("onnx_file"))
        model = OnnxModel.open(path, device)
        io = next((e for e in EXPORTS if e.image in model.inputs), EXPORTS[0])
        model.require(inputs=[io.image], outputs=[io.out_k, io.out_depth],
                      backend=f"UniDepth V2 ({io.name})",
                      hint="export it with unidepth/models/unidepthv2/export.py from "
                           "lpiccinelli-eth/UniDepth (current or 2024 version)")
        canvas = model.inputs[io.image].static_hw or tuple(spec.input_size)
        return cls(spec, path, weights.label, device, model, canvas, io)

    def infer_batch(
        self,
        images: Sequence[np.ndarray],
        intrinsics: Sequence[Intrinsics | None] | None = None,
    ) -> list[DepthResult]:
        """Each RGB uint8 (H, W, 3) image -> metric z-depth (H, W), intrinsics, confidence."""
        images, known = checked_batch(images, intrinsics)
        results: list[DepthResult] = []
        for chunk in chunks(range(len(images)), self.batch_size):
            results.extend(self._run_chunk([images[i] for i in chunk], [known[i] for i in chunk]))
        return results

    def _run_chunk(self, images: list[np.ndarray],
                   known: list[Intrinsics | None]) -> list[DepthResult]:
        t0 = time.perf_counter()
        boxes = [Letterbox.fit(im.shape[:2], self.canvas_hw) for im in images]
        io = self.io
        feeds = {io.image: np.stack([_network_input(im, b)
                                     for im, b in zip(images, boxes, strict=True)])}
        if self.takes_camera:
            known = [k or _assumed(im) for k, im in zip(known, images, strict=True)]
            mats = [camera_matrix(k, *b.effective_scale, b.left, b.top)
                    for k, b in zip(known, boxes, strict=True)]
            feeds[io.camera] = np.stack([unit_rays(m, self.canvas_hw) if io.camera_as_rays
                                         else m for m in mats])
        t1 = time.perf_counter()
        outs = self.model.run(feeds, self.outputs)
        t2 = time.perf_counter()
        raw = outs[io.out_depth]
        depth = as_maps(raw[:, 2] if io.depth_from_points else raw, self.canvas_hw)
        conf = outs.get(io.confidence)
        conf = None if conf is None else as_maps(conf, self.canvas_hw)
        results = []
        for j, (image, box) in enumerate(zip(images, boxes, strict=True)):
            t3 = time.perf_counter()
            h, w = image.shape[:2]
            sx, sy = box.effective_scale
            predicted = intrinsics_from_matrix(outs[io.out_k][j], sx, sy, box.left, box.top,
                                               note="predicted by UniDepth V2")
            camera, notes = choose_camera(predicted, known[j], w, h, self.takes_camera)
            confidence = None if conf is None else np.clip(box.to_source(conf[j]), 0.0, 1.0)
            result = DepthResult(
                depth=np.maximum(box.to_source(depth[j]), 0.0), kind=self.spec.kind,
                intrinsics=camera, model=self.spec.name, weights=self.weights_label,
                confidence=confidence, notes=notes,
            )
            result.timings_ms.update({
                "preprocess": (t1 - t0) * 1000 / len(images),
                "inference": (t2 - t1) * 1000 / len(images),
                "postprocess": (time.perf_counter() - t3) * 1000,
            })
            results.append(result)
        return results


def unit_rays(k: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(3, H, W) float32 unit viewing rays of the 3x3 pinhole ``k`` through the pixel centres
    ``(u + 0.5, v + 0.5)``: the ``rays`` input of the current UniDepth export."""
    h, w = hw
    u = (np.arange(w, dtype=np.float64) + 0.5 - k[0, 2]) / k[0, 0]
    v = (np.arange(h, dtype=np.float64) + 0.5 - k[1, 2]) / k[1, 1]
    rays = np.stack([np.broadcast_to(u[None], (h, w)), np.broadcast_to(v[:, None], (h, w)),
                     np.ones((h, w))])
    return (rays / np.linalg.norm(rays, axis=0, keepdims=True)).astype(np.float32)


def _assumed(image: np.ndarray) -> Intrinsics:
    h, w = image.shape[:2]
    return resolve_intrinsics(w, h, default_fov_deg=get_settings().default_fov_deg)


def _network_input(image: np.ndarray, box: Letterbox) -> np.ndarray:
    """RGB uint8 (h, w, 3) -> normalised float32 (3, H, W), resized to fit and zero-padded.

    Resizing (bilinear, antialiased) and the per-channel normalisation commute, so the
    normalisation runs on the smaller resized image.
    """
    import torch

    from depthweb.models.torch_utils import IMAGENET_MEAN, IMAGENET_STD, resize

    x = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]
    resized = resize(x, box.new_hw, mode="bilinear")[0].permute(1, 2, 0).numpy()
    resized = (resized / 255.0 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    return np.moveaxis(box.pad(resized, (0.0, 0.0, 0.0)), -1, 0)


class UniDepthPackageBackend(DepthBackend):
    """Thin adapter to the official ``unidepth`` package (``UniDepthV2.infer``)."""

    def __init__(self, spec: ModelSpec, weights_path: Path, weights_label: str, device: str,
                 model: Any) -> None:
        super().__init__(spec, weights_path, weights_label, device)
        self.model = model

    @classmethod
    def load(cls, spec: ModelSpec, weights: ResolvedWeights, device: str) -> DepthBackend:
        ref = package_ref(spec, weights) or spec.options.get("package_id") or str(weights.path)
        return cls.from_package(spec, ref, weights.label, device)

    @classmethod
    def from_package(cls, spec: ModelSpec, ref: str, label: str,
                     device: str) -> UniDepthPackageBackend:
        try:
            from unidepth.models import UniDepthV2
        except ImportError as exc:
            raise ModelUnavailableError(
                f"Model '{spec.name}' asks for the unidepth package, which is not installed; "
                f"install it with `pip install git+https://github.com/lpiccinelli-eth/UniDepth` "
                f"or use an ONNX export instead."
            ) from exc
        model = UniDepthV2.from_pretrained(ref).to(device).eval()
        if "resolution_level" in spec.options:
            model.resolution_level = int(spec.options["resolution_level"])
        label = label if label.startswith(PACKAGE_PREFIX) else f"{PACKAGE_PREFIX}{ref}"
        return cls(spec, Path(ref), label, device, model)

    def infer_batch(
        self,
        images: Sequence[np.ndarray],
        intrinsics: Sequence[Intrinsics | None] | None = None,
    ) -> list[DepthResult]:
        """One ``model.infer`` call per image (the package resizes each image itself)."""
        known = list(intrinsics) if intrinsics is not None else [None] * len(images)
        return [self._infer_one(im, k) for im, k in zip(images, known, strict=True)]

    def _infer_one(self, image: np.ndarray, known: Intrinsics | None) -> DepthResult:
        import torch

        check_rgb(image)
        h, w = image.shape[:2]
        use_known = known is not None and known.source in _FIXED_SOURCES
        t0 = time.perf_counter()
        rgb = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).to(self.device)
        camera = torch.from_numpy(camera_matrix(known)).to(self.device) if use_known else None
        with torch.inference_mode():
            out = self.model.infer(rgb, camera)
        depth = out["depth"].float().reshape(h, w).cpu().numpy()
        matrix = out["intrinsics"].float().reshape(3, 3).cpu().numpy()
        conf = out.get("confidence")
        conf = None if conf is None else np.clip(conf.float().reshape(h, w).cpu().numpy(), 0, 1)
        predicted = intrinsics_from_matrix(matrix, note="predicted by UniDepth V2")
        camera_out, notes = choose_camera(predicted, known, w, h, use_known)
        return DepthResult(
            depth=np.maximum(depth, 0.0), kind=self.spec.kind, intrinsics=camera_out,
            model=self.spec.name, weights=self.weights_label, confidence=conf, notes=notes,
            timings_ms={"inference": (time.perf_counter() - t0) * 1000},
        )
