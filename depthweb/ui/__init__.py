"""The Gradio web app: one module per tab; handlers call :mod:`depthweb.services`.

``build_app(settings)`` returns the ``gr.Blocks``; ``launch_kwargs(settings)`` the arguments for
its ``launch()``. Importing this package builds and launches nothing.
"""

from __future__ import annotations

__all__ = ["build_app", "launch_kwargs"]


def __getattr__(name: str):
    if name in __all__:
        from depthweb.ui import app

        return getattr(app, name)
    raise AttributeError(f"module 'depthweb.ui' has no attribute {name!r}")
