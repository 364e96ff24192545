"""What a shred run decided, per key and per version: JSON-safe for XCom, readable for people.

Reports carry names, states, counts, times and scan ids only -- never key material (invariant 4).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from kmsflow.inventory import Inventory

ACTED = frozenset({"disabled", "soak_started", "destroy_scheduled", "destroyed_confirmed"})
"""Outcomes that changed KMS state or the audit record."""
WOULD = frozenset({"would_disable", "would_start_soak", "would_destroy", "would_confirm"})
"""Dry-run outcomes: what a live run would have done."""


@dataclass
class VersionDecision:
    """What this run did (or refused, or would do) with one key version, and why.

    ``outcome`` is one of: ``kept`` (nothing to do yet), ``refused`` (a guard said no),
    ``failed`` (KMS refused), an action taken (``disabled``, ``soak_started``,
    ``destroy_scheduled``, ``destroyed_confirmed``) or, in a dry run, ``would_*``.
    """

    version: str
    state: str
    outcome: str
    reason: str
    references: int | None = None
    scan_id: str | None = None
    since: str | None = None
    due: str | None = None

    @property
    def refused(self) -> bool:
        return self.outcome in ("refused", "failed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "state": self.state,
            "outcome": self.outcome,
            "reason": self.reason,
            "references": self.references,
            "scan_id": self.scan_id,
            "since": self.since,
            "due": self.due,
        }


@dataclass
class ScanSummary:
    """The evidence of one proof scan (names and counts only)."""

    scan_id: str
    roots: list[str]
    complete: bool
    envelopes: int
    blocking: list[dict[str, Any]]

    @classmethod
    def of(cls, inventory: Inventory) -> ScanSummary:
        return cls(
            scan_id=inventory.scan_id,
            roots=list(inventory.roots),
            complete=inventory.complete,
            envelopes=len(inventory.envelopes),
            blocking=[f.to_dict() for f in inventory.blocking_findings],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "scan_id": self.scan_id,
            "roots": list(self.roots),
            "complete": self.complete,
            "envelopes": self.envelopes,
            "blocking_findings": list(self.blocking),
        }


@dataclass
class KeyDecision:
    """One key's part of a run: its primary, the proof scan (if one was needed), each version."""

    key: str
    primary: str | None
    roots: list[str]
    scan: ScanSummary | None = None
    blocked: str | None = None
    versions: list[VersionDecision] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "primary": self.primary,
            "roots": list(self.roots),
            "scan": self.scan.to_dict() if self.scan else None,
            "blocked": self.blocked,
            "versions": [v.to_dict() for v in self.versions],
        }


@dataclass
class ShredReport:
    """Everything one :func:`run_shred` call decided; JSON-safe via :meth:`to_dict` (XCom)."""

    run_id: str
    now: str
    dry_run: bool
    manual: bool
    keys: list[KeyDecision] = field(default_factory=list)

    def decisions(self) -> list[VersionDecision]:
        return [v for k in self.keys for v in k.versions]

    def decision(self, version: str) -> VersionDecision | None:
        return next((v for v in self.decisions() if v.version == version), None)

    @property
    def actions(self) -> list[VersionDecision]:
        """The versions whose state (or record) this run changed."""
        return [v for v in self.decisions() if v.outcome in ACTED]

    @property
    def refusals(self) -> list[VersionDecision]:
        return [v for v in self.decisions() if v.refused]

    @property
    def scan_ids(self) -> list[str]:
        return [k.scan.scan_id for k in self.keys if k.scan]

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = defaultdict(int)
        for v in self.decisions():
            counts[v.outcome] += 1
        return {
            "run_id": self.run_id,
            "now": self.now,
            "dry_run": self.dry_run,
            "manual": self.manual,
            "summary": dict(sorted(counts.items())),
            "scan_ids": self.scan_ids,
            "keys": [k.to_dict() for k in self.keys],
        }

    def render(self) -> str:
        mode = "DRY RUN, nothing changed" if self.dry_run else "live"
        kind = "manual" if self.manual else "scheduled"
        lines = [f"kmsflow shred {self.run_id} at {self.now} ({kind}, {mode})"]
        for k in self.keys:
            lines.append(f"key {k.key}")
            lines.append(f"  primary: {k.primary or '(none)'}")
            if k.scan:
                state = "complete" if k.scan.complete else "INCOMPLETE"
                lines.append(
                    f"  scan {k.scan.scan_id}: {state}, {k.scan.envelopes} envelope(s) under "
                    f"{len(k.scan.roots)} root(s)"
                )
            if k.blocked:
                lines.append(f"  BLOCKED: {k.blocked}")
            for v in k.versions:
                lines.append(f"  {_short(v.version)} [{v.state}] {v.outcome}: {v.reason}")
        return "\n".join(lines)


def _short(version: str) -> str:
    return "v" + version.rsplit("/", 1)[-1]
