"""A tiny progress protocol so the library can report bytes processed without depending on a UI."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives the total byte count once, then increments as data streams through."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, n: int) -> None: ...


class NoProgress:
    """The default: report nothing."""

    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass
