"""Shared helpers of the ONNX Runtime backends (Metric3D, UniDepth).

- finding the ``.onnx`` file in a weights directory,
- an ``onnxruntime.InferenceSession`` on the right execution provider,
- checking that a model has the input/output names a backend was written for (one-sentence
  :class:`~depthweb.errors.DepthwebError` naming what is missing),
- the keep-aspect "letterbox" geometry (resize to fit a fixed canvas, pad centred) that both
  families use, and the inverse mapping of predictions back to the original image.

``onnxruntime`` and ``cv2`` are imported lazily so importing this module stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depthweb.errors import DepthwebError, ModelUnavailableError

log = logging.getLogger(__name__)

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
               "tensor(double)": np.float64}


def find_onnx_file(weights_path: Path, preferred: str | None = None) -> Path:
    """The ``.onnx`` file to load: ``weights_path`` itself, ``<dir>/<preferred>``, or the only one.

    With several candidates and no ``preferred`` match, a file named ``model.onnx`` wins.
    """
    path = Path(weights_path)
    if path.is_file():
        if path.suffix != ".onnx":
            raise ModelUnavailableError(f"Weights file {path} is not an .onnx model; pass an "
                                        f"exported .onnx file or the directory holding it.")
        return path
    if not path.is_dir():
        raise ModelUnavailableError(f"Weights path {path} does not exist; pass an exported "
                                    f".onnx file or the directory holding it.")
    if preferred and (path / preferred).is_file():
        return path / preferred
    found = sorted(p for p in path.rglob("*.onnx") if p.is_file())
    if len(found) == 1:
        return found[0]
    named = [p for p in found if p.name == "model.onnx"]
    if len(named) == 1:
        return named[0]
    if not found:
        raise ModelUnavailableError(f"No .onnx file found in {path}; export the model with its "
                                    f"official script and pass the file or its directory.")
    names = ", ".join(str(p.relative_to(path)) for p in found[:5])
    raise ModelUnavailableError(f"Several .onnx files in {path} ({names}); pass the one to use.")


def providers_for(device: str) -> list[Any]:
    """Execution providers for ``device``: CUDA (with its device id) when asked for and
    available in this onnxruntime build, always with the CPU provider as the fallback."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in available:
            index = int(device.split(":", 1)[1]) if ":" in device else 0
            return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        log.warning("device %s requested but this onnxruntime has no CUDAExecutionProvider "
                    "(install onnxruntime-gpu, or onnx2torch for the torch path); running on CPU",
                    device)
    return ["CPUExecutionProvider"]


RUNTIMES = ("auto", "onnxruntime", "torch")


def runtime_for(device: str, requested: str | None = None) -> str:
    """``onnxruntime`` or ``torch``: which engine runs an ONNX backend on ``device``.

    ``requested`` (default: the ``DEPTHWEB_ONNX_RUNTIME`` setting) may force either; ``auto``
    takes ONNX Runtime on the CPU and where its CUDA provider is installed (``onnxruntime-gpu``
    on dedicated GPUs), and the onnx2torch-converted graph on CUDA otherwise (ZeroGPU, or any
    CUDA machine with the CPU ``onnxruntime``).
    """
    from depthweb.config import get_settings

    choice = requested or get_settings().onnx_runtime
    if choice not in RUNTIMES:
        raise DepthwebError(f"Unknown ONNX runtime '{choice}'; use one of {', '.join(RUNTIMES)}.")
    if choice != "auto":
        return choice
    if not device.startswith("cuda"):
        return "onnxruntime"
    import onnxruntime as ort

    from depthweb.models.onnx_torch import onnx2torch_available

    if "CUDAExecutionProvider" in ort.get_available_providers() or not onnx2torch_available():
        return "onnxruntime"
    return "torch"


def _torch_device(device: str) -> str:
    return device if device.startswith(("cuda", "cpu", "mps")) else "cpu"


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape (ints for fixed axes, str/None for dynamic ones) and numpy dtype of an I/O."""

    name: str
    shape: tuple[Any, ...]
    dtype: type

    @property
    def static_hw(self) -> tuple[int, int] | None:
        """(H, W) of an image-like (B, C, H, W) input when both are fixed, else None."""
        if len(self.shape) == 4 and all(isinstance(s, int) for s in self.shape[2:]):
            return int(self.shape[2]), int(self.shape[3])
        return None

    @property
    def dynamic_batch(self) -> bool:
        return bool(self.shape) and not isinstance(self.shape[0], int)


class OnnxModel:
    """An ``InferenceSession`` plus the names and shapes of its inputs and outputs."""

    def __init__(self, session: Any, path: Path) -> None:
        self.session = session
        self.path = path
        self.inputs = {i.name: _info(i) for i in session.get_inputs()}
        self.outputs = {o.name: _info(o) for o in session.get_outputs()}

    @classmethod
    def open(cls, path: Path, device: str, runtime: str | None = None) -> OnnxModel:
        """Open ``path`` on ``device`` with ONNX Runtime or, per :func:`runtime_for`, as torch."""
        if runtime_for(device, runtime) == "torch":
            from depthweb.models.onnx_torch import TorchGraph

            graph = TorchGraph.convert(path, _torch_device(device))
            log.info("onnx graph %s converted to torch on %s", path, graph.device)
            return cls(graph, path)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only; our logger says what matters
        try:
            session = ort.InferenceSession(str(path), sess_options=options,
                                           providers=providers_for(device))
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ModelUnavailableError(
                f"Cannot load ONNX model {path} ({type(exc).__name__}); re-export it or pass "
                f"another file."
            ) from exc
        log.info("onnx session for %s on %s", path, session.get_providers()[0])
        return cls(session, path)

    @property
    def runtime(self) -> str:
        """Where it runs: ``CPUExecutionProvider``, ``CUDAExecutionProvider`` or ``torch:cuda``."""
        return str(self.session.get_providers()[0])

    def require(self, *, inputs: Iterable[str], outputs: Iterable[str], backend: str,
                hint: str = "") -> None:
        """Raise one sentence naming the inputs/outputs ``backend`` needs that the model lacks."""
        missing_in = [n for n in inputs if n not in self.inputs]
        missing_out = [n for n in outputs if n not in self.outputs]
        if not (missing_in or missing_out):
            return
        parts = []
        if missing_in:
            parts.append("input" + ("s " if len(missing_in) > 1 else " ") + _quoted(missing_in))
        if missing_out:
            parts.append("output" + ("s " if len(missing_out) > 1 else " ")
                         + _quoted(missing_out))
        has = _quoted([*self.inputs, *self.outputs])
        tail = f"; {hint}" if hint else ""
        raise DepthwebError(
            f"The ONNX model {self.path.name} lacks the {' and '.join(parts)} that the {backend} "
            f"backend expects (it has {has}){tail}."
        )

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run with inputs cast to the model's dtypes; outputs come back as float32 arrays."""
        cast = {k: np.ascontiguousarray(v, dtype=self.inputs[k].dtype) for k, v in feeds.items()}
        values = self.session.run(list(outputs), cast)
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(outputs, values, strict=True)}


def _info(node: Any) -> TensorInfo:
    return TensorInfo(node.name, tuple(node.shape), _ORT_DTYPES.get(node.type, np.float32))


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


@dataclass(frozen=True)
class Letterbox:
    """Keep-aspect resize of an (h, w) image to fit a (H, W) canvas, padded centred.

    ``scale = min(H / h, W / w)``; the resized image is ``(int(h * scale), int(w * scale))``;
    ``top = pad_h // 2``, ``left = pad_w // 2`` (the Metric3D hub example's rule).
    """

    src_hw: tuple[int, int]
    canvas_hw: tuple[int, int]
    scale: float
    new_hw: tuple[int, int]
    top: int
    left: int

    @classmethod
    def fit(cls, src_hw: tuple[int, int], canvas_hw: tuple[int, int]) -> Letterbox:
        h, w = src_hw
        ch, cw = canvas_hw
        scale = min(ch / h, cw / w)
        nh, nw = min(ch, max(1, int(h * scale))), min(cw, max(1, int(w * scale)))
        return cls((h, w), (ch, cw), scale, (nh, nw), (ch - nh) // 2, (cw - nw) // 2)

    @property
    def effective_scale(self) -> tuple[float, float]:
        """(sx, sy): the exact per-axis resize factors of the integer-sized resized image."""
        return self.new_hw[1] / self.src_hw[1], self.new_hw[0] / self.src_hw[0]

    def pad(self, resized: np.ndarray, value: Sequence[float]) -> np.ndarray:
        """(nh, nw, C) resized image -> (H, W, C) canvas filled with ``value`` around it."""
        ch, cw = self.canvas_hw
        out = np.empty((ch, cw, resized.shape[2]), dtype=np.float32)
        out[...] = np.asarray(value, dtype=np.float32)
        nh, nw = self.new_hw
        out[self.top:self.top + nh, self.left:self.left + nw] = resized
        return out

    def unpad(self, canvas: np.ndarray) -> np.ndarray:
        """(..., H, W) prediction on the canvas -> (..., nh, nw) over the resized image."""
        nh, nw = self.new_hw
        return canvas[..., self.top:self.top + nh, self.left:self.left + nw]

    def to_source(self, canvas: np.ndarray) -> np.ndarray:
        """(H, W) or (C, H, W) canvas prediction -> (h, w) or (h, w, C) at the source size."""
        crop = self.unpad(canvas)
        if crop.ndim == 3:
            crop = np.moveaxis(crop, 0, -1)
        return resize_linear(crop, self.src_hw)


def resize_linear(array: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear (OpenCV ``INTER_LINEAR``, half-pixel centres) resize of (h, w[, C]) float32."""
    import cv2

    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.shape[:2] == tuple(size_hw):
        return array.copy()
    out = cv2.resize(array, (int(size_hw[1]), int(size_hw[0])), interpolation=cv2.INTER_LINEAR)
    if array.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis
        out = out[..., None]
    return out


def as_maps(array: np.ndarray, canvas_hw: tuple[int, int]) -> np.ndarray:
    """A (B, H, W) or (B, 1, H, W) network output -> (B, H, W) at the canvas size.

    Exports differ on whether a single-channel map keeps its channel axis; outputs at a lower
    resolution than the input are resized bilinearly to the canvas before unpadding.
    """
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise DepthwebError(f"Unexpected ONNX output shape {array.shape}; expected a (B, H, W) "
                            f"or (B, 1, H, W) map.")
    if array.shape[1:] != tuple(canvas_hw):
        array = np.stack([resize_linear(a, canvas_hw) for a in array])
    return array


def as_vector_maps(array: np.ndarray, canvas_hw: tuple[int, int]) -> np.ndarray:
    """A (B, C, H, W) network output -> (B, C, H, W) at the canvas size."""
    if array.ndim != 4:
        raise DepthwebError(f"Unexpected ONNX output shape {array.shape}; expected (B, C, H, W).")
    if array.shape[2:] != tuple(canvas_hw):
        array = np.stack([np.moveaxis(resize_linear(np.moveaxis(a, 0, -1), canvas_hw), -1, 0)
                          for a in array])
    return array


def chunks(indices: Sequence[int], size: int) -> list[list[int]]:
    """``indices`` split into runs of at most ``size``."""
    size = max(1, size)
    return [list(indices[i:i + size]) for i in range(0, len(indices), size)]
