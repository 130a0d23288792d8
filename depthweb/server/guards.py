"""Pure-ASGI request guards that see every request before Gradio does.

- :class:`ClientAddress`: the client address of a request. ``X-Forwarded-For`` is believed only
  when the peer is a proxy named in ``DEPTHWEB_TRUSTED_PROXIES``; the result replaces
  ``scope["client"]`` downstream and is published as :data:`depthweb.store.auth.CLIENT_ADDRESS`
  (login throttling, per-address queue limits).
- :class:`OriginGuard`: cross-site request forgery and CORS. State-changing requests (anything
  but GET/HEAD/OPTIONS) and logout whose ``Origin`` (or ``Referer``, or ``Sec-Fetch-Site``) names
  another site are refused with 403 unless that origin is in ``DEPTHWEB_ALLOWED_ORIGINS``;
  preflights are answered here (allowed origins only), and every CORS header Gradio adds is
  replaced, so no arbitrary origin is ever echoed with ``Access-Control-Allow-Credentials``.
  Requests without any of these headers (``gradio_client``, curl) are not from a browser page
  and pass: a forged request needs a browser carrying the victim's cookie.
- :class:`BodyLimit`: request bodies over a limit per kind of route (:func:`body_limits`) are
  refused with 413 before they are read: at once from ``Content-Length``, else by counting the
  streamed bytes, so a huge body never reaches Gradio (which reads and parses the whole body
  before its login check).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from depthweb.config import Settings
from depthweb.store.auth import CLIENT_ADDRESS

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
KiB = 1024
MiB = 1024 * KiB


def header(scope: Scope, name: str) -> str | None:
    """The first value of a request header (``name`` in lower case), decoded as latin-1."""
    key = name.encode("latin-1")
    for k, v in scope.get("headers") or ():
        if k.lower() == key:
            return v.decode("latin-1")
    return None


async def send_json(send: Send, status: int, detail: str,
                    extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """A complete JSON response ``{"detail": ...}`` (Gradio's own error shape)."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), (b"connection", b"close"), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------- client address

def parse_networks(spec: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``"10.0.0.1, 192.168.0.0/16"`` -> networks; a bad entry is a one-sentence ValueError."""
    nets = []
    for item in (p.strip() for p in (spec or "").split(",")):
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"DEPTHWEB_TRUSTED_PROXIES: {item!r} is not an IP address or "
                             "network (write e.g. 10.0.0.1 or 10.0.0.0/8).") from None
    return tuple(nets)


def _in(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(peer: str, forwarded_for: str | None, trusted: tuple) -> str:
    """The client's address: ``peer`` itself unless it is a trusted proxy, then the rightmost
    address in ``X-Forwarded-For`` that is not a trusted proxy (proxies append on the right,
    so entries left of it may be forged by the client)."""
    if not forwarded_for or not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


class ClientAddress:
    """Sets ``scope["client"]`` and :data:`CLIENT_ADDRESS` to the real client address."""

    def __init__(self, app: ASGIApp, trusted_proxies: str = "") -> None:
        self.app = app
        self.trusted = parse_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        peer, port = (scope.get("client") or ("unknown", 0))[:2]
        address = client_address(peer, header(scope, "x-forwarded-for"), self.trusted)
        if address != peer:
            scope = dict(scope, client=(address, port))
        token = CLIENT_ADDRESS.set(address)
        try:
            await self.app(scope, receive, send)
        finally:
            CLIENT_ADDRESS.reset(token)


# ---------------------------------------------------------------- origin checks and CORS

def _netloc(origin: str) -> str | None:
    """``scheme://host[:port]`` -> ``host[:port]`` (default ports dropped), or None."""
    try:
        parts = urlsplit(origin.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return host if port in (None, default) else f"{host}:{port}"


def _host_netloc(host: str | None) -> str | None:
    return _netloc(f"http://{host.strip()}") if host else None


def is_logout(path: str) -> bool:
    return path.rstrip("/").endswith("/logout")


class OriginGuard:
    """Refuses cross-site state-changing requests and logout; owns every CORS header."""

    def __init__(self, app: ASGIApp, allowed_origins: str = "",
                 trusted_proxies: str = "") -> None:
        self.app = app
        self.allowed = {n for n in (_netloc(o) for o in allowed_origins.split(",") if o.strip())
                        if n}
        self.trusted = parse_networks(trusted_proxies)

    def _own_hosts(self, scope: Scope) -> set[str]:
        hosts = {_host_netloc(header(scope, "host"))}
        peer = (scope.get("client") or ("", 0))[0]
        forwarded = header(scope, "x-forwarded-host")
        if forwarded and _in(peer, self.trusted):  # scope["client"] is the raw peer here
            hosts.add(_host_netloc(forwarded.split(",")[-1].strip()))
        return {h for h in hosts if h}

    def _source(self, scope: Scope) -> tuple[str | None, bool]:
        """(origin netloc or None, whether the request is known to come from another site)."""
        origin = header(scope, "origin")
        if origin is not None:
            net = _netloc(origin)
            return net, net is None  # "null" or garbage: another site
        referer = header(scope, "referer")
        if referer:
            net = _netloc(referer)
            return net, net is None
        site = (header(scope, "sec-fetch-site") or "").lower()
        return None, site in ("cross-site", "same-site")

    def verdict(self, scope: Scope) -> tuple[bool, str | None]:
        """(allowed, the origin netloc that may get CORS headers or None)."""
        net, foreign = self._source(scope)
        if foreign:
            return False, None
        if net is None or net in self._own_hosts(scope):
            return True, None
        return (True, net) if net in self.allowed else (False, None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        allowed, cors_for = self.verdict(scope)
        if method == "OPTIONS" and header(scope, "access-control-request-method"):
            await self._preflight(scope, send, allowed and cors_for is not None)
            return
        if not allowed and (method not in SAFE_METHODS or is_logout(scope.get("path", ""))):
            log.warning("refused %s %s from origin %s", method, scope.get("path"),
                        header(scope, "origin") or header(scope, "referer") or "(cross-site)")
            await send_json(send, 403, "Cross-site request refused: this page may only be "
                            "changed from the app's own pages.")
            return
        origin = header(scope, "origin") if cors_for else None
        await self.app(scope, receive, _cors_send(send, origin))

    async def _preflight(self, scope: Scope, send: Send, ok: bool) -> None:
        if not ok:
            await send_json(send, 403, "Cross-origin requests are not allowed from this site.")
            return
        headers = [*_cors_headers(header(scope, "origin") or ""),
                   (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS"),
                   (b"access-control-max-age", b"600"), (b"content-length", b"0")]
        wanted = header(scope, "access-control-request-headers")
        if wanted:
            headers.append((b"access-control-allow-headers", wanted.encode("latin-1")))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [(b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"), (b"vary", b"Origin")]


def _cors_send(send: Send, origin: str | None) -> Send:
    """Drop every ``Access-Control-*`` header from the app's responses; add ours for an
    allowed cross-site ``origin``."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers") or ()
                       if not k.lower().startswith(b"access-control-")]
            if origin:
                headers += _cors_headers(origin)
            message = dict(message, headers=headers)
        await send(message)

    return wrapped


# ---------------------------------------------------------------- body limits

@dataclass(frozen=True)
class BodyLimits:
    """Bytes a request body may have, per kind of route."""

    upload: int
    login: int
    api: int

    def for_path(self, path: str) -> int:
        tail = path.rstrip("/")
        if tail.endswith("/upload"):
            return self.upload
        if tail.endswith("/login") or "/login/" in path:
            return self.login
        return self.api


def body_limits(settings: Settings) -> BodyLimits:
    """Uploads: the per-file limit times the file count (plus multipart overhead); login
    forms: 16 KiB; every other route (JSON API): ``DEPTHWEB_MAX_JSON_KB``."""
    per_file = int(settings.max_upload_mb * MiB)
    return BodyLimits(upload=per_file * settings.max_upload_files + MiB, login=16 * KiB,
                      api=int(settings.max_json_kb) * KiB)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuses request bodies over :meth:`BodyLimits.for_path` with 413, before reading them."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_path(scope.get("path", ""))
        length = header(scope, "content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await send_json(send, 400, "The Content-Length header is not a number.")
                return
            if declared > limit:
                await self._refuse(scope, send, limit)
                return
        state = {"seen": 0, "started": False, "refused": False}

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > limit:
                    if not state["started"]:
                        state["refused"] = True
                        await self._refuse(scope, send, limit)
                    raise _TooLarge
            return message

        async def tracked_send(message: Message) -> None:
            if state["refused"]:
                return  # the 413 is already out; drop what the app sends after it
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        with contextlib.suppress(_TooLarge):  # the 413 went out from counted_receive
            await self.app(scope, counted_receive, tracked_send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, limit: int) -> None:
        log.warning("refused %s %s: body over %d bytes", scope.get("method"), scope.get("path"),
                    limit)
        await send_json(send, 413, f"The request is too large (over {limit / MiB:.1f} MB); "
                        "send smaller or fewer files.")
