"""What a scan found: envelope references, findings, and per-key / per-version statistics.

The inventory is the evidence crypto-shredding relies on (invariant 2: a version is destroyed only
after a *complete* scan found zero envelopes referencing it). So the model is conservative:

* every parseable record is a reference, even when its data is missing or damaged (that envelope
  still names the version; the damage is a separate blocking finding);
* any doubt about coverage (a record that cannot be read or parsed, a root or directory that
  cannot be listed, data no record accounts for, a symbolic link out of every root or leading
  nowhere, a special file) is a *blocking* finding and makes ``complete`` false;
* names kmsflow reserves (temps, backups, ``_kmsflow/``) mean something only where kmsflow puts
  them: inside a dataset envelope's tree every such name is that dataset's data, and a record found
  there that parses is counted as a reference too (conservative: it names a version);
* kmsflow's own leftover temp names (``.<name>.kmsflow-<hex>.tmp`` / ``.part``) are reported as
  informational ``stale_temp`` findings: they never hold a committed record, so they cannot hide a
  reference; a decrypt's ``.plain`` temp is the informational ``plaintext_temp`` (decrypted data);
* a re-encrypt backup (``.<name>.kmsflow-<envelope id>.old``) is a *blocking*
  ``reencrypt_backup`` finding: after a kill mid-replacement it may hold the only data the record
  beside it can decrypt, and its own record (a dataset) names a version no reference counts;
* a re-encrypt staging prefix holding a ``_kmsflow/COMMIT`` marker (object stores) is a *blocking*
  ``reencrypt_committed`` finding: the envelope beside it may be half replaced (new data under the
  old record), and the staged record is the only one that decrypts it until a rerun rolls forward.

Nothing here holds key material: a reference carries names, ids, counts and dates, never the
wrapped keyset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class FindingKind(StrEnum):
    """Why a scan could not fully account for something under a root."""

    UNREACHABLE_ROOT = "unreachable_root"
    """A root (or a directory below it) is missing or could not be listed."""
    SYMLINK_OUTSIDE_ROOTS = "symlink_outside_roots"
    """A symbolic link under a root leads to a directory outside every root of the scan: envelopes
    there are reachable through the root (they decrypt through that path) but are not scanned."""
    BROKEN_SYMLINK = "broken_symlink"
    """A symbolic link under a root is dangling or loops: what it should lead to (a record on a
    disk not mounted right now, say) cannot be seen."""
    SPECIAL_FILE = "special_file"
    """A FIFO, socket or device under a root: nothing kmsflow writes, and nothing a scan can read
    to account for it."""
    UNREADABLE_RECORD = "unreadable_record"
    """A record exists but reading it failed (permission, network)."""
    INVALID_RECORD = "invalid_record"
    """A record is not a valid kmsflow envelope record (garbage, unknown format, wrong kind)."""
    RECORD_WITHOUT_DATA = "record_without_data"
    """A record lists a file that is missing, or whose ciphertext size (or, where the store lists
    one, CRC32C) differs from the listing."""
    DATA_WITHOUT_RECORD = "data_without_record"
    """A file under a root that no envelope record covers."""
    STALE_TEMP = "stale_temp"
    """A kmsflow temp file or directory left by an interrupted write (informational)."""
    PLAINTEXT_TEMP = "plaintext_temp"
    """A decrypt's plaintext temp (``.<name>.kmsflow-<hex>.plain``), informational like
    ``stale_temp``: it never holds a record, so it cannot hide a reference. A kind of its own
    because it holds *decrypted data* outside any envelope, which an operator wants to see, and
    because it is never needed to recover anything: ``kmsflow clean`` removes it at once unless a
    live decrypt holds its ``flock``."""
    REENCRYPT_BACKUP = "reencrypt_backup"
    """Old data set aside by an interrupted re-encrypt; may still be needed (blocking until a rerun)."""
    REENCRYPT_COMMITTED = "reencrypt_committed"
    """A committed re-encrypt staging prefix (GCS): its envelope may be mid-replacement and only the
    staged record decrypts it; blocking until a rerun rolls it forward."""


INFORMATIONAL = frozenset({FindingKind.STALE_TEMP, FindingKind.PLAINTEXT_TEMP})

UNSEEN = frozenset(
    {FindingKind.UNREACHABLE_ROOT, FindingKind.SYMLINK_OUTSIDE_ROOTS, FindingKind.BROKEN_SYMLINK}
)
"""Findings that mark part of a root the scan could not see into at all (whatever lies there --
envelopes, temps -- is unknown)."""


@dataclass(frozen=True)
class Finding:
    """One thing the scan could not account for; ``blocking`` ones make the scan incomplete."""

    kind: FindingKind
    url: str
    detail: str

    @property
    def blocking(self) -> bool:
        return self.kind not in INFORMATIONAL

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "url": self.url, "detail": self.detail, "blocking": self.blocking}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(FindingKind(data["kind"]), str(data["url"]), str(data["detail"]))


@dataclass(frozen=True)
class EnvelopeRef:
    """One envelope found by a scan: where it is and which exact key version wraps its data key."""

    url: str
    record_url: str
    root: str
    envelope_id: str
    kind: str
    crypto_key: str
    crypto_key_version: str
    files: int
    plaintext_bytes: int
    ciphertext_bytes: int
    created: str
    wrapped_at: str
    in_temp: bool = False
    """Found inside a kmsflow temp directory: counted (it names a version), never rewrapped or
    re-encrypted in place (its writer may be alive; ``kmsflow clean`` or a rerun resolves it)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvelopeRef:
        return cls(**{f: data[f] for f in cls.__dataclass_fields__ if f in data})


