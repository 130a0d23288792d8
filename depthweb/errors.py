"""Exceptions with one-sentence messages that users see (CLI, web app, Python API)."""


class DepthwebError(Exception):
    """Base class: the message is a complete sentence that says what to do."""


class InputError(DepthwebError):
    """An input file or value is unusable (unreadable, too large, inconsistent)."""


class ModelUnavailableError(DepthwebError):
    """Weights for a model cannot be found locally and cannot be downloaded."""


class UnknownModelError(DepthwebError):
    """A model name that is not in the spec table or the student registry."""
