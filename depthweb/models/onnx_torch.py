"""ONNX graphs converted to torch modules (``onnx2torch``), for the GPUs ONNX Runtime cannot use.

ZeroGPU lends its GPU to torch only, and ``onnxruntime-gpu`` cannot sit beside the CPU
``onnxruntime`` that ``requirements.txt`` installs; so on CUDA the Metric3D and UniDepth exports
are converted to a ``torch.fx.GraphModule`` and run there. :class:`TorchGraph` is called like an
``onnxruntime.InferenceSession`` (``get_inputs``, ``get_outputs``, ``run``, ``get_providers``),
so :class:`~depthweb.models.onnx_utils.OnnxModel` runs either without knowing which.

``onnx2torch`` imports ``torchvision`` for its NMS and RoIAlign converters only. Where
torchvision is absent (this project never installs it next to a CPU torch wheel), a stand-in is
put in place for that import alone: graphs with those ops then fail with one sentence. Depth
exports do not use them.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depthweb.errors import ModelUnavailableError

_IMPORT_LOCK = threading.Lock()
# onnx TensorProto element types -> onnxruntime's type strings (what OnnxModel reads)
_ELEM_TYPES = {1: "tensor(float)", 10: "tensor(float16)", 11: "tensor(double)",
               6: "tensor(int32)", 7: "tensor(int64)", 9: "tensor(bool)", 2: "tensor(uint8)"}


def onnx2torch_available() -> bool:
    """Whether the converter is installed (``requirements.txt`` on 3.10; ``--no-deps`` here)."""
    return importlib.util.find_spec("onnx2torch") is not None


def _needs_torchvision(*_args: Any, **_kwargs: Any) -> Any:
    raise ModelUnavailableError("This ONNX graph uses NMS or RoIAlign, which the torch path "
                                "runs with torchvision; run it with ONNX Runtime instead.")


def import_onnx2torch() -> types.ModuleType:
    """``import onnx2torch``, with a stand-in ``torchvision`` during the import when absent."""
    with _IMPORT_LOCK:
        if "onnx2torch" in sys.modules:
            return sys.modules["onnx2torch"]
        stand_in = importlib.util.find_spec("torchvision") is None
        if stand_in:
            vision, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
            ops.nms = ops.roi_align = ops.box_convert = _needs_torchvision
            vision.ops = ops
            sys.modules.update({"torchvision": vision, "torchvision.ops": ops})
        try:
            import onnx2torch
        except ImportError as exc:
            raise ModelUnavailableError(
                "The torch path of the ONNX backends needs onnx2torch; install it with "
                "`pip install --no-deps onnx2torch` or run on the CPU with ONNX Runtime."
            ) from exc
        finally:
            if stand_in:  # other libraries probe for torchvision: leave no trace of the stand-in
                sys.modules.pop("torchvision", None)
                sys.modules.pop("torchvision.ops", None)
        return onnx2torch


@dataclass(frozen=True)
class GraphArg:
    """An input or output as ``onnxruntime.NodeArg`` describes it: name, shape, type string."""

    name: str
    shape: list[Any]
    type: str


def _graph_args(values: Any, skip: set[str]) -> list[GraphArg]:
    args = []
    for value in values:
        if value.name in skip:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in tensor.shape.dim]
        args.append(GraphArg(value.name, dims, _ELEM_TYPES.get(tensor.elem_type, "tensor(float)")))
    return args


class TorchGraph:
    """An ONNX file converted to torch on ``device``, with the session calls OnnxModel uses."""

    def __init__(self, module: Any, inputs: list[GraphArg], outputs: list[GraphArg],
                 device: str) -> None:
        self.module = module
        self.device = device
        self._inputs = inputs
        self._outputs = outputs

    @classmethod
    def convert(cls, path: Path, device: str) -> TorchGraph:
        """Load ``path`` with onnx, convert it with onnx2torch and move it to ``device``."""
        import onnx

        convert = import_onnx2torch().convert
        proto = onnx.load(str(path))
        initialisers = {t.name for t in proto.graph.initializer}
        inputs = _graph_args(proto.graph.input, initialisers)
        outputs = _graph_args(proto.graph.output, set())
        try:
            module = convert(proto)
        except (NotImplementedError, KeyError, ValueError, RuntimeError) as exc:
            raise ModelUnavailableError(
                f"onnx2torch cannot convert {Path(path).name} ({exc}); run it with ONNX Runtime "
                f"(DEPTHWEB_ONNX_RUNTIME=onnxruntime)."
            ) from exc
        return cls(module.to(device).eval(), inputs, outputs, device)

    def get_inputs(self) -> list[GraphArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[GraphArg]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return [f"torch:{self.device}"]

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Like ``InferenceSession.run``: named (B, ...) numpy inputs -> the named outputs."""
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feeds[i.name])).to(self.device)
                for i in self._inputs]
        with torch.inference_mode():
            values = self.module(*args)
        if isinstance(values, torch.Tensor):
            values = (values,)
        by_name = {o.name: v for o, v in zip(self._outputs, values, strict=True)}
        return [by_name[n].detach().float().cpu().numpy() for n in output_names]
