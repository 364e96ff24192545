"""The emulated clock: wall time plus an offset that only ever moves forward.

Tests advance it (``kmsflow-emulator advance``) so rotation and destruction schedules of days pass
in seconds; everything the emulator timestamps or schedules reads this clock.
"""

from __future__ import annotations

import time


class Clock:
    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        """Seconds since the epoch, as the emulated world sees it."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the emulated clock only moves forward")
        self.offset += seconds
        return self.now()
