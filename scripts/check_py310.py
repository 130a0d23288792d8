"""Static check that the app's code runs on Python 3.10 (what ZeroGPU Spaces run).

This machine only has Python 3.11, so CI checks the older version statically, twice over:
``vermin`` finds standard-library names and syntax newer than 3.10 (``enum.StrEnum``,
``datetime.UTC``, ``tomllib``, ``except*``, ...), and ``ruff`` with ``target-version = py310``
finds syntax the 3.10 parser refuses. Every finding is printed as ``path:line: message``.

Usage: python scripts/check_py310.py [paths...]   (default: depthweb app.py bench scripts)
Exit status 0 when the code is 3.10-clean, 1 otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = "3.10"
DEFAULT_PATHS = ("depthweb", "app.py", "bench", "scripts")


def _tool(name: str) -> str:
    """The console script installed beside this interpreter (a venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} is not installed: pip install -r requirements-dev.txt")
    return found


def vermin_findings(paths: list[str]) -> list[str]:
    """``path:line: needs Python X: what`` for each construct newer than ``TARGET``."""
    cmd = [_tool("vermin"), "--no-tips", "--violations", "--eval-annotations",
           "--no-parse-comments", f"--target={TARGET}-", "--format", "parsable", *paths]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode not in (0, 1) or ":::" not in out.stdout:  # no summary line: did not run
        raise SystemExit(f"vermin failed to run: {out.stderr.strip() or out.stdout.strip()}")
    findings = []
    for line in out.stdout.splitlines():
        # parsable: file:line:col:py2:py3:feature; the summary lines have no line number
        parts = line.split(":", 5)
        if len(parts) == 6 and parts[0] and parts[1]:
            path = Path(parts[0]).resolve()
            shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            findings.append(f"{shown}:{parts[1]}: needs Python {parts[4]}: {parts[5]}")
    return findings


def ruff_findings(paths: list[str]) -> list[str]:
    """ruff's ``path:line:col: code message`` for syntax invalid on ``TARGET``."""
    cmd = [_tool("ruff"), "check", "--no-cache", "--target-version",
           "py" + TARGET.replace(".", ""), "--select", "E9", "--output-format", "concise",
           *paths]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    return [ln for ln in out.stdout.splitlines() if ln and ":" in ln and not ln.startswith("Found")]


def main(argv: list[str]) -> int:
    paths = argv or list(DEFAULT_PATHS)
    findings = vermin_findings(paths) + ruff_findings(paths)
    for finding in findings:
        sys.stdout.write(finding + "\n")
    if findings:
        sys.stdout.write(f"{len(findings)} construct(s) need a Python newer than {TARGET}: "
                         f"ZeroGPU Spaces run {TARGET}.\n")
        return 1
    sys.stdout.write(f"Python {TARGET} check passed: {' '.join(paths)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
