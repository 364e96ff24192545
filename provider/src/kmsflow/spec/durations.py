"""Durations as people write them in a key spec: ``90d``, ``2160h``, ``7776000s``, ``1d12h``.

Cloud KMS itself speaks seconds (``7776000s``, as in the Pulumi/Terraform seed); operators think in
days. Both parse to the same ``timedelta``, and ``format_duration`` writes the largest exact unit
back, so ``parse_duration(format_duration(d)) == d`` for every whole-second duration.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from kmsflow.shown import shown

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"([0-9]+)([dhms])")
_WHOLE = re.compile(r"^(?:[0-9]+[dhms])+$")


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """A ``timedelta`` from ``"90d"``, ``"2160h"``, ``"30m"``, ``"7776000s"``, ``"1d12h"``.

    Plain numbers are seconds. Units must appear at most once, largest first, so typos such as
    ``"1h1d"`` or ``"90 days"`` are errors rather than guesses.
    """
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"not a duration: {shown(text)}")
    if isinstance(text, int | float):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"duration must be a finite number of seconds, not negative (got {shown(text)})")
        return _seconds(text)
    compact = text.strip()
    if not _WHOLE.match(compact):
        raise ValueError(f"not a duration: {shown(text)} (want e.g. 90d, 2160h, 30m, 7776000s or 1d12h)")
    parts = _PART.findall(compact)
    units = [unit for _, unit in parts]
    order = list(_UNITS)
    if len(set(units)) != len(units) or units != sorted(units, key=order.index):
        raise ValueError(f"not a duration: {shown(text)} (each unit once, largest first: d, h, m, s)")
    return _seconds(sum(int(n) * _UNITS[u] for n, u in parts))


def _seconds(seconds: float) -> timedelta:
    """``timedelta(seconds=...)``, its OverflowError a ValueError: pydantic reports only those
    at the field, anything else escaped as a crash (a spec saying ``99999999999999999999d``)."""
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError("duration too long (at most 999999999 days)") from None


def format_duration(value: timedelta) -> str:
    """The shortest exact form: ``90d``, ``36h``, ``90m``, ``7s`` (``0s`` for zero).

    Sub-second parts are rounded to whole seconds (KMS schedules are whole seconds).
    """
    seconds = round(value.total_seconds())
    if seconds < 0:
        raise ValueError(f"duration must not be negative (got {value})")
    for unit, size in _UNITS.items():
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
