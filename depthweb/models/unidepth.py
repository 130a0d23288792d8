"""UniDepth V2: ONNX Runtime on the official export, or a thin adapter to the ``unidepth`` package.

ONNX path, following ``lpiccinelli-eth/UniDepth`` ``unidepth/models/unidepthv2/export.py`` (the
export) and ``unidepthv2.py`` / ``unidepthv2_old.py`` (``infer``: the pre/post-processing the
export leaves out), read and re-implemented here:

- inputs: ``image`` (B, 3, H, W) float32, already normalised (``rgb / 255`` then ImageNet
  mean/std), fixed H, W (default 462x616, multiples of 14; dynamic batch); the ``--with-camera``
  export adds ``K`` (B, 3, 3) in pixels of that input.
- outputs: ``out_K`` (B, 3, 3) predicted intrinsics in input pixels, ``depth`` (B, 1, H, W) metric
  z-depth (the old decoder's z-buffer depth), ``depth_ssi`` (B, 1, H, W) scale-shift-invariant
  depth (unused), ``confidence`` (B, 1, H, W) in [0, 1] (a per-image ranking, see the V2 README).
- pre-processing here: keep-aspect resize (bilinear, antialiased as the official ``_preprocess``)
  to fit the export's input, padded centred with 0 after normalisation (the mean colour, as the
  official ``infer`` pads); a known camera is mapped to the input: ``fx * sx``, ``cx * sx + left``.
- post-processing: cut the padding, resize to the original size; predicted intrinsics back to
  the original pixels ``fx / sx``, ``(cx - left) / sx`` (``sx, sy`` the exact per-axis resize
  factors), checked for plausibility (an implausible focal falls back to the assumed FOV with a
  note).

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
INPUT, CAMERA = "image", "K"
OUT_K, OUT_DEPTH, OUT_CONFIDENCE = "out_K", "depth", "confidence"
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
                 model: OnnxModel, canvas_hw: tuple[int, int]) -> None:
        super().__init__(spec, weights_path, weights_label, device)
        self.model = model
        self.canvas_hw = canvas_hw
        self.takes_camera = CAMERA in model.inputs
        self.outputs = [OUT_K, OUT_DEPTH] + ([OUT_CONFIDENCE] if OUT_CONFIDENCE in model.outputs
                                             else [])
        dynamic = model.inputs[INPUT].dynamic_batch
        self.batch_size = int(spec.options.get("batch_size", 4)) if dynamic else 1

    @classmethod
    def load(cls, spec: ModelSpec, weights: ResolvedWeights, device: str) -> DepthBackend:
        ref = package_ref(spec, weights)
        if ref is not None:
            return UniDepthPackageBackend.from_package(spec, ref, weights.label, device)
        path = find_onnx_file(weights.path, spec.options.get("onnx_file"))
        model = OnnxModel.open(path, device)
        model.require(inputs=[INPUT], outputs=[OUT_K, OUT_DEPTH], backend="UniDepth V2",
                      hint="export it with unidepth/models/unidepthv2/export.py from "
                           "lpiccinelli-eth/UniDepth")
        canvas = model.inputs[INPUT].static_hw or tuple(spec.input_size)
        return cls(spec, path, weights.label, device, model, canvas)

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
        feeds = {INPUT: np.stack([_network_input(im, b) for im, b in zip(images, boxes,
                                                                          strict=True)])}
        if self.takes_camera:
            cams = [k or _assumed(im) for k, im in zip(known, images, strict=True)]
            known = cams
            feeds[CAMERA] = np.stack([camera_matrix(k, *b.effective_scale, b.left, b.top)
                                      for k, b in zip(cams, boxes, strict=True)])
        t1 = time.perf_counter()
        outs = self.model.run(feeds, self.outputs)
        t2 = time.perf_counter()
        depth = as_maps(outs[OUT_DEPTH], self.canvas_hw)
        conf = outs.get(OUT_CONFIDENCE)
        conf = None if conf is None else as_maps(conf, self.canvas_hw)
        results = []
        for j, (image, box) in enumerate(zip(images, boxes, strict=True)):
            t3 = time.perf_counter()
            h, w = image.shape[:2]
            sx, sy = box.effective_scale
            predicted = intrinsics_from_matrix(outs[OUT_K][j], sx, sy, box.left, box.top,
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
