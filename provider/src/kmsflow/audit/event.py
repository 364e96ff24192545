"""One audit event: who did what to which KMS resource, when, why, and on what evidence.

Events are the record behind invariant 5 (every state-changing KMS action is recorded) and, for
crypto-shredding, the record of *when* kmsflow disabled a version (the soak clock reads it back).
They must never carry secrets or key material (invariant 4), so every event passes through
:func:`scrub` before it is written: values that are bytes, or strings that look like encoded key
material, are replaced by a redaction marker. That is a safety net, not the design: callers put
names, ids, counts, states and times in ``evidence``, nothing else.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kmsflow.clock import format_time, utc_now

REDACTED = "[redacted]"
"""What replaces a value that looks like bytes, a secret or key material."""

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

_SENSITIVE_KEY = re.compile(
    r"(wrapped|keyset|plaintext|secret|password|passwd|token|private|material|credential|dek\b)",
    re.IGNORECASE,
)
_B64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_B64_URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
MIN_BLOB_CHARS = 24
"""Shortest unbroken base64-looking token treated as possible key material (16+ bytes)."""


def parse_time(value: str) -> datetime:
    """The ``datetime`` (UTC, aware) of an RFC 3339 timestamp as written by :func:`format_time`."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def looks_like_key_material(text: str) -> bool:
    """True for an unbroken token that decodes as base64 to 16+ bytes and is not a name or hex id.

    Resource names (``projects/...``), URLs, hex ids and digests (scan ids, envelope ids, SHA-256)
    and ordinary paths are allowed: they are how evidence names things. A long mixed-case base64 token is
    what a wrapped key, a serialized keyset or a ciphertext looks like once encoded.
    """
    for token in text.split():
        if len(token) < MIN_BLOB_CHARS or _HEX.match(token):
            continue
        # Resource names and URLs are how evidence names things. Local paths get no exemption: a
        # base64 blob may start with "/" too, and real paths almost always hold a "." "-" or "_"
        # next to their "/", which no single base64 alphabet has, so they pass the check below.
        if token.startswith(("projects/", "file:", "gs:")) or "://" in token:
            continue
        std, url = _B64.match(token), _B64_URL.match(token)
        if not (std or url):
            continue
        if not (re.search(r"[A-Z]", token) and re.search(r"[a-z]", token) and re.search(r"[0-9+/_-]", token)):
            continue
        padded = token + "=" * (-len(token) % 4)
        try:
            raw = base64.b64decode(padded, altchars=None if std else b"-_", validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) >= 16:
            return True
    return False


def scrub(value: Any, *, key: str = "") -> JsonValue:
    """A JSON-safe copy of ``value`` with anything that could be a secret replaced by ``REDACTED``.

    bytes-like values are always redacted; under a key whose name says secret/wrapped/plaintext/...
    every string is redacted (numbers and booleans are kept: ``plaintext_bytes: 1000`` is a count);
    any string that :func:`looks_like_key_material` is redacted. Other types become ``str(value)``
    (e.g. enums, datetimes via :func:`format_time`).
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return REDACTED
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Mapping):
        return {str(k): scrub(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [scrub(v, key=key) for v in items]
    text = value if isinstance(value, str) else str(value)
    if (key and _SENSITIVE_KEY.search(key)) or looks_like_key_material(text):
        return REDACTED
    return text


def _text(value: object, what: str) -> str:
    cleaned = scrub(value, key=what)
    if not isinstance(cleaned, str):
        raise ValueError(f"audit event {what} must be text (got {type(value).__name__})")
    return cleaned


@dataclass(frozen=True)
class AuditEvent:
    """One line of the audit log.

    ``time`` is RFC 3339 UTC; ``actor`` the identity that acted (``KMSFLOW_PRINCIPAL``, the
    credentials' service account, or ``"unknown"``); ``run`` the orchestrating run (an Airflow
    ``dag_id/run_id``, or ``"cli"``); ``action`` a short verb (``disable``, ``destroy``, ...);
    ``resource`` the KMS resource name acted on; ``reason`` why; ``evidence`` what proved it safe.
    """

    time: str
    actor: str
    run: str
    action: str
    resource: str
    reason: str
    evidence: dict[str, JsonValue] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        *,
        action: str,
        resource: str,
        reason: str,
        actor: str,
        run: str,
        evidence: Mapping[str, Any] | None = None,
        time: datetime | None = None,
    ) -> AuditEvent:
        """A scrubbed event (see :func:`scrub`); ``time`` defaults to now (UTC)."""
        if not action or not resource:
            raise ValueError("an audit event needs an action and a resource")
        cleaned = scrub(dict(evidence or {}))
        assert isinstance(cleaned, dict)
        return cls(
            time=format_time(time or utc_now()),
            actor=_text(actor or "unknown", "actor"),
            run=_text(run or "unknown", "run"),
            action=_text(action, "action"),
            resource=_text(resource, "resource"),
            reason=_text(reason, "reason"),
            evidence=cleaned,
        )

    @property
    def when(self) -> datetime:
        return parse_time(self.time)

    def to_dict(self) -> dict[str, JsonValue]:
        return {
            "time": self.time,
            "actor": self.actor,
            "run": self.run,
            "action": self.action,
            "resource": self.resource,
            "reason": self.reason,
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEvent:
        evidence = data.get("evidence") or {}
        if not isinstance(evidence, Mapping):
            raise ValueError("evidence must be an object")
        return cls(
            time=str(data["time"]),
            actor=str(data.get("actor", "unknown")),
            run=str(data.get("run", "unknown")),
            action=str(data["action"]),
            resource=str(data["resource"]),
            reason=str(data.get("reason", "")),
            evidence=dict(evidence),
        )
