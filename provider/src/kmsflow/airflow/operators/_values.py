"""Coercions for operator arguments that may arrive as rendered template strings."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from kmsflow.spec.durations import parse_duration


def as_duration(value: timedelta | float | str | None, what: str) -> timedelta | None:
    """``timedelta`` from a timedelta, seconds, or a spec-style string (``90d``, ``1d12h``, ``7776000s``).

    Same grammar as key specs (``kmsflow.spec.parse_duration``), so an operator and a spec agree on
    what a value means.
    """
    if value is None or value == "":
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from exc


def as_datetime(value: datetime | str | None, what: str) -> datetime | None:
    """``datetime`` from a datetime or an ISO-8601 string."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"{what}: expected an ISO-8601 timestamp, got {value!r}") from exc


def as_members(value: str | Iterable[str], what: str = "members") -> list[str]:
    """IAM members from a list, a comma-separated string or a JSON list (rendered templates)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            value = [part for part in (p.strip() for p in text.split(",")) if part]
    if not isinstance(value, Iterable):
        raise ValueError(f"{what}: expected a list of IAM members, got {type(value).__name__}")
    return [str(m).strip() for m in value]


def as_bindings(value: Mapping[str, Any] | str, what: str = "bindings") -> dict[str, list[str]]:
    """``{role: [members]}`` from a mapping or its JSON text."""
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"{what}: expected a mapping of role to members, got {type(value).__name__}")
    return {str(role): as_members(members, f"{what}[{role}]") for role, members in value.items()}


def as_labels(value: Mapping[str, Any] | str | None) -> dict[str, str] | None:
    """Labels from a mapping or its JSON text; None means "not managed"."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"labels: expected a mapping, got {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items()}
