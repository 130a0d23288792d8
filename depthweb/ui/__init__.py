"""The Gradio web app: one module per tab; handlers call :mod:`depthweb.services`.

``build_studio(settings)`` returns the public Studio's ``gr.Blocks``, ``build_review(settings)``
the review platform's (or None); :mod:`depthweb.server` mounts both. Importing this package
builds and launches nothing.
"""

from __future__ import annotations

__all__ = ["build_review", "build_studio", "review_mount_kwargs", "studio_mount_kwargs"]


def __getattr__(name: str):
    if name in __all__:
        from depthweb.ui import app

        return getattr(app, name)
    raise AttributeError(f"module 'depthweb.ui' has no attribute {name!r}")
