"""The student registry: finished training runs, served by name like any other model.

A registered student lives in ``<data_dir>/students/<name>/``: the run's ``model.safetensors``
and ``config.json`` (copied from ``<run_dir>/student/``) and ``meta.json``::

    {"format": "depthweb-student/1", "name": "rooms-v2", "created_at": "2025-...Z",
     "run_dir": "/abs/run", "parent_teacher": "depth-anything-v2-small",
     "parent_teacher_weights": "<weights label the teacher's predictions carry>",
     "data_version": "<sha256 of the export's manifest.jsonl>", "data": [...sources...],
     "kind": "relative_disparity", "arch": "compact", "input_size": 192, "multiple": 32,
     "metrics": {"train": {"steps": ..., "final_loss": ...}, "eval": {...}}}

:func:`student_specs` turns every registered student into a :class:`ModelSpec` (family
``student``, ``options["weights_dir"]`` the registry folder); :mod:`depthweb.models.registry`
calls it lazily from ``list_specs``, so students appear in ``depthweb models``, in the app's
model dropdown, and load with ``load_backend(name)``: a student can be the next teacher.

This module imports no torch (the model registry imports it to list specs).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from depthweb.config import Settings, get_settings
from depthweb.errors import InputError
from depthweb.fsutil import pid_alive as _alive
from depthweb.models.specs import SPEC_BY_NAME, ModelSpec
from depthweb.types import DepthKind

log = logging.getLogger(__name__)

FORMAT = "depthweb-student/1"
STUDENTS_DIRNAME = "students"
META_FILE = "meta.json"
WEIGHT_FILES = ("model.safetensors", "config.json")
NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
RESERVED = {"ground_truth", "ground-truth"}
"""Names a student may not take: ``ground_truth`` marks ground-truth predictions in the store."""


class DuplicateStudentError(InputError):
    """A student with this name is already registered."""


@dataclass(frozen=True)
class StudentRecord:
    """One registered student: its name, folder and ``meta.json`` contents."""

    name: str
    path: Path
    meta: dict[str, Any]

    @property
    def kind(self) -> DepthKind:
        return DepthKind(self.meta.get("kind", DepthKind.RELATIVE_DISPARITY))

    @property
    def teacher(self) -> str | None:
        return self.meta.get("parent_teacher")

    @property
    def data_version(self) -> str:
        return str(self.meta.get("data_version", ""))

    def spec(self) -> ModelSpec:
        """The servable spec (weights from :attr:`path`)."""
        m = self.meta
        teacher = m.get("parent_teacher") or "no teacher (synthetic / ground truth only)"
        data = self.data_version[:12] or "unknown data"
        desc = (f"Student of {teacher}, trained on data {data} ({m.get('arch', 'compact')}, "
                f"{self.kind}); registered {str(m.get('created_at', ''))[:10]}")
        return ModelSpec(self.name, "student", self.kind, None, "main", "unknown",
                         int(m.get("input_size", 192)), int(m.get("multiple", 32)), desc,
                         {"weights_dir": str(self.path), "registered": True})


def students_root(settings: Settings | None = None) -> Path:
    """``<data_dir>/students``."""
    settings = settings or get_settings()
    return Path(settings.data_dir).expanduser() / STUDENTS_DIRNAME


def default_name(run_dir: str | Path) -> str:
    """A registry name from a run folder's name (lower case, ``[a-z0-9._-]``)."""
    raw = Path(run_dir).expanduser().resolve().name.lower()
    slug = re.sub(r"[^a-z0-9._-]+", "-", raw).strip("-._")[:64].strip("-._")
    return slug or "student"


