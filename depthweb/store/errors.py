"""Store errors: each message is one sentence that tells the user what to do."""

from __future__ import annotations

from depthweb.errors import DepthwebError


class StaleRevisionError(DepthwebError):
    """A save was made against a task version that someone else has already changed."""

    def __init__(self, task_id: int, expected_version: int, current_version: int) -> None:
        self.task_id = task_id
        self.expected_version = expected_version
        self.current_version = current_version
        super().__init__(
            f"Task {task_id} was changed by someone else while you had it open (you opened "
            f"version {expected_version}, it is now version {current_version}); nothing was "
            "saved: reload the task and apply your change again."
        )


class PermissionDeniedError(DepthwebError):
    """The acting user's role does not allow the action."""


class NotFoundError(DepthwebError):
    """A referenced row (task, dataset, user, image) does not exist."""


class InvalidActionError(DepthwebError):
    """The action is not allowed in the task's current state (e.g. reviewing twice)."""


class ClaimedError(InvalidActionError):
    """The task is claimed (a valid lease) by another reviewer; nothing was saved."""

    def __init__(self, task_id: int, claimed_at_text: str, lease_minutes: int) -> None:
        self.task_id = task_id
        super().__init__(
            f"Task {task_id} was claimed by another reviewer at {claimed_at_text} (a claim lasts "
            f"{lease_minutes} minutes, so any earlier claim of yours had run out); nothing was "
            "saved: press Next task."
        )


class BrokenTaskError(InvalidActionError):
    """A file the task needs is missing or fails its checksum; the task was set aside."""
