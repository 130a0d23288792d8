"""``python -m depthweb``: the same as the ``depthweb`` command."""

from depthweb.cli import run

if __name__ == "__main__":
    run()