def check_name(name: str, settings: Settings | None = None) -> str:
    """``name`` if a new student may take it; else an :class:`InputError` that says why."""
    if not NAME_RE.match(name or ""):
        raise InputError(f"The student name {name!r} is not usable: use 1-64 characters "
                         "a-z, 0-9, '.', '_' or '-', starting and ending with a letter or digit.")
    if name in SPEC_BY_NAME or name in RESERVED:
        raise InputError(f"The name {name!r} belongs to a built-in model; choose another name.")
    if (students_root(settings) / name).exists():
        raise DuplicateStudentError(
            f"A student called {name!r} is already registered; choose another name (--name).")
    return name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is unreadable ({exc}).") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path} does not hold a JSON object.")
    return data


def export_provenance(export_dir: str | Path) -> dict[str, Any]:
    """What an export contributed: its path, manifest sha256, dataset, row count and the most
    common teacher (model, weights) of its non-ground-truth rows."""
    root = Path(export_dir)
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        return {"type": "export", "path": str(root), "manifest_sha256": None}
    sha = _sha256(manifest)
    meta = _read_json(root / "export.json") if (root / "export.json").is_file() else {}
    if meta.get("manifest_sha256") not in (None, sha):
        log.warning("%s: export.json's manifest_sha256 does not match manifest.jsonl", root)
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    teachers = Counter((r.get("teacher"), r.get("teacher_weights") or "") for r in rows
                       if r.get("source") != "ground_truth" and r.get("teacher"))
    (teacher, weights), _ = teachers.most_common(1)[0] if teachers else ((None, None), 0)
    return {"type": "export", "path": str(root.resolve()), "manifest_sha256": sha,
            "dataset": meta.get("dataset"), "count": len(rows), "teacher": teacher,
            "teacher_weights": weights}


def data_provenance(train_config: dict[str, Any]) -> dict[str, Any]:
    """``data_version``, the sources and the parent teacher of a run's training config.

    ``data_version`` is the export's manifest sha256 (one export), a sha256 over the sorted
    manifest hashes and synthetic source settings (several sources), or ``synthetic:<hash>``.
    """
    sources = []
    for src in train_config.get("data", []):
        if src.get("type") == "export" and src.get("path"):
            sources.append(export_provenance(src["path"]))
        else:
            sources.append({k: src.get(k) for k in ("type", "count", "seed", "outdoor_fraction")})
    exports = [s for s in sources if s["type"] == "export"]
    parts = sorted(str(s.get("manifest_sha256")) for s in exports)
    parts += [json.dumps(s, sort_keys=True) for s in sources if s["type"] != "export"]
    if len(exports) == 1 and len(sources) == 1:
        version = str(exports[0].get("manifest_sha256"))
    else:
        version = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        version = version if exports else f"synthetic:{version[:16]}"
    teacher = next((s for s in exports if s.get("teacher")), {})
    return {"data_version": version, "data": sources, "parent_teacher": teacher.get("teacher"),
            "parent_teacher_weights": teacher.get("teacher_weights")}


def _student_files(run_dir: Path) -> Path:
    student = run_dir / "student"
    if not run_dir.is_dir():
        raise InputError(f"The run folder {run_dir} does not exist; pass the -o folder of a "
                         "finished `depthweb train` run.")
    missing = [f for f in WEIGHT_FILES if not (student / f).is_file()]
    if missing:
        raise InputError(f"{run_dir} holds no trained student ({', '.join(missing)} missing "
                         f"in {student}); finish the run with `depthweb train ... --resume`.")
    return student


