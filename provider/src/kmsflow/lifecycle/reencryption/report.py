"""What a re-encrypt run reports: one outcome per envelope, and the run's totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kmsflow.envelope.errors import EnvelopeError
from kmsflow.envelope.record import EnvelopeRecord
from kmsflow.lifecycle.outcomes import EnvelopeStatus
from kmsflow.lifecycle.targets import EnvelopeTarget, Issue, RunReport, one_line

NOT_SUPPORTED = (
    "re-encrypt supports local paths and gs:// only: other object stores offer neither rename nor "
    "generation preconditions to replace an envelope crash-safely; copy it to a local path, "
    "re-encrypt, copy it back"
)


class ReencryptNotSupportedError(EnvelopeError):
    """The target lives where re-encrypt cannot replace an envelope crash-safely (not local, not GCS)."""


_DONE = (EnvelopeStatus.REENCRYPTED, EnvelopeStatus.WOULD_REENCRYPT)


@dataclass(frozen=True)
class EnvelopeOutcome:
    """What happened to one envelope. No key material: ids, version names, counts."""

    url: str
    kind: str
    status: EnvelopeStatus
    old_envelope_id: str | None = None
    new_envelope_id: str | None = None
    old_version: str | None = None
    new_version: str | None = None
    files: int = 0
    plaintext_bytes: int = 0
    error: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "kind": self.kind,
            "status": str(self.status),
            "old_envelope_id": self.old_envelope_id,
            "new_envelope_id": self.new_envelope_id,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "files": self.files,
            "plaintext_bytes": self.plaintext_bytes,
            "error": self.error,
            "reason": self.reason,
        }


@dataclass
class ReencryptReport(RunReport):
    """What a re-encrypt run found and did (``results`` per envelope, in target order)."""

    results: list[EnvelopeOutcome] = field(default_factory=list)
    recovered: list[Issue] = field(default_factory=list)  # interrupted runs resolved (error = "")
    removed_temps: list[str] = field(default_factory=list)  # staging directories of killed runs

    def _count(self, status: EnvelopeStatus) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def envelopes(self) -> int:
        return len(self.results)

    @property
    def reencrypted(self) -> int:
        return self._count(EnvelopeStatus.REENCRYPTED)

    @property
    def would_reencrypt(self) -> int:
        return self._count(EnvelopeStatus.WOULD_REENCRYPT)

    @property
    def files(self) -> int:
        return sum(r.files for r in self.results if r.status in _DONE)

    @property
    def plaintext_bytes(self) -> int:
        return sum(r.plaintext_bytes for r in self.results if r.status in _DONE)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self._run_dict(
                envelopes=self.envelopes,
                reencrypted=self.reencrypted,
                would_reencrypt=self.would_reencrypt,
                files=self.files,
                plaintext_bytes=self.plaintext_bytes,
                recovered=[r.to_dict() for r in self.recovered],
                removed_temps=list(self.removed_temps),
            ),
            "results": [r.to_dict() for r in self.results],
        }


def outcome(
    target: EnvelopeTarget,
    status: EnvelopeStatus,
    record: EnvelopeRecord | None,
    new_id: str | None,
    new_version: str | None,
    exc: Exception | None = None,
) -> EnvelopeOutcome:
    return EnvelopeOutcome(
        url=target.url,
        kind=target.kind,
        status=status,
        old_envelope_id=record.envelope_id if record else None,
        new_envelope_id=new_id,
        old_version=record.key.crypto_key_version if record else None,
        new_version=new_version,
        files=len(record.files) if record else 0,
        plaintext_bytes=record.plaintext_size if record else 0,
        error=exc.__class__.__name__ if exc else "",
        reason=one_line(str(exc)) if exc else "",
    )
