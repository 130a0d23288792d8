"""One call that puts the request guards around the server's ASGI app.

The order matters: :class:`~depthweb.server.guards.OriginGuard` sees the raw peer (to trust
``X-Forwarded-Host`` only from named proxies) and answers preflights before anything else;
:class:`~depthweb.server.guards.BodyLimit` refuses big bodies before any of them is read;
:class:`~depthweb.server.guards.ClientAddress` then sets the real client address for everything
inside (login throttling, per-address queue limits). :class:`~depthweb.server.sessions.
SessionGuard` wraps only the review platform's mount; :func:`~depthweb.server.queue_limits.
install_queue_limits` wraps the Blocks' queues; :class:`~depthweb.services.workspace.Janitor`
cleans the output and Gradio temp folders.

Run uvicorn with ``proxy_headers=False``: otherwise it rewrites the client address from
``X-Forwarded-For`` for any local peer before these guards see it.
"""

from __future__ import annotations

from depthweb.config import Settings
from depthweb.server.guards import ASGIApp, BodyLimit, ClientAddress, OriginGuard, body_limits


def harden(app: ASGIApp, settings: Settings) -> ASGIApp:
    """``app`` behind the origin check, CORS, body limits and client-address guards."""
    inner = ClientAddress(app, settings.trusted_proxies)
    limited = BodyLimit(inner, body_limits(settings))
    return OriginGuard(limited, settings.allowed_origins, settings.trusted_proxies)
