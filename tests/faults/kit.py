"""Parent side of the fault tests: start a child (``python -m depthweb ...`` or a forked
worker), wait for a progress marker, SIGKILL it, and read what it reported.

Nothing here sleeps a fixed time before a kill: the parent polls a marker (a line in a file, a
row count) with generous timeouts, so the tests hold on a loaded machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.faults.pauses import pause_env

TIMEOUT_S = 300.0
POLL_S = 0.01


def backstop() -> dict:
    """A pause before the training run registers its student, so a run never finishes before
    the test kills it (specs of ``tests/faults/pauses.py``)."""
    return {"target": "depthweb.training.registry:register_student", "when": "before"}


def child_env(data_dir: Path, db_url: str | None, *specs: dict) -> dict[str, str]:
    """The environment of a ``depthweb`` child: offline, CPU, the given data dir and database,
    and the pause points ``specs`` (none: the plain command)."""
    env = {**os.environ, "DEPTHWEB_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "DEPTHWEB_DEVICE": "cpu",
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("DEPTHWEB_FAULT_PAUSE", None)
    if db_url:
        env["DEPTHWEB_DATABASE_URL"] = db_url
    else:
        env.pop("DEPTHWEB_DATABASE_URL", None)
    env.update(pause_env(*specs))
    return env


@dataclass
class Child:
    """A running child: its process, marker file and log (stdout + stderr)."""

    proc: subprocess.Popen
    marker: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() \
            else ""

    def markers(self) -> list[str]:
        return self.marker.read_text().splitlines() if self.marker.exists() else []

    def wait_for(self, done: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S
                 ) -> None:
        """Poll ``done()`` until it is true; fail if the child exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if self.proc.poll() is not None:
                raise AssertionError(f"the child exited ({self.proc.returncode}) before "
                                     f"{what}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"no {what} within {timeout_s:.0f} s:\n{self.log()}")
            time.sleep(POLL_S)

    def wait_paused(self, timeout_s: float = TIMEOUT_S) -> str:
        """Wait until the child reports that it sits at its pause point; returns the line."""
        self.wait_for(lambda: any(m.startswith("PAUSED") for m in self.markers()),
                      "pause point", timeout_s)
        return next(m for m in self.markers() if m.startswith("PAUSED"))

    def kill(self) -> None:
        """SIGKILL, then reap; the child must have died of the signal."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        assert self.proc.returncode == -signal.SIGKILL, (self.proc.returncode, self.log())


def launch(argv: list[str], env: dict[str, str], workdir: Path, name: str) -> Child:
    """Start ``python -m depthweb ARGV`` in ``workdir`` (output to ``<name>.log``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    marker, log_path = workdir / f"{name}.marker", workdir / f"{name}.log"
    marker.unlink(missing_ok=True)
    env = {**env, "DEPTHWEB_FAULT_MARKER": str(marker)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "depthweb", *argv], env=env,
                                cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    return Child(proc, marker, log_path)


def run(argv: list[str], env: dict[str, str], workdir: Path, name: str,
        timeout_s: float = TIMEOUT_S) -> tuple[int, str]:
    """Run ``python -m depthweb ARGV`` to the end: (exit code, output)."""
    child = launch(argv, env, workdir, name)
    try:
        code = child.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        raise
    return code, child.log_path.read_text(errors="replace")
