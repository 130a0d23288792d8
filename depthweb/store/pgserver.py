"""A throwaway PostgreSQL server for tests and benchmarks (Debian's binaries, trust auth).

``initdb`` and ``postgres`` refuse to run as root, so when the current user is root the server
runs as the ``postgres`` system user (``runuser -u postgres``) in a fresh directory under the
system temp dir that is owned by that user. It listens on 127.0.0.1 only, on a free port, and
is stopped and deleted when the context exits.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from glob import glob
from pathlib import Path

logger = logging.getLogger(__name__)

SERVICE_USER = "postgres"
PG_BINDIR_ENV = "DEPTHWEB_PG_BINDIR"


def _version_key(path: str) -> tuple[int, ...]:
    m = re.search(r"/postgresql/(\d+(?:\.\d+)?)/bin", path)
    return tuple(int(p) for p in m.group(1).split(".")) if m else (0,)


def find_pg_bindir() -> Path | None:
    """Directory holding ``initdb`` and ``pg_ctl``: ``$DEPTHWEB_PG_BINDIR``, the newest
    ``/usr/lib/postgresql/*/bin`` (Debian), or ``pg_ctl`` on ``PATH``; None when absent."""
    candidates = [os.environ.get(PG_BINDIR_ENV, "")]
    candidates += sorted(glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    on_path = shutil.which("pg_ctl")
    candidates.append(str(Path(on_path).parent) if on_path else "")
    for cand in candidates:
        if cand and all(os.access(Path(cand) / exe, os.X_OK) for exe in ("initdb", "pg_ctl")):
            return Path(cand)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running throwaway server; ``url(dbname)`` gives a SQLAlchemy URL (psycopg 3)."""

    host: str
    port: int
    user: str
    root: Path
    bindir: Path
    run_as: str | None

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        env.pop("PGDATA", None)
        proc = subprocess.run(
            cmd, cwd=self.root, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}\n{tail}"
            )
        return proc

    def start(self, *, durable: bool) -> None:
        data = str(self.root / "data")
        self._run(
            "initdb",
            "-D",
            data,
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            "--no-instructions",
        )
        opts = [
            f"-p {self.port}",
            f"-k {self.root}",
            "-c listen_addresses=127.0.0.1",
            "-c max_connections=300",
        ]
        if not durable:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            "pg_ctl",
            "-D",
            data,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            " ".join(opts),
            "start",
        )

    def stop(self) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")


def _make_root() -> tuple[Path, str | None]:
    root = Path(tempfile.mkdtemp(prefix="depthweb-pg-"))
    if os.geteuid() != 0:
        return root, None
    try:
        account = pwd.getpwnam(SERVICE_USER)
    except KeyError as err:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(
            f"PostgreSQL cannot run as root and there is no {SERVICE_USER!r} user to run it as; "
            "install Debian's postgresql package or run the tests as a normal user."
        ) from err
    os.chown(root, account.pw_uid, account.pw_gid)
    return root, SERVICE_USER


@contextmanager
def throwaway_postgres(*, durable: bool = True, attempts: int = 3) -> Iterator[PostgresServer]:
    """Start a fresh server (superuser ``postgres``, trust auth on 127.0.0.1); stop and delete
    it on exit. ``durable=False`` turns fsync and synchronous commit off (faster tests)."""
    bindir = find_pg_bindir()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql "
            f"package or set {PG_BINDIR_ENV}."
        )
    last_error: RuntimeError | None = None
    for _ in range(attempts):  # a free port can be taken between probing and binding
        root, run_as = _make_root()
        server = PostgresServer("127.0.0.1", _free_port(), "postgres", root, bindir, run_as)
        try:
            server.start(durable=durable)
        except RuntimeError as err:
            last_error = err
            logger.warning("throwaway PostgreSQL failed to start, retrying: %s", err)
            _stop_and_remove(server)
            continue
        logger.info("throwaway PostgreSQL on port %d in %s", server.port, root)
        try:
            yield server
        finally:
            _stop_and_remove(server)
        return
    raise RuntimeError(f"could not start a throwaway PostgreSQL server: {last_error}")


def _stop_and_remove(server: PostgresServer) -> None:
    try:
        server.stop()
    except RuntimeError:
        logger.exception("stopping the throwaway PostgreSQL server failed")
    finally:
        shutil.rmtree(server.root, ignore_errors=True)


def create_database(server_url: str, name: str) -> None:
    """``CREATE DATABASE name`` on the server of ``server_url`` (an existing database's URL)."""
    _admin(server_url, f'CREATE DATABASE "{name}"')


def drop_database(server_url: str, name: str) -> None:
    _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(server_url: str, statement: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(server_url)
    with psycopg.connect(
        host=u.host,
        port=u.port,
        user=u.username,
        password=u.password,
        dbname=u.database or "postgres",
        autocommit=True,
    ) as conn:
        conn.execute(statement)  # type: ignore[arg-type]
