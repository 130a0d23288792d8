"""Raw HTTP probes for the file routes: requests sent over a plain socket, so ``..`` segments and
odd encodings reach the server exactly as written (httpx would normalise them)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import quote, urlsplit

FILE_ROUTES = ("/gradio_api/file={}", "/gradio_api/file/{}", "/file={}")
UP = "../"
ENCODED_UPS = ("%2e%2e%2f", "%2E%2E%2F", "..%2f", "%2e%2e/", "%252e%252e%252f", "..%5c",
               "....//", "%c0%ae%c0%ae%c0%af")


def raw_get(base_url: str, target: str, cookie: str = "") -> tuple[int, bytes]:
    """``GET target`` (sent verbatim under ``base_url``'s path, e.g. ``/review``) ->
    (status, body); 599 when no answer came."""
    u = urlsplit(base_url)
    lines = [f"GET {u.path.rstrip('/')}{target} HTTP/1.1", f"Host: {u.hostname}:{u.port}",
             "Connection: close", "Accept-Encoding: identity"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    with socket.create_connection((u.hostname, u.port), timeout=15) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        chunks = []
        while chunk := s.recv(1 << 16):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/"):
        return 599, b""  # the server closed the connection without an answer
    return int(head.split(b" ", 2)[1]), body


def path_forms(target: Path, anchors: dict[str, Path], cwd: Path) -> list[str]:
    """Request targets that name the file ``target`` in every way we could think of: absolute,
    percent-encoded, through every file route, ``..`` from each served folder in ``anchors``
    (literal and encoded), relative to the server's working directory, via ``/proc/self``,
    with schemes, doubled slashes and a NUL byte, and through Gradio's static routes."""
    p = str(target)
    forms = [r.format(p) for r in FILE_ROUTES]
    forms += [r.format(quote(p, safe="")) for r in FILE_ROUTES[:2]]
    for anchor in anchors.values():
        rel = os.path.relpath(p, anchor)
        forms.append(f"/gradio_api/file={anchor}/{rel}")
        forms.append(f"/gradio_api/file/{anchor}/{rel}")
        forms += [f"/gradio_api/file={anchor}/{rel.replace(UP, up)}" for up in ENCODED_UPS]
        forms.append(f"/gradio_api/file={quote(f'{anchor}/{rel}', safe='')}")
    rel_cwd = os.path.relpath(p, cwd)
    deep = UP * 16 + p.lstrip("/")
    forms += [
        f"/gradio_api/file={rel_cwd}", f"/gradio_api/file=/proc/self/cwd/{rel_cwd}",
        f"/gradio_api/file=file://{p}", f"/gradio_api/file=//{p}", f"/gradio_api/file={p}%00",
        f"/gradio_api/file={p}%00.png", f"/gradio_api/file={p}/.", f"/gradio_api/file={p}/",
        f"/static/{deep}", f"/assets/{deep}", f"/static/{deep.replace(UP, '%2e%2e%2f')}",
        f"/assets/{deep.replace(UP, '%2e%2e%2f')}", f"/gradio_api/static/{deep}",
        f"/gradio_api/custom_component/x/client/{deep}",
        f"/gradio_api/file={p.upper()}" if p.upper() != p else f"/gradio_api/file={p}",
    ]
    return forms


def sentinel(path: Path) -> bytes:
    """Bytes that only a response leaking ``path`` would contain: its first 64 non-trivial
    bytes (a NUL-only prefix, as in an SQLite -shm file, is skipped)."""
    data = path.read_bytes()
    start = next((i for i, b in enumerate(data) if b), 0)
    return data[start:start + 64]


def leaks(base_url: str, targets: dict[str, Path], anchors: dict[str, Path], cwd: Path,
          cookie: str = "") -> list[tuple[str, int]]:
    """Every probe that was not refused (status < 400) or whose body holds a target's bytes."""
    found = []
    for name, target in targets.items():
        secret = sentinel(target)
        assert len(secret) >= 8, f"{name} ({target}) is too small to recognise"
        for form in path_forms(target, anchors, cwd):
            status, body = raw_get(base_url, form, cookie)
            if status < 400 or secret in body:
                found.append((form, status))
    return found
