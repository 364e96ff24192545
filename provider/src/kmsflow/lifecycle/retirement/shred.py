"""Safe crypto-shredding of retired key versions: a resumable state machine, one step per run.

Each scheduled run (``kmsflow_shred``) calls :func:`run_shred` once; every call re-reads KMS and
the audit log, so a run can be killed at any point and the next one carries on. Per version of each
key in the spec (oldest first):

====================  ==============================================================  ============
KMS state             condition                                                        step
====================  ==============================================================  ============
primary (any state)   never a candidate (invariant 3; ``kms.resources`` also refuses)  kept
ENABLED               non-primary for < ``retention.retired_version_enabled_for``      kept (waits)
ENABLED               retired long enough, complete scan finds zero references         **disable**
DISABLED              no kmsflow record of when it was disabled                        soak-start
DISABLED              < ``retention.soak_period`` since kmsflow disabled it            kept (soaks)
DISABLED              soaked, a *new* complete scan finds zero references              **destroy**
DESTROY_SCHEDULED     scheduled by kmsflow                                             kept (grace)
DESTROYED             scheduled by kmsflow, not yet confirmed                          **confirm**
====================  ==============================================================  ============

**Proof** (invariant 2): before a disable or a destroy, :func:`kmsflow.inventory.scan` runs over
*every* root the spec configures, not only the key's own (once per run, so the destroy is proved by
a scan made in the destroy's run, never the one that justified the disable): an envelope filed under
another key's root still depends on this key, and only a scan of all roots can see it. The price is
that one broken root blocks shredding for every key, which is the safe direction. An incomplete
scan (any blocking finding) refuses every step that needs proof and lists the findings; a version
referenced by any envelope is reported with its count and never touched. A key the spec assigns no
roots can never be proved unreferenced, so it is never shredded.

**Non-primary-since** is approximated by the ``create_time`` of the next newer version: KMS does
not record when the primary moved, and rotation (automatic or ``rotate``) makes each new version
primary at creation. When the primary was moved *back* to an older version by hand, the newer
versions have no newer sibling and no retirement date, so they are kept (the safe direction).

A version restored *and enabled* (``lifecycle.restore``) counts as retired from its ``restore``
event instead, so it stays enabled a full retention period again before shred looks at it.

**The soak clock** is the audit log: the soak starts at the time of the latest ``disable``,
``soak-start`` or ``restore`` event for the version (a restore restarts the soak). A DISABLED
version without such an event (disabled by hand, or the audit write failed after KMS disabled it)
gets a ``soak-start`` event now, so its soak starts at this run -- never earlier. Limitation: a
version kmsflow disabled, that someone then enabled and disabled again by hand, soaks from
kmsflow's event (KMS does not say when a state changed); the proof scan still guards it. All events of a
run are stamped with the run's ``now``, the same clock as KMS's timestamps (tests pass the emulator's).

**Guards** (each refuses before any KMS mutation, with a message saying why): the primary; a
referenced version; an incomplete scan; ``dry_run`` (the report says what would happen, nothing is
written, not even the audit log); a manual run (``keys`` given) that is not dry-run must be
confirmed by typing each key's id or full name in ``confirm``
(:class:`~kmsflow.kms.errors.ConfirmationError`).

Every KMS mutation is followed by its audit event (invariant 5): mutate first, then record, so
the log never claims an action that did not happen; if the record fails, the run fails loudly and
the next run sees the state without a record and takes the safe reading (soak starts again).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.cloud import kms_v1

from kmsflow.audit import AuditEvent, AuditLog, format_time
from kmsflow.audit.actions import SOAK_ACTIONS, Action
from kmsflow.clock import utc_now
from kmsflow.inventory import Inventory, scan
from kmsflow.kms import asymmetric, resources
from kmsflow.kms.errors import ConfirmationError, KmsError
from kmsflow.kms.resources import CryptoKeyVersion, state_name
from kmsflow.lifecycle.retirement.report import KeyDecision, ScanSummary, ShredReport, VersionDecision
from kmsflow.spec.durations import format_duration
from kmsflow.spec.model import CryptoKeySpec, KeySpec, Retention

log = logging.getLogger(__name__)

Record = Callable[[str, str, str, dict[str, Any]], None]
"""Appends one audit event: (action, resource, reason, evidence), stamped with the run's clock."""

