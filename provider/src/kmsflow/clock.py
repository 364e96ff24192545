"""Time, spelled one way per purpose.

Records carry RFC 3339 UTC to the second (``2026-11-30T10:05:25Z``: docs/FORMAT.md §2, one
spelling so that string order is time order); audit events and scan and run reports carry it to
the millisecond (``2026-11-30T10:05:25.123Z``). Both always in UTC with ``Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime

RECORD_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
"""The one spelling of a record's timestamps (``created``, ``key.wrapped_at``)."""


def utc_now() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``, e.g. ``2026-11-30T10:05:25.123Z``; a naive
    ``value`` is taken as UTC. A fixed shape, so string order is time order."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_time(value: datetime | None = None) -> str:
    """``value`` (default now) as a record timestamp (:data:`RECORD_TIME_FORMAT`)."""
    return (value or utc_now()).astimezone(UTC).strftime(RECORD_TIME_FORMAT)
