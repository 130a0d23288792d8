"""depthweb Studio: ``python app.py`` (also the Hugging Face Spaces entry point)."""

from depthweb.config import get_settings
from depthweb.ui.app import build_app, launch_kwargs

if __name__ == "__main__":
    settings = get_settings()
    build_app(settings).launch(**launch_kwargs(settings))
