"""depthweb: a Gradio demo and annotation platform for monocular depth foundation models.

Importing this package has no side effects: no weights, engines or servers are created.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