@dataclass
class VersionStats:
    """Totals over the envelopes wrapped by one CryptoKeyVersion (or one CryptoKey)."""

    name: str
    envelopes: int = 0
    files: int = 0
    plaintext_bytes: int = 0
    ciphertext_bytes: int = 0
    oldest_created: str | None = None
    newest_created: str | None = None
    oldest_wrapped_at: str | None = None
    newest_wrapped_at: str | None = None

    def add(self, ref: EnvelopeRef) -> None:
        self.envelopes += 1
        self.files += ref.files
        self.plaintext_bytes += ref.plaintext_bytes
        self.ciphertext_bytes += ref.ciphertext_bytes
        # Records carry RFC 3339 UTC timestamps with a fixed shape, so string order is time order.
        self.oldest_created = _min(self.oldest_created, ref.created)
        self.newest_created = _max(self.newest_created, ref.created)
        self.oldest_wrapped_at = _min(self.oldest_wrapped_at, ref.wrapped_at)
        self.newest_wrapped_at = _max(self.newest_wrapped_at, ref.wrapped_at)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _min(a: str | None, b: str) -> str:
    return b if a is None or b < a else a


def _max(a: str | None, b: str) -> str:
    return b if a is None or b > a else a


@dataclass(frozen=True)
class Inventory:
    """The result of :func:`kmsflow.inventory.scan` over a set of roots."""

    scan_id: str
    started_at: str
    finished_at: str
    roots: tuple[str, ...]
    envelopes: tuple[EnvelopeRef, ...]
    findings: tuple[Finding, ...] = field(default=())

    @property
    def complete(self) -> bool:
        """True only when every root was listed and every file under it is accounted for."""
        return not any(f.blocking for f in self.findings)

    @property
    def blocking_findings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.blocking)

    def by_version(self) -> dict[str, VersionStats]:
        """Statistics per CryptoKeyVersion name, sorted by name."""
        stats: dict[str, VersionStats] = {}
        for ref in self.envelopes:
            stats.setdefault(ref.crypto_key_version, VersionStats(ref.crypto_key_version)).add(ref)
        return dict(sorted(stats.items()))

    def by_key(self) -> dict[str, VersionStats]:
        """Statistics per CryptoKey name (all its versions together), sorted by name."""
        stats: dict[str, VersionStats] = {}
        for ref in self.envelopes:
            stats.setdefault(ref.crypto_key, VersionStats(ref.crypto_key)).add(ref)
        return dict(sorted(stats.items()))

    def references(self, version_name: str) -> list[EnvelopeRef]:
        """Every envelope whose data key is wrapped by ``version_name``.

        An empty list proves "no references" only when ``complete`` is true.
        """
        return [ref for ref in self.envelopes if ref.crypto_key_version == version_name]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Inventory:
        """Rebuild an inventory from :meth:`to_dict` output (e.g. passed between Airflow tasks).

        Needs the per-envelope list: a summary made with ``include_envelopes=False`` cannot prove
        anything about references, so it is refused.
        """
        if "envelopes" not in data:
            raise ValueError("inventory summary without envelopes cannot be restored")
        return cls(
            scan_id=str(data["scan_id"]),
            started_at=str(data["started_at"]),
            finished_at=str(data["finished_at"]),
            roots=tuple(data["roots"]),
            envelopes=tuple(EnvelopeRef.from_dict(e) for e in data["envelopes"]),
            findings=tuple(Finding.from_dict(f) for f in data["findings"]),
        )

    def to_dict(self, *, include_envelopes: bool = True) -> dict[str, Any]:
        """JSON-safe summary (names, counts, dates; never key material).

        ``include_envelopes=False`` leaves out the per-envelope list (keeps the per-key and
        per-version statistics and every finding): small enough for an Airflow XCom.
        """
        versions = self.by_version()
        keys = {
            name: {**stats.to_dict(), "versions": sorted(v for v in versions if v.startswith(name + "/"))}
            for name, stats in self.by_key().items()
        }
        return {
            "scan_id": self.scan_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "roots": list(self.roots),
            "complete": self.complete,
            "keys": keys,
            "versions": {name: stats.to_dict() for name, stats in versions.items()},
            "envelope_count": len(self.envelopes),
            **({"envelopes": [ref.to_dict() for ref in self.envelopes]} if include_envelopes else {}),
            "findings": [f.to_dict() for f in self.findings],
        }
