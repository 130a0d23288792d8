"""Two-camera calibrations for rectification: OpenCV FileStorage YAML and KITTI calib files.

Schema (the README's "Stereo" section names it):

- **OpenCV FileStorage** (``.yaml``/``.yml``/``.xml``, what ``cv2.stereoCalibrate`` users save):
  ``K1``, ``K2`` 3x3 camera matrices (pixels); ``D1``, ``D2`` distortion (4, 5, 8, 12 or 14
  values, OpenCV order; may be omitted for none); ``R`` 3x3 and ``T`` 3 values: a point ``X1`` in
  the left camera's frame is ``R @ X1 + T`` in the right camera's (``cv2.stereoCalibrate``'s
  convention); ``T`` in **metres**. Optional ``width``/``height`` (or ``image_width``/
  ``image_height``): the image size the calibration is for. Matrices as ``!!opencv-matrix`` or as
  plain lists.
- **KITTI** ``calib_cam_to_cam.txt``: ``K_0i``, ``D_0i``, ``R_0i``, ``T_0i`` (metres), ``S_0i``
  per camera, all relative to camera 00; the colour pair 02 (left) / 03 (right) is used.

Every malformed file gets one sentence that names the file and the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from depthweb.errors import InputError

DIST_LENGTHS = (0, 4, 5, 8, 12, 14)


@dataclass(frozen=True)
class RigCalib:
    """A calibrated, unrectified two-camera rig (OpenCV conventions, see the module docstring).

    ``k1``/``k2`` (3, 3) pixels; ``d1``/``d2`` (N,) distortion; ``r`` (3, 3), ``t`` (3,) metres
    (left-camera point -> right-camera point); ``width``/``height``: image size, when stated.
    """

    k1: np.ndarray
    d1: np.ndarray
    k2: np.ndarray
    d2: np.ndarray
    r: np.ndarray
    t: np.ndarray
    width: int | None = None
    height: int | None = None
    name: str = "calibration"

    @property
    def baseline_m(self) -> float:
        """Distance between the camera centres, metres."""
        return float(np.linalg.norm(self.t))

    def check_size(self, width: int, height: int) -> None:
        """Refuse a pair whose size is not the calibration's."""
        if self.width and self.height and (self.width, self.height) != (width, height):
            raise InputError(f"{self.name} describes {self.width}x{self.height} images but the "
                             f"pair is {width}x{height}: use the calibration made for this "
                             "resolution.")


def looks_like_rig(text: str, suffix: str = "") -> bool:
    """True for an OpenCV FileStorage or KITTI calib text (else: Middlebury ``calib.txt``)."""
    head = text.lstrip()[:200]
    return (suffix.lower() in {".yaml", ".yml", ".xml"} or head.startswith(("%YAML", "<?xml"))
            or "<opencv_storage>" in head or _is_kitti(text))


def _is_kitti(text: str) -> bool:
    return "K_02:" in text and "T_03:" in text


def load_rig(path: str | Path) -> RigCalib:
    """Parse an OpenCV FileStorage YAML/XML or a KITTI ``calib_cam_to_cam.txt`` (see module)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path.name} cannot be read: {exc.strerror or exc}.") from exc
    if _is_kitti(text):
        return _from_kitti(text, path.name)
    return _from_filestorage(text, path.name)


def _matrix(values, fname: str, key: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        m = np.asarray(values, dtype=np.float64).reshape(shape)
    except (TypeError, ValueError):
        size = "x".join(map(str, shape))
        raise InputError(f"{fname}: {key} must hold {size} numbers.") from None
    if not np.isfinite(m).all():
        raise InputError(f"{fname}: {key} holds a value that is not a finite number.")
    return m


def _camera(values, fname: str, key: str) -> np.ndarray:
    k = _matrix(values, fname, key, (3, 3))
    if not (k[0, 0] > 0 and k[1, 1] > 0) or not np.allclose(k[2], [0, 0, 1]):
        raise InputError(f"{fname}: {key} is not a camera matrix [fx 0 cx; 0 fy cy; 0 0 1] "
                         "with positive focal lengths.")
    return k


def _distortion(values, fname: str, key: str) -> np.ndarray:
    d = _matrix([] if values is None else values, fname, key, (-1,))
    if d.size not in DIST_LENGTHS:
        raise InputError(f"{fname}: {key} has {d.size} distortion values; OpenCV takes 4, 5, 8, "
                         "12 or 14.")
    if np.abs(d).max(initial=0.0) > 1e3:
        raise InputError(f"{fname}: {key} holds absurd distortion values (over 1000).")
    return d


def _rotation(values, fname: str, key: str) -> np.ndarray:
    r = _matrix(values, fname, key, (3, 3))
    if not (np.allclose(r @ r.T, np.eye(3), atol=1e-3) and np.linalg.det(r) > 0):
        raise InputError(f"{fname}: {key} is not a rotation matrix (orthonormal, determinant 1).")
    return r


def _translation(values, fname: str, key: str) -> np.ndarray:
    t = _matrix(values, fname, key, (3,))
    norm = float(np.linalg.norm(t))
    if not 1e-6 < norm < 1e3:
        raise InputError(f"{fname}: {key} (the camera offset, metres) must have a length between "
                         f"1 micrometre and 1 km, got {norm:.6g}.")
    return t


def _size(w, h, fname: str) -> tuple[int | None, int | None]:
    if w is None or h is None:
        return None, None
    if not all(isinstance(v, float) and math.isfinite(v) and 0 < v <= 1_000_000 for v in (w, h)):
        raise InputError(f"{fname}: the image size {w}x{h} is not a whole number of pixels.")
    return round(w), round(h)


def _build(fname: str, get) -> RigCalib:
    k1, k2 = _camera(get("K1"), fname, "K1"), _camera(get("K2"), fname, "K2")
    d1 = _distortion(get("D1", required=False), fname, "D1")
    d2 = _distortion(get("D2", required=False), fname, "D2")
    r, t = _rotation(get("R"), fname, "R"), _translation(get("T"), fname, "T")
    width, height = _size(get("width", required=False), get("height", required=False), fname)
    return RigCalib(k1, d1, k2, d2, r, t, width, height, fname)


def _from_filestorage(text: str, fname: str) -> RigCalib:
    if "\x00" in text:
        raise InputError(f"{fname} is not a calibration file (it holds binary data).")
    if not text.strip():
        raise InputError(f"{fname} is not a readable OpenCV YAML/XML calibration file (it is "
                         "empty).")
    try:
        fs = cv2.FileStorage(text, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
    except (cv2.error, SystemError):  # OpenCV's parser errors surface as either
        raise InputError(f"{fname} is not a readable OpenCV YAML/XML calibration file.") from None
    if not fs.isOpened():
        raise InputError(f"{fname} is not a readable OpenCV YAML/XML calibration file.")
    try:
        root = fs.root()

        def get(key: str, required: bool = True):
            names = {"width": ("width", "image_width"), "height": ("height", "image_height")}
            for name in names.get(key, (key,)):
                node = root.getNode(name)
                if not node.empty():
                    return _node_value(node)
            if required:
                raise InputError(f"{fname} has no {key} (it needs K1, D1, K2, D2, R and T).")
            return None

        return _build(fname, get)
    finally:
        fs.release()


def _node_value(node: cv2.FileNode):
    if node.isMap():
        m = node.mat()
        return None if m is None else m.ravel().tolist()
    if node.isSeq():
        return [node.at(i).real() for i in range(node.size())]
    if node.isReal() or node.isInt():
        return float(node.real())
    return node.string()


def _from_kitti(text: str, fname: str) -> RigCalib:
    fields: dict[str, list[float] | None] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep or key.strip() == "calib_time":
            continue
        try:
            fields[key.strip()] = [float(v) for v in value.split()]
        except ValueError:
            fields[key.strip()] = None
    for cam in ("02", "03"):
        for what in ("K", "R", "T"):
            if fields.get(f"{what}_{cam}") is None:
                raise InputError(f"{fname}: {what}_{cam} is missing or not a list of numbers "
                                 "(a KITTI calib_cam_to_cam.txt needs K, R, T for cameras 02, "
                                 "03).")
    r2 = _rotation(fields["R_02"], fname, "R_02")
    r3 = _rotation(fields["R_03"], fname, "R_03")
    t2 = _matrix(fields["T_02"], fname, "T_02", (3,))
    t3 = _matrix(fields["T_03"], fname, "T_03", (3,))
    r = r3 @ r2.T  # camera 02 -> camera 03
    size = fields.get("S_02") or [None, None]
    values = {"K1": fields["K_02"], "K2": fields["K_03"], "D1": fields.get("D_02"),
              "D2": fields.get("D_03"), "R": r.ravel().tolist(), "T": (t3 - r @ t2).tolist(),
              "width": size[0], "height": size[1] if len(size) > 1 else None}
    return _build(fname, lambda key, required=True: values.get(key))


__all__ = ["RigCalib", "load_rig", "looks_like_rig"]
