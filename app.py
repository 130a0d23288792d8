"""depthweb: ``python app.py`` serves the public Studio at ``/`` and the review platform at
``/review`` in one process (also the Hugging Face Spaces entry point; see depthweb.server)."""

import logging

from depthweb.server import serve

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    serve()
