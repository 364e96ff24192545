"""Turn rewrap/verify targets (envelope paths or roots) into the list of envelope records to visit.

A target that is an envelope (the path ``encrypt`` was given as DST, or its record) is found with
``envelope.layout.locate``; a directory that is not a dataset envelope is a *root* and is scanned
with :func:`kmsflow.inventory.scan` (all roots of one call in one scan). A caller that already holds
an :class:`~kmsflow.inventory.Inventory` (e.g. an earlier DAG task) passes it to skip rescanning
the roots it covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kmsflow.envelope.errors import EnvelopeError
from kmsflow.envelope.layout import DATASET_RECORD, locate
from kmsflow.envelope.storage import Location, resolve
from kmsflow.inventory import EnvelopeRef, Finding, Inventory, scan


@dataclass(frozen=True)
class EnvelopeTarget:
    """One envelope to visit: its user-facing URL, where its record is, and its kind.

    ``plaintext_bytes`` is what the record said when a scan read it; None for an envelope named
    directly, whose record nobody has read yet."""

    url: str
    record: Location
    kind: str
    plaintext_bytes: int | None = None


@dataclass(frozen=True)
class Issue:
    """Something a lifecycle operation could not handle -- a target it could not turn into
    envelopes, an envelope that failed or conflicted: where, the error type, a one-line reason."""

    url: str
    error: str
    reason: str

    @classmethod
    def of(cls, url: str, exc: BaseException) -> Issue:
        """The issue ``exc`` raised for ``url``."""
        return cls(url, exc.__class__.__name__, one_line(str(exc)))

    def to_dict(self) -> dict[str, str]:
        return {"url": self.url, "error": self.error, "reason": self.reason}


@dataclass
class RunReport:
    """What every lifecycle run over envelopes (rewrap, re-encrypt) reports, whatever it did to
    each: when it ran, what failed or conflicted, and whether its scan saw every root."""

    dry_run: bool
    started_at: str
    finished_at: str = ""
    elapsed_s: float = 0.0
    conflicts: list[Issue] = field(default_factory=list)
    failures: list[Issue] = field(default_factory=list)
    scan_complete: bool = True
    scan_findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every target was (or, dry run, could be) handled and every root was fully seen."""
        return not self.failures and not self.conflicts and self.scan_complete

    def _run_dict(self, **counts: Any) -> dict[str, Any]:
        """The report as JSON-safe data: the run's own fields around the operation's ``counts``."""
        return {
            "dry_run": self.dry_run,
            "ok": self.ok,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "elapsed_s": round(self.elapsed_s, 3),
            **counts,
            "conflicts": [c.to_dict() for c in self.conflicts],
            "failures": [f.to_dict() for f in self.failures],
            "scan_complete": self.scan_complete,
            "scan_findings": [f.to_dict() for f in self.scan_findings],
        }


@dataclass
class Targets:
    envelopes: list[EnvelopeTarget] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    scanned: bool = False

    @property
    def scan_complete(self) -> bool:
        return not any(f.blocking for f in self.findings)


def collect(targets: Sequence[str], *, inventory: Inventory | None = None, max_workers: int = 16) -> Targets:
    """Resolve ``targets`` (and/or ``inventory``) into deduplicated envelope targets."""
    out = Targets()
    refs: list[EnvelopeRef] = []
    roots: list[str] = []
    if inventory is not None:
        wanted = set(targets) if targets else set(inventory.roots)
        refs.extend(r for r in inventory.envelopes if r.root in wanted and not r.in_temp)
        out.findings.extend(inventory.findings)
        out.scanned = True
    known_roots = set(inventory.roots) if inventory is not None else set()
    for target in targets:
        if target in known_roots:
            continue
        try:
            loc = resolve(target)
            if loc.isdir() and not loc.child(DATASET_RECORD).isfile():
                roots.append(target)
                continue
            kind, root, record = locate(loc)
        except EnvelopeError as exc:
            out.issues.append(Issue.of(target, exc))
            continue
        except OSError as exc:
            out.issues.append(Issue.of(target, exc))
            continue
        out.envelopes.append(EnvelopeTarget(root.url, record, kind))
    if roots:
        found = scan(roots, max_workers=max_workers)
        refs.extend(r for r in found.envelopes if not r.in_temp)  # a temp's writer may be alive
        out.findings.extend(found.findings)
        out.scanned = True
    fs_cache: dict[str, Location] = {}
    out.envelopes.extend(
        EnvelopeTarget(r.url, location_of(r.record_url, fs_cache), r.kind, r.plaintext_bytes) for r in refs
    )
    seen: set[str] = set()
    unique = []
    for env in out.envelopes:
        if env.record.url not in seen:
            seen.add(env.record.url)
            unique.append(env)
    out.envelopes = unique
    return out


def location_of(url: str, cache: dict[str, Location]) -> Location:
    """``resolve(url)``, reusing one filesystem object per scheme (10,000 records, one gcsfs)."""
    if "://" not in url:
        return Location(url)
    scheme, _, rest = url.partition("://")
    base = cache.get(scheme)
    if base is None:
        base = cache[scheme] = resolve(url)
        return base
    return Location(rest, base.fs, base.protocol)


def one_line(text: str) -> str:
    """Collapse a message to one line (reports and CLI output are line-oriented)."""
    return " ".join(text.split())
