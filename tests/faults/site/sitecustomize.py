"""Loaded at start-up by child processes whose PYTHONPATH holds this folder (fault tests only):
installs the pause points named in ``DEPTHWEB_FAULT_PAUSE`` (see ``tests/faults/pauses.py``).
Without that variable it does nothing."""

import os

if os.environ.get("DEPTHWEB_FAULT_PAUSE"):
    from tests.faults.pauses import install

    install()
