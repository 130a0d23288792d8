"""Stand-ins for standard-library names newer than Python 3.10 (ZeroGPU Spaces run 3.10).

``StrEnum`` behaves like Python 3.11's ``enum.StrEnum`` for everything this project uses:
members are ``str`` instances equal to their value, ``str(m)`` and ``format(m)`` /
f-strings give the value (not ``Class.NAME``), and ``auto()`` gives the lower-cased name.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class StrEnum(str, Enum):
    """An enum whose members are strings and print as their value (``enum.StrEnum`` on 3.11+)."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, format_spec: str) -> str:
        return str.__format__(str(self), format_spec)

    @staticmethod
    def _generate_next_value_(name: str, start: int, count: int, last_values: list[Any]) -> str:
        return name.lower()