MAX_FINDINGS_SHOWN = 5


# ----------------------------------------------------------------------------- helpers


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _vid(version: CryptoKeyVersion) -> int:
    return int(version.name.rsplit("/", 1)[-1])


def _time(value: Any) -> datetime | None:
    """A proto-plus timestamp field as an aware datetime, None when unset (epoch 0)."""
    if not isinstance(value, datetime):
        return None
    value = _utc(value)
    return None if value.timestamp() <= 0 else value


def non_primary_since(versions: Sequence[CryptoKeyVersion], version: CryptoKeyVersion) -> datetime | None:
    """When ``version`` stopped being primary, approximated by the next newer version's create_time.

    None when no newer version exists (the primary was moved back by hand: no date to count from).
    """
    newer = sorted((v for v in versions if _vid(v) > _vid(version)), key=_vid)
    return _time(newer[0].create_time) if newer else None


def check_confirmation(selected: Sequence[tuple[str, CryptoKeySpec]], confirm: str | None) -> None:
    """Refuse (``ConfirmationError``) unless ``confirm`` names every selected key (id or full name).

    Several keys are confirmed by listing them separated by commas or spaces.
    """
    typed = set(re.split(r"[\s,]+", (confirm or "").strip())) - {""}
    missing = [name for name, key in selected if name not in typed and key.id not in typed]
    if missing:
        hint = " ".join(k.id for n, k in selected if n in missing)
        raise ConfirmationError(
            "refusing a manual shred run that is not confirmed: type the name of each key to shred "
            f"as confirm (expected {hint!r}, or the full key name; got {confirm!r}); "
            "or run with dry_run=True to see what it would do. Nothing was changed."
        )


class _Events:
    """The audit log read once per run, indexed by resource."""

    def __init__(self, audit: AuditLog) -> None:
        self._by_resource: dict[str, list[AuditEvent]] = defaultdict(list)
        for event in audit.events():
            self._by_resource[event.resource].append(event)

    def last(self, resource: str, actions: Sequence[str]) -> AuditEvent | None:
        found = [e for e in self._by_resource.get(resource, []) if e.action in actions]
        return sorted(found, key=lambda e: e.time)[-1] if found else None


# ----------------------------------------------------------------------------- the run


@dataclass
class _Pending:
    """A version that needs a proof scan before its next step."""

    version: CryptoKeyVersion
    step: str  # disable | destroy
    since: datetime
    evidence: dict[str, Any]


class _ProofScan:
    """One inventory scan of every configured root, made on first need and shared by the run."""

    def __init__(
        self, roots: Sequence[str], max_workers: int, on_scan: Callable[[Inventory], None] | None = None
    ) -> None:
        self._roots = list(roots)
        self._max_workers = max_workers
        self._on_scan = on_scan
        self._inventory: Inventory | None = None

    def inventory(self) -> Inventory:
        if self._inventory is None:
            self._inventory = scan(self._roots, max_workers=self._max_workers)
            if self._on_scan is not None:
                self._on_scan(self._inventory)
        return self._inventory


def run_shred(
    client: kms_v1.KeyManagementServiceClient,
    spec: KeySpec,
    *,
    now: datetime | None = None,
    dry_run: bool = True,
    audit: AuditLog,
    keys: Sequence[str] | None = None,
    confirm: str | None = None,
    run_id: str,
    max_workers: int = 16,
    on_scan: Callable[[Inventory], None] | None = None,
) -> ShredReport:
    """Advance every retired version of the spec's keys (or of ``keys``) by at most one step.

    ``now`` is the run's clock (default: wall clock UTC); ``keys`` given makes this a *manual* run,
    which unless ``dry_run`` must be confirmed (``confirm`` names each key; else
    ``ConfirmationError`` before any KMS call). ``on_scan`` is given the proof scan when one is made
    (for the inventory snapshot; it must not raise). Refusals and KMS errors on one version are reported,
    never raised, so one bad version cannot stall the rest; audit-log failures do raise.
    """
    moment = _utc(now) if now is not None else utc_now()
    manual = keys is not None
    selected = spec.select_keys(keys)
    if manual and not dry_run:
        check_confirmation(selected, confirm)
    report = ShredReport(run_id=run_id, now=format_time(moment), dry_run=dry_run, manual=manual)
    events = _Events(audit)
    proof = _ProofScan(spec.roots(), max_workers, on_scan)
    for key_name, key_spec in selected:
        report.keys.append(
            _shred_key(client, key_name, key_spec, moment, dry_run, audit, events, run_id, proof)
        )
    log.info(
        "shred %s%s: %d action(s), %d refusal(s)",
        run_id,
        " (dry run)" if dry_run else "",
        len(report.actions),
        len(report.refusals),
    )
    return report


def _shred_key(
    client: kms_v1.KeyManagementServiceClient,
    key_name: str,
    key_spec: CryptoKeySpec,
    now: datetime,
    dry_run: bool,
    audit: AuditLog,
    events: _Events,
    run_id: str,
    proof: _ProofScan,
) -> KeyDecision:
    try:
        key = resources.get_key(client, key_name)
        versions = sorted(resources.list_versions(client, key_name), key=_vid)
    except KmsError as exc:
        return KeyDecision(key_name, None, list(key_spec.roots), blocked=f"cannot read the key: {exc}")
    primary = key.primary.name or None
    if key.purpose in asymmetric.RECIPIENT_PURPOSES:  # no primary: the current version stands in
        current = asymmetric.newest_enabled(versions)
        primary = current.name if current is not None else None
    decision = KeyDecision(key_name, primary, list(key_spec.roots))

    def record(action: str, resource: str, reason: str, evidence: dict[str, Any]) -> None:
        audit.append(action, resource, reason=reason, evidence=evidence, run=run_id, time=now)

    steps = _VersionSteps(versions, key_spec.retention, now, dry_run, events, record)
    pending: list[_Pending] = []
    for v in versions:
        if v.name == primary:
            step: VersionDecision | _Pending = VersionDecision(
                v.name, state_name(v.state), "kept", "primary version: never disabled or destroyed"
            )
        else:
            handler = _STEP_BY_STATE.get(state_name(v.state), _VersionSteps.other)
            step = handler(steps, v)
        if isinstance(step, _Pending):
            pending.append(step)
        else:
            decision.versions.append(step)
    if pending:
        _prove_and_act(client, decision, key_spec, pending, now, dry_run, record, proof)
    decision.versions.sort(key=lambda d: int(d.version.rsplit("/", 1)[-1]))
    return decision


@dataclass
class _VersionSteps:
    """One handler per non-primary version state: the table in the module docstring. Each returns
    the version's decision, or the :class:`_Pending` step that needs a proof scan first."""

    versions: Sequence[CryptoKeyVersion]
    retention: Retention
    now: datetime
    dry_run: bool
    events: _Events
    record: Record

    def enabled(self, v: CryptoKeyVersion) -> VersionDecision | _Pending:
        """Retired longer than ``retired_version_enabled_for``: disable (after a proof)."""
        state = state_name(v.state)
        since = non_primary_since(self.versions, v)
        restored = self.events.last(v.name, (Action.RESTORE,))
        if since is not None and restored is not None and restored.when > since:
            since = restored.when  # restored and enabled on purpose: a full retention again
        if since is None:
            return VersionDecision(
                v.name,
                state,
                "kept",
                "newer than the primary (primary moved back by hand): no retirement date",
            )
        enabled_for = self.retention.retired_version_enabled_for
        due = since + enabled_for
        if self.now < due:
            return VersionDecision(
                v.name,
                state,
                "kept",
                f"retired at {format_time(since)}; stays enabled "
                f"{format_duration(enabled_for)} until {format_time(due)}",
                since=format_time(since),
                due=format_time(due),
            )
        return _Pending(v, Action.DISABLE, since, {"non_primary_since": format_time(since)})

    def disabled(self, v: CryptoKeyVersion) -> VersionDecision | _Pending:
        """Soaked ``soak_period`` since kmsflow disabled it (or first saw it disabled): destroy
        (after a proof); a DISABLED version without a soak record starts its clock now."""
        state = state_name(v.state)
        soak = self.retention.soak_period
        started = self.events.last(v.name, SOAK_ACTIONS)
        if started is None:
            due = self.now + soak
            reason = (
                "DISABLED without a kmsflow record of when: the soak clock starts now "
                f"({format_duration(soak)}, until {format_time(due)})"
            )
            if self.dry_run:
                outcome = "would_start_soak"
            else:
                self.record(
                    Action.SOAK_START, v.name, reason, {"state": state, "soak_until": format_time(due)}
                )
                outcome = "soak_started"
            return VersionDecision(
                v.name, state, outcome, reason, since=format_time(self.now), due=format_time(due)
            )
        due = started.when + soak
        if self.now < due:
            return VersionDecision(
                v.name,
                state,
                "kept",
                f"soaking since {started.time} ({started.action}) until {format_time(due)}",
                since=started.time,
                due=format_time(due),
            )
        evidence = {
            "soak_started": started.time,
            "soak_started_by": started.action,
            "disable_scan_id": started.evidence.get("scan_id"),
        }
        return _Pending(v, Action.DESTROY, started.when, evidence)

    def destroy_scheduled(self, v: CryptoKeyVersion) -> VersionDecision:
        """Waiting for KMS to destroy it: nothing to do but say who scheduled it, and when."""
        ours = self.events.last(v.name, (Action.DESTROY, Action.ERASE))
        when = _time(v.destroy_time)
        until = format_time(when) if when else "unknown"
        reason = (
            f"scheduled for destruction by kmsflow ({ours.action}) at {ours.time}; destroyed at {until} "
            "(restore possible until then)"
            if ours
            else f"scheduled for destruction outside kmsflow; destroyed at {until}"
        )
        return VersionDecision(v.name, state_name(v.state), "kept", reason, due=until)

    def destroyed(self, v: CryptoKeyVersion) -> VersionDecision:
        """Destroyed after kmsflow scheduled it: confirm it in the audit log, once."""
        state = state_name(v.state)
        ours = self.events.last(v.name, (Action.DESTROY, Action.ERASE))
        confirmed = self.events.last(v.name, (Action.DESTROYED_CONFIRMED,))
        if ours is None or (confirmed is not None and confirmed.time >= ours.time):
            why = "destruction confirmed earlier" if ours else "destroyed outside kmsflow"
            return VersionDecision(v.name, state, "kept", why)
        destroyed_at = _time(v.destroy_event_time) or _time(v.destroy_time)
        reason = f"KMS reports DESTROYED (scheduled by kmsflow {ours.action} at {ours.time})"
        if self.dry_run:
            return VersionDecision(v.name, state, "would_confirm", reason)
        evidence = {
            "state": state,
            "destroyed_at": format_time(destroyed_at) if destroyed_at else None,
            "destroy_scan_id": ours.evidence.get("scan_id"),
        }
        self.record(Action.DESTROYED_CONFIRMED, v.name, reason, evidence)
        return VersionDecision(v.name, state, "destroyed_confirmed", reason)

    def other(self, v: CryptoKeyVersion) -> VersionDecision:
        state = state_name(v.state)
        return VersionDecision(v.name, state, "kept", f"{state}: nothing to do")


_Step = Callable[[_VersionSteps, CryptoKeyVersion], "VersionDecision | _Pending"]
_STEP_BY_STATE: dict[str, _Step] = {
    "ENABLED": _VersionSteps.enabled,
    "DISABLED": _VersionSteps.disabled,
    "DESTROY_SCHEDULED": _VersionSteps.destroy_scheduled,
    "DESTROYED": _VersionSteps.destroyed,
}


def _prove_and_act(
    client: kms_v1.KeyManagementServiceClient,
    decision: KeyDecision,
    key_spec: CryptoKeySpec,
    pending: list[_Pending],
    now: datetime,
    dry_run: bool,
    record: Record,
    proof: _ProofScan,
) -> None:
    """The run's scan of every root, then each pending step if (and only if) it proves safe."""
    if not key_spec.roots:
        decision.blocked = (
            "the spec assigns no roots to this key, so no scan can prove a version unreferenced"
        )
        for p in pending:
            decision.versions.append(
                VersionDecision(
                    p.version.name,
                    state_name(p.version.state),
                    "refused",
                    f"{p.step} refused: {decision.blocked}",
                )
            )
        return
    inventory = proof.inventory()
    summary = ScanSummary.of(inventory)
    decision.scan = summary
    if not inventory.complete:
        shown = "; ".join(
            f"{f.kind} {f.url}: {f.detail}" for f in inventory.blocking_findings[:MAX_FINDINGS_SHOWN]
        )
        more = len(inventory.blocking_findings) - MAX_FINDINGS_SHOWN
        decision.blocked = (
            f"scan {inventory.scan_id} is incomplete ({len(inventory.blocking_findings)} blocking "
            f"finding(s): {shown}{f'; and {more} more' if more > 0 else ''}); "
            "no version of this key is disabled or destroyed until a scan is complete"
        )
        for p in pending:
            decision.versions.append(
                VersionDecision(
                    p.version.name,
                    state_name(p.version.state),
                    "refused",
                    f"{p.step} refused: incomplete scan {inventory.scan_id}",
                    scan_id=inventory.scan_id,
                )
            )
        return
    for p in pending:
        decision.versions.append(_act(client, p, inventory, summary, key_spec, now, dry_run, record))


def _act(
    client: kms_v1.KeyManagementServiceClient,
    p: _Pending,
    inventory: Inventory,
    summary: ScanSummary,
    key_spec: CryptoKeySpec,
    now: datetime,
    dry_run: bool,
    record: Record,
) -> VersionDecision:
    name, state = p.version.name, state_name(p.version.state)
    refs = inventory.references(name)
    if refs:
        return VersionDecision(
            name,
            state,
            "refused",
            f"{p.step} refused: referenced by {len(refs)} envelope(s) (e.g. {refs[0].url}); "
            "re-wrap them onto the primary first (kmsflow rewrap)",
            references=len(refs),
            scan_id=inventory.scan_id,
        )
    evidence: dict[str, Any] = {
        **p.evidence,
        "scan_id": inventory.scan_id,
        "scan_complete": True,
        "scan_roots": summary.roots,
        "envelopes_scanned": summary.envelopes,
        "references": 0,
        "state_before": state,
    }
    if p.step == Action.DISABLE:
        reason = (
            f"non-primary since {format_time(p.since)} (more than "
            f"{format_duration(key_spec.retention.retired_version_enabled_for)}) and a complete scan "
            f"found zero references"
        )
        if dry_run:
            return VersionDecision(
                name, state, "would_disable", reason, 0, inventory.scan_id, format_time(p.since)
            )
        try:
            after = resources.disable_version(client, name)
        except KmsError as exc:
            return VersionDecision(name, state, "failed", f"disable failed: {exc}", 0, inventory.scan_id)
        evidence["state_after"] = state_name(after.state)
        evidence["soak_period"] = format_duration(key_spec.retention.soak_period)
        record(Action.DISABLE, name, reason, evidence)
        due = now + key_spec.retention.soak_period
        return VersionDecision(
            name,
            state,
            "disabled",
            reason + f"; soaking until {format_time(due)}",
            0,
            inventory.scan_id,
            format_time(now),
            format_time(due),
        )
    reason = (
        f"soaked {format_duration(key_spec.retention.soak_period)} since {format_time(p.since)} "
        f"and a new complete scan found zero references"
    )
    if dry_run:
        return VersionDecision(
            name, state, "would_destroy", reason, 0, inventory.scan_id, format_time(p.since)
        )
    try:
        after = resources.destroy_version(client, name)
    except KmsError as exc:
        return VersionDecision(name, state, "failed", f"destroy failed: {exc}", 0, inventory.scan_id)
    destroy_at = _time(after.destroy_time)
    evidence["state_after"] = state_name(after.state)
    evidence["destroy_time"] = format_time(destroy_at) if destroy_at else None
    record(Action.DESTROY, name, reason, evidence)
    return VersionDecision(
        name,
        state,
        "destroy_scheduled",
        reason + (f"; KMS destroys it at {format_time(destroy_at)} unless restored" if destroy_at else ""),
        0,
        inventory.scan_id,
        format_time(p.since),
        format_time(destroy_at) if destroy_at else None,
    )


def soak_clock(audit: AuditLog, version_name: str) -> datetime | None:
    """When the soak of ``version_name`` started per the audit log (None: no record)."""
    event = audit.last(version_name, SOAK_ACTIONS)
    return event.when if event else None


__all__ = [
    "KeyDecision",
    "ScanSummary",
    "ShredReport",
    "VersionDecision",
    "check_confirmation",
    "non_primary_since",
    "run_shred",
    "soak_clock",
]
