"""A tiny progress protocol so the library can report how far it is without depending on a UI
(bytes for encrypt/decrypt/verify, envelopes for rewrap)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives the total once (bytes, or envelopes), then increments as the work gets done."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, n: int) -> None: ...


class NoProgress:
    """The default: report nothing."""

    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass
