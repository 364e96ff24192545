"""Tenant / data-subject erasure: destroy every version of a tenant's key, and prove what it did.

This is the one kmsflow action allowed to make artifacts undecryptable (invariant 1's exception),
so it is narrow and loud:

* only keys the spec marks with ``tenant:`` (a key dedicated to one tenant); any other key is
  refused with :class:`~kmsflow.kms.errors.ErasureRefusedError`, since destroying a shared key
  would erase other people's data too;
* the caller types the tenant name AND the key id (or full name); anything else is a
  :class:`~kmsflow.kms.errors.ConfirmationError` before any KMS call;
* every version is scheduled for destruction -- **the primary included**. This is the only place
  kmsflow does that: ``kms.resources.destroy_version`` refuses the primary (invariant 3, which
  protects *lifecycle* operations from breaking new encryptions), and erasure must remove the key
  material new and old artifacts depend on, so :func:`_destroy_including_primary` calls KMS
  directly. Each destroy is audited (``erase``) as it happens.

**The proof** (:func:`prove_erasure`, also callable later): one scan over every root of the spec
(the tenant key's and all others', so a tenant artifact filed under another key's root is found
too), then

* for every envelope wrapped by the tenant key: one unwrap attempt, which must fail with
  :class:`~kmsflow.kms.errors.KeyVersionUnavailableError`; the report carries the version's state
  (DESTROY_SCHEDULED right after erasure, DESTROYED once ``destroy_scheduled_duration`` passed);
* for every other envelope: its record bytes are compared with the snapshot taken before the
  destroys (SHA-256; nothing rewrote them) AND its data key is unwrapped (one KMS Decrypt each,
  nothing written, the key discarded) -- all of them, not a sample, because "no other artifact was
  touched" is the claim; data files are not read (their keys are what erasure could have broken).

Within the grace window ``kmsflow.lifecycle.retirement.restore.restore`` can still undo an erasure; run
:func:`prove_erasure` after ``destroy_time`` for the final (DESTROYED) proof, which it audits as
``erase-proved``. A key with automatic rotation will get a fresh version at its next rotation:
that version never wrapped anything erased, so it does not weaken the erasure.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import kms_v1

from kmsflow.audit import AuditLog, format_time
from kmsflow.audit.actions import Action
from kmsflow.clock import utc_now
from kmsflow.envelope.record_io import parse_record, read_record_bytes
from kmsflow.envelope.storage import resolve
from kmsflow.envelope.wrap import unwrap_key
from kmsflow.inventory import EnvelopeRef, Inventory, scan
from kmsflow.kms import resources
from kmsflow.kms.crypto import default_retry
from kmsflow.kms.errors import (
    ConfirmationError,
    ErasureRefusedError,
    KeyVersionUnavailableError,
    translate,
)
from kmsflow.kms.resources import CryptoKeyVersion, VersionState, state_name
from kmsflow.lifecycle.targets import one_line
from kmsflow.pools import ContextThreadPool
from kmsflow.spec.model import CryptoKeySpec, KeySpec

log = logging.getLogger(__name__)

GONE = (VersionState.DESTROY_SCHEDULED, VersionState.DESTROYED)


@dataclass
class ErasedVersion:
    """One version of the erased key: its state before and after, and when KMS destroys it."""

    version: str
    state_before: str
    state_after: str
    primary: bool
    destroy_time: str | None
    action: str  # destroy_scheduled | already_scheduled | already_destroyed

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class EnvelopeCheck:
    """One envelope of the proof: tenant ones must refuse to unwrap, others must still unwrap."""

    url: str
    crypto_key_version: str
    tenant: bool
    ok: bool
    detail: str
    state: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ErasureReport:
    """The erasure and its proof; JSON-safe via :meth:`to_dict`, readable via :meth:`render`."""

    key: str
    tenant: str
    run_id: str
    time: str
    versions: list[ErasedVersion] = field(default_factory=list)
    scan_id: str = ""
    snapshot_scan_id: str | None = None
    scan_complete: bool = False
    blocking_findings: list[dict[str, Any]] = field(default_factory=list)
    tenant_envelopes: list[EnvelopeCheck] = field(default_factory=list)
    other_envelopes: list[EnvelopeCheck] = field(default_factory=list)
    records_compared: bool = False

    @property
    def problems(self) -> list[EnvelopeCheck]:
        return [c for c in self.tenant_envelopes + self.other_envelopes if not c.ok]

    @property
    def all_destroyed(self) -> bool:
        """Every version's material is gone for good (after the grace period)."""
        return bool(self.versions) and all(v.state_after == "DESTROYED" for v in self.versions)

    @property
    def ok(self) -> bool:
        """Every tenant envelope refuses to unwrap, every other one unwraps, the scan saw everything."""
        return self.scan_complete and not self.problems and bool(self.versions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "tenant": self.tenant,
            "run_id": self.run_id,
            "time": self.time,
            "ok": self.ok,
            "all_destroyed": self.all_destroyed,
            "versions": [v.to_dict() for v in self.versions],
            "scan_id": self.scan_id,
            "snapshot_scan_id": self.snapshot_scan_id,
            "scan_complete": self.scan_complete,
            "blocking_findings": list(self.blocking_findings),
            "records_compared": self.records_compared,
            "tenant_envelopes": [c.to_dict() for c in self.tenant_envelopes],
            "other_envelopes": [c.to_dict() for c in self.other_envelopes],
            "summary": {
                "tenant_envelopes": len(self.tenant_envelopes),
                "tenant_undecryptable": sum(c.ok for c in self.tenant_envelopes),
                "other_envelopes": len(self.other_envelopes),
                "other_still_decrypt": sum(c.ok for c in self.other_envelopes),
                "problems": len(self.problems),
            },
        }

    def render(self) -> str:
        verdict = "PROVED" if self.ok else "NOT PROVED"
        lines = [
            f"kmsflow erase {self.key} (tenant {self.tenant}) at {self.time}: {verdict}",
            f"  proof scan {self.scan_id}: {'complete' if self.scan_complete else 'INCOMPLETE'}"
            + (f" (snapshot before erasure: scan {self.snapshot_scan_id})" if self.snapshot_scan_id else ""),
        ]
        for v in self.versions:
            primary = " (primary)" if v.primary else ""
            when = ""
            if v.destroy_time:
                verb = "destroyed at" if v.state_after == "DESTROYED" else "KMS destroys it at"
                when = f", {verb} {v.destroy_time}"
            lines.append(f"  {v.version}{primary}: {v.state_before} -> {v.state_after}{when}")
        gone = sum(c.ok for c in self.tenant_envelopes)
        lines.append(f"  tenant envelopes undecryptable: {gone}/{len(self.tenant_envelopes)}")
        kept = sum(c.ok for c in self.other_envelopes)
        how = "record unchanged and key unwraps" if self.records_compared else "key unwraps"
        lines.append(f"  other envelopes intact ({how}): {kept}/{len(self.other_envelopes)}")
        for f in self.blocking_findings:
            lines.append(f"  finding {f.get('kind')} {f.get('url')}: {f.get('detail')}")
        for c in self.problems:
            lines.append(f"  PROBLEM {c.url}: {c.detail}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- guards


def _tenant_key(spec: KeySpec, key: str) -> tuple[str, CryptoKeySpec]:
    matches = [(n, k) for n, k in spec.crypto_keys() if key in (n, k.id)]
    if len(matches) != 1:
        why = "is not in the spec" if not matches else "is ambiguous (use the full key name)"
        raise ErasureRefusedError(f"refusing to erase {key!r}: it {why}")
    name, key_spec = matches[0]
    if not key_spec.tenant:
        raise ErasureRefusedError(
            f"refusing to erase {name}: the spec does not mark it with 'tenant:', so it may protect "
            "other tenants' data; erasure destroys only keys dedicated to one tenant"
        )
    return name, key_spec


def check_erase_confirmation(
    name: str, key_spec: CryptoKeySpec, confirm_tenant: str | None, confirm_key: str | None
) -> None:
    """Refuse unless the tenant name and the key (id or full name) were both typed exactly."""
    tenant_ok = (confirm_tenant or "").strip() == key_spec.tenant
    key_ok = (confirm_key or "").strip() in (key_spec.id, name)
    if not (tenant_ok and key_ok):
        wrong = [w for w, ok in (("tenant", tenant_ok), ("key", key_ok)) if not ok]
        raise ConfirmationError(
            f"refusing to erase {name}: erasure destroys every version of the key and cannot be "
            f"undone after the grace period; confirm by typing the tenant name {key_spec.tenant!r} "
            f"and the key id {key_spec.id!r} (wrong or missing: {', '.join(wrong)}). Nothing was changed."
        )


# ----------------------------------------------------------------------------- destroy


def _time(value: Any) -> str | None:
    if not isinstance(value, datetime) or value.timestamp() <= 0:
        return None
    return format_time(value)


def _destroy_including_primary(client: kms_v1.KeyManagementServiceClient, name: str) -> CryptoKeyVersion:
    """DestroyCryptoKeyVersion without ``kms.resources``' primary guard -- erasure only (see module doc)."""
    try:
        return client.destroy_crypto_key_version(request={"name": name}, retry=default_retry())
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"destroy {name} (erasure)") from exc


def _all_roots(spec: KeySpec) -> list[str]:
    roots: list[str] = []
    for _, key in spec.crypto_keys():
        roots.extend(r for r in key.roots if r not in roots)
    return roots


def _record_digest(ref: EnvelopeRef) -> str:
    return hashlib.sha256(read_record_bytes(resolve(ref.record_url))).hexdigest()


def erase_tenant(
    client: kms_v1.KeyManagementServiceClient,
    spec: KeySpec,
    key: str,
    *,
    confirm_tenant: str | None,
    confirm_key: str | None,
    audit: AuditLog,
    run_id: str,
    reason: str,
    now: datetime | None = None,
    max_workers: int = 16,
) -> ErasureReport:
    """Erase the tenant key ``key`` (id or full name): destroy all its versions, then prove it.

    Guards raise before any KMS call (``ErasureRefusedError``, ``ConfirmationError``). The proof's
    "before" snapshot (record digests of every other envelope) is taken before the first destroy.
    """
    name, key_spec = _tenant_key(spec, key)
    check_erase_confirmation(name, key_spec, confirm_tenant, confirm_key)
    if not reason or not reason.strip():
        raise ValueError("erasure needs a reason (e.g. the data-subject request id); it is audited")
    moment = now.astimezone(UTC) if now is not None else utc_now()
    tenant = str(key_spec.tenant)

    before = scan(_all_roots(spec), max_workers=max_workers)
    digests = _digests(before, name, max_workers)
    tenant_count = sum(1 for r in before.envelopes if r.crypto_key == name)

    primary = resources.get_key(client, name).primary.name
    erased: list[ErasedVersion] = []
    for version in resources.list_versions(client, name):
        state_before = state_name(version.state)
        if version.state in GONE:
            action = "already_destroyed" if version.state == VersionState.DESTROYED else "already_scheduled"
            after: Any = version
        else:
            after = _destroy_including_primary(client, version.name)
            action = "destroy_scheduled"
            audit.append(
                Action.ERASE,
                version.name,
                reason=f"erasure for tenant {tenant}: {reason}",
                evidence={
                    "tenant": tenant,
                    "primary": version.name == primary,
                    "state_before": state_before,
                    "state_after": state_name(after.state),
                    "destroy_time": _time(after.destroy_time),
                    "scan_id": before.scan_id,
                    "tenant_envelopes": tenant_count,
                },
                run=run_id,
                time=moment,
            )
            log.warning("erasure: scheduled %s for destruction (tenant %s)", version.name, tenant)
        erased.append(
            ErasedVersion(
                version=version.name,
                state_before=state_before,
                state_after=state_name(after.state),
                primary=version.name == primary,
                destroy_time=_time(after.destroy_time) or _time(after.destroy_event_time),
                action=action,
            )
        )
    report = prove_erasure(
        client, spec, name, digests=digests, run_id=run_id, now=moment, max_workers=max_workers
    )
    report.snapshot_scan_id = before.scan_id
    report.versions = [_merge(e, p) for e, p in zip(erased, _by_name(report.versions, erased), strict=True)]
    return report


def _by_name(found: list[ErasedVersion], wanted: list[ErasedVersion]) -> list[ErasedVersion | None]:
    index = {v.version: v for v in found}
    return [index.get(w.version) for w in wanted]


def _merge(erased: ErasedVersion, proved: ErasedVersion | None) -> ErasedVersion:
    """What erasure did (state before, action) with the state the proof observed afterwards."""
    if proved is None:
        return erased
    erased.state_after = proved.state_after
    erased.destroy_time = proved.destroy_time or erased.destroy_time
    return erased


def _digests(inventory: Inventory, tenant_key: str, max_workers: int) -> dict[str, str]:
    others = [r for r in inventory.envelopes if r.crypto_key != tenant_key]

    def one(ref: EnvelopeRef) -> tuple[str, str]:
        try:
            return ref.record_url, _record_digest(ref)
        except Exception as exc:  # reported by the proof as "record changed or unreadable"
            return ref.record_url, f"unreadable: {exc.__class__.__name__}"

    with ContextThreadPool(max_workers=max_workers, thread_name_prefix="kmsflow-erase") as pool:
        return dict(pool.map(one, others))


# ----------------------------------------------------------------------------- proof


def prove_erasure(
    client: kms_v1.KeyManagementServiceClient,
    spec: KeySpec,
    key: str,
    *,
    digests: Mapping[str, str] | None = None,
    audit: AuditLog | None = None,
    run_id: str = "cli",
    now: datetime | None = None,
    max_workers: int = 16,
) -> ErasureReport:
    """Check an erasure: tenant envelopes refuse to unwrap, all others still unwrap (see module doc).

    ``digests`` (record URL -> SHA-256 taken before the destroys) adds the byte-for-byte
    comparison of other envelopes' records. With ``audit`` and a fully DESTROYED, proved key, an
    ``erase-proved`` event is appended (the final record of the erasure).
    """
    name, key_spec = _tenant_key(spec, key)
    moment = now.astimezone(UTC) if now is not None else utc_now()
    report = ErasureReport(key=name, tenant=str(key_spec.tenant), run_id=run_id, time=format_time(moment))
    primary = resources.get_key(client, name).primary.name
    versions = resources.list_versions(client, name)
    states = {v.name: state_name(v.state) for v in versions}
    for v in versions:
        report.versions.append(
            ErasedVersion(
                version=v.name,
                state_before=state_name(v.state),
                state_after=state_name(v.state),
                primary=v.name == primary,
                destroy_time=_time(v.destroy_event_time) or _time(v.destroy_time),
                action="observed",
            )
        )
    inventory = scan(_all_roots(spec), max_workers=max_workers)
    report.scan_id = inventory.scan_id
    report.scan_complete = inventory.complete
    report.blocking_findings = [f.to_dict() for f in inventory.blocking_findings]
    report.records_compared = digests is not None

    def one(ref: EnvelopeRef) -> EnvelopeCheck:
        if ref.crypto_key == name:
            return _check_tenant(client, ref, states)
        return _check_other(client, ref, digests)

    with ContextThreadPool(max_workers=max_workers, thread_name_prefix="kmsflow-prove") as pool:
        for check in pool.map(one, inventory.envelopes):
            (report.tenant_envelopes if check.tenant else report.other_envelopes).append(check)
    if digests is not None:
        seen = {r.record_url for r in inventory.envelopes}
        for url in sorted(set(digests) - seen):
            report.other_envelopes.append(
                EnvelopeCheck(url, "", tenant=False, ok=False, detail="record present before erasure is gone")
            )
    if audit is not None and report.ok and report.all_destroyed:
        audit.append(
            Action.ERASE_PROVED,
            name,
            reason=f"erasure for tenant {report.tenant} complete: every version DESTROYED",
            evidence={
                "tenant": report.tenant,
                "scan_id": report.scan_id,
                "tenant_envelopes_undecryptable": len(report.tenant_envelopes),
                "other_envelopes_decrypt": len(report.other_envelopes),
                "versions": {v.version: v.state_after for v in report.versions},
            },
            run=run_id,
            time=moment,
        )
    return report


def _unwrap(client: kms_v1.KeyManagementServiceClient, ref: EnvelopeRef) -> None:
    data = read_record_bytes(resolve(ref.record_url))
    record = parse_record(data, ref.record_url, ref.kind)
    unwrap_key(client, record.key, record.envelope_id, ref.record_url)  # discarded at once


def _check_tenant(
    client: kms_v1.KeyManagementServiceClient, ref: EnvelopeRef, states: Mapping[str, str]
) -> EnvelopeCheck:
    version = ref.crypto_key_version
    state = states.get(version)
    try:
        _unwrap(client, ref)
    except KeyVersionUnavailableError as exc:
        ok = state in ("DESTROY_SCHEDULED", "DESTROYED")
        detail = f"unwrap refused: {version} is {state}" if ok else f"unwrap refused but {version} is {state}"
        return EnvelopeCheck(ref.url, version, True, ok, detail + f" ({one_line(str(exc))})", state)
    except Exception as exc:
        return EnvelopeCheck(
            ref.url, version, True, False, f"unexpected {exc.__class__.__name__}: {one_line(str(exc))}", state
        )
    return EnvelopeCheck(ref.url, version, True, False, f"STILL DECRYPTS: {version} is {state}", state)


def _check_other(
    client: kms_v1.KeyManagementServiceClient, ref: EnvelopeRef, digests: Mapping[str, str] | None
) -> EnvelopeCheck:
    version = ref.crypto_key_version
    note = ""
    try:
        if digests is not None:
            if ref.record_url not in digests:
                note = ", record new since the erasure began"
            elif digests[ref.record_url] != _record_digest(ref):
                return EnvelopeCheck(ref.url, version, False, False, "record changed during erasure")
            else:
                note = ", record unchanged"
        _unwrap(client, ref)
    except Exception as exc:  # any failure to unwrap is the thing this proof looks for
        return EnvelopeCheck(
            ref.url, version, False, False, f"does not unwrap: {exc.__class__.__name__}: {one_line(str(exc))}"
        )
    return EnvelopeCheck(ref.url, version, False, True, "unwraps" + note)


__all__ = [
    "EnvelopeCheck",
    "ErasedVersion",
    "ErasureReport",
    "check_erase_confirmation",
    "erase_tenant",
    "prove_erasure",
]
