"""Typed results: what a depth prediction means, not only its numbers.

Every backend returns a :class:`DepthResult`; nothing leaves a backend without its ``kind``,
its unit and intrinsics that say where they came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from depthweb.compat import StrEnum


class DepthKind(StrEnum):
    """What the values of a depth map mean."""

    METRIC_DEPTH = "metric_depth"  # metres along the optical axis
    RELATIVE_DEPTH = "relative_depth"  # affine-invariant depth (unknown scale and shift)
    RELATIVE_DISPARITY = "relative_disparity"  # affine-invariant inverse depth

    @property
    def is_metric(self) -> bool:
        return self is DepthKind.METRIC_DEPTH

    @property
    def unit(self) -> str:
        return "m" if self is DepthKind.METRIC_DEPTH else "relative"


class IntrinsicsSource(StrEnum):
    """Where a focal length and principal point came from."""

    USER = "user"
    EXIF = "exif"
    PREDICTED = "predicted"
    CALIB = "calib"
    ASSUMED_FOV = "assumed_fov"


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of the image they describe.

    ``note`` says more about the source, e.g. "assumed 60.0 deg horizontal FOV".
    """

    fx: float
    fy: float
    cx: float
    cy: float
    source: IntrinsicsSource
    note: str = ""

    @classmethod
    def from_fov(
        cls,
        width: int,
        height: int,
        fov_deg: float,
        source: IntrinsicsSource = IntrinsicsSource.ASSUMED_FOV,
        note: str | None = None,
    ) -> Intrinsics:
        """Square pixels, centred principal point, ``fov_deg`` across the image width."""
        f = 0.5 * width / math.tan(math.radians(fov_deg) / 2.0)
        if note is None:
            note = f"assumed {fov_deg:.1f} deg horizontal FOV" if source == "assumed_fov" else ""
        return cls(f, f, width / 2.0, height / 2.0, IntrinsicsSource(source), note)

    @classmethod
    def from_focal(
        cls, width: int, height: int, focal_px: float, source: IntrinsicsSource, note: str = ""
    ) -> Intrinsics:
        return cls(focal_px, focal_px, width / 2.0, height / 2.0, IntrinsicsSource(source), note)

    def scaled(self, sx: float, sy: float | None = None) -> Intrinsics:
        """The same camera seen at an image resized by ``sx`` (and ``sy``)."""
        sy = sx if sy is None else sy
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy)

    def fov_x_deg(self, width: int) -> float:
        return math.degrees(2.0 * math.atan(0.5 * width / self.fx))

    def fov_y_deg(self, height: int) -> float:
        return math.degrees(2.0 * math.atan(0.5 * height / self.fy))

    def matrix(self) -> np.ndarray:
        return np.array(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64
        )

    def as_dict(self) -> dict:
        out = {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
               "source": str(self.source)}
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class DepthResult:
    """One prediction.

    Shapes: ``depth`` float32 (H, W), NaN where invalid; ``confidence`` float32 (H, W) in [0, 1]
    where given; ``normals`` float32 (H, W, 3), unit vectors in the camera frame (x right, y down,
    z forward). Intrinsics are in pixels of ``depth``'s resolution.
    """

    depth: np.ndarray
    kind: DepthKind
    intrinsics: Intrinsics
    model: str
    weights: str = ""
    confidence: np.ndarray | None = None
    normals: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kind = DepthKind(self.kind)
        if self.depth.ndim != 2:
            raise ValueError(f"depth must be (H, W), got shape {self.depth.shape}")
        self.depth = np.asarray(self.depth, dtype=np.float32)

    @property
    def unit(self) -> str:
        return self.kind.unit

    @property
    def height(self) -> int:
        return int(self.depth.shape[0])

    @property
    def width(self) -> int:
        return int(self.depth.shape[1])

    @property
    def valid_mask(self) -> np.ndarray:
        """Finite pixels; for metric and relative depth also strictly positive ones."""
        m = np.isfinite(self.depth)
        if self.kind is not DepthKind.RELATIVE_DISPARITY:
            m &= self.depth > 0
        return m

    @property
    def valid_fraction(self) -> float:
        return float(self.valid_mask.mean()) if self.depth.size else 0.0

    @property
    def fov_deg(self) -> tuple[float, float]:
        """Horizontal and vertical field of view, degrees."""
        return self.intrinsics.fov_x_deg(self.width), self.intrinsics.fov_y_deg(self.height)

    def depth_range(self) -> tuple[float, float] | None:
        v = self.depth[self.valid_mask]
        return (float(v.min()), float(v.max())) if v.size else None

    def metadata(self) -> dict:
        """JSON-ready description (everything but the arrays)."""
        rng = self.depth_range()
        fx_deg, fy_deg = self.fov_deg
        return {
            "model": self.model,
            "weights": self.weights,
            "kind": str(self.kind),
            "unit": self.unit,
            "height": self.height,
            "width": self.width,
            "intrinsics": self.intrinsics.as_dict(),
            "fov_deg": {"horizontal": round(fx_deg, 3), "vertical": round(fy_deg, 3)},
            "valid_fraction": round(self.valid_fraction, 6),
            "depth_range": None if rng is None else {"min": rng[0], "max": rng[1]},
            "has_confidence": self.confidence is not None,
            "has_normals": self.normals is not None,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "notes": list(self.notes),
        }
