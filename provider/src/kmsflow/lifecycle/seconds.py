"""Ages in seconds that decide what counts as abandoned (``stale_after``, ``older_than``).

They must be finite and not negative. Why: NaN compares false with everything, so ``age < nan``
never held and ``kmsflow reencrypt --stale-after nan`` took over a live run's staging at once;
infinity would silently disable what the caller asked for. Every entry point checks with
:func:`check_seconds` (the CLI's argparse type too), not only the command line.
"""

from __future__ import annotations

import math

from kmsflow.shown import shown


def check_seconds(value: float, name: str) -> float:
    """``value`` if it is a finite, non-negative number of seconds; ``ValueError`` naming ``name``."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite, non-negative number of seconds (got {shown(value)})")
    return value