def register_student(
    run_dir: str | Path,
    *,
    name: str | None = None,
    settings: Settings | None = None,
    teacher: str | None = None,
    teacher_weights: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> StudentRecord:
    """Copy the finished run's student into the registry under ``name`` (default: from the run
    folder's name) with its provenance and metrics; refuses a taken name. ``teacher`` /
    ``teacher_weights`` override the parent teacher read from the export."""
    settings = settings or get_settings()
    run_dir = Path(run_dir).expanduser().resolve()
    student = _student_files(run_dir)
    name = check_name(name or default_name(run_dir), settings)
    cfg = _read_json(student / "config.json")
    train_cfg = _read_json(run_dir / "train_config.json") \
        if (run_dir / "train_config.json").is_file() else cfg.get("training", {}).get("config", {})
    prov = data_provenance(train_cfg or {})
    if teacher:
        prov.update(parent_teacher=teacher, parent_teacher_weights=teacher_weights)
    model_cfg = train_cfg.get("model", {}) if train_cfg else {}
    training = cfg.get("training", {})
    meta = {
        "format": FORMAT, "name": name, "created_at": datetime.now(timezone.utc).isoformat(),
        "run_dir": str(run_dir), **prov,
        "kind": cfg.get("kind", DepthKind.RELATIVE_DISPARITY.value),
        "arch": "depth_anything" if cfg.get("model_type") == "depth_anything" else "compact",
        "input_size": int(cfg.get("input_size", model_cfg.get("input_size", 192))),
        "multiple": int(cfg.get("multiple", 14 if "backbone_config" in cfg else 32)),
        "metrics": {"train": {k: training.get(k) for k in ("steps", "final_loss", "elapsed_s")},
                    **(metrics or {})},
    }
    root = students_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(root, name)
    tmp = root / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for f in WEIGHT_FILES:
            shutil.copy2(student / f, tmp / f)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.rename(tmp, root / name)  # fails if a student took the name meanwhile
        except OSError as exc:
            raise DuplicateStudentError(f"A student called {name!r} is already registered; "
                                        "choose another name (--name).") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("registered student %s from %s", name, run_dir)
    return StudentRecord(name, root / name, meta)


def registered_from(name: str, run_dir: str | Path,
                    settings: Settings | None = None) -> StudentRecord | None:
    """The student ``name`` if it was registered from ``run_dir`` (a resumed run that was killed
    after registering), else None."""
    try:
        record = get_student(name, settings)
    except InputError:
        return None
    same = record.meta.get("run_dir") == str(Path(run_dir).expanduser().resolve())
    return record if same else None


def _clear_leftovers(root: Path, name: str) -> None:
    """Half-copied folders of registrations of ``name`` whose process is gone (killed)."""
    for p in root.glob(f".tmp-{name}-*"):
        pid = p.name[len(f".tmp-{name}-"):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _load(path: Path) -> StudentRecord | None:
    """The record in ``path``, or None (with a warning) when it is incomplete or unreadable."""
    try:
        meta = _read_json(path / META_FILE)
    except InputError as exc:
        log.warning("skipping registered student %s: %s", path.name, exc)
        return None
    if meta.get("name") != path.name or not all((path / f).is_file() for f in WEIGHT_FILES):
        log.warning("skipping registered student %s: name or weight files do not match",
                    path.name)
        return None
    return StudentRecord(path.name, path, meta)


def list_students(settings: Settings | None = None) -> list[StudentRecord]:
    """Every complete registered student, oldest first."""
    root = students_root(settings)
    if not root.is_dir():
        return []
    records = [r for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")
               and (r := _load(p)) is not None]
    return sorted(records, key=lambda r: (str(r.meta.get("created_at", "")), r.name))


def get_student(name: str, settings: Settings | None = None) -> StudentRecord:
    """The registered student ``name`` (an :class:`InputError` when there is none)."""
    path = students_root(settings) / name
    record = _load(path) if NAME_RE.match(name or "") and path.is_dir() else None
    if record is None:
        raise InputError(f"No registered student called {name!r}; `depthweb models` lists them.")
    return record


def record_metrics(name: str, key: str, value: Any,
                   settings: Settings | None = None) -> StudentRecord:
    """Store ``metrics[key] = value`` in the student's ``meta.json`` (written atomically)."""
    record = get_student(name, settings)
    meta = {**record.meta, "metrics": {**record.meta.get("metrics", {}), key: value}}
    tmp = record.path / f".{META_FILE}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(record.path / META_FILE)
    return StudentRecord(name, record.path, meta)


def student_specs(settings: Settings) -> list[ModelSpec]:
    """Specs of the registered students (the model registry's spec provider)."""
    return [r.spec() for r in list_students(settings) if r.name not in SPEC_BY_NAME]
