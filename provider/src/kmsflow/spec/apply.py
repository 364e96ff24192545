"""Apply a plan through ``kmsflow.kms.resources`` and ``kmsflow.kms.iam``; verify it took.

``apply`` converges exactly the resources the plan names, in plan order (key ring, its IAM, each key,
its IAM), using the idempotent ensure/set operations. So re-running an interrupted apply is safe, and
if live KMS moved between plan and apply the result still matches the spec. It refuses a plan with
immutable conflicts before writing anything, and never deletes: removal in KMS is destruction of key
material, which belongs to the lifecycle flows with their reference checks, never to provisioning.

``on_change`` is called after each change lands (for the audit log); the report lists them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.cloud import kms_v1

from kmsflow.kms.errors import FieldConflict, ImmutableFieldError
from kmsflow.kms.iam import Drift, set_role_members
from kmsflow.kms.resources import ensure_crypto_key, ensure_key_ring
from kmsflow.spec.model import CryptoKeySpec, KeySpec
from kmsflow.spec.plan import Change, Plan, plan, settings_dict


class SpecDriftError(RuntimeError):
    """``verify`` found live KMS still differing from the spec; ``plan`` says how."""

    def __init__(self, remaining: Plan) -> None:
        self.plan = remaining
        super().__init__(f"Cloud KMS does not match the spec:\n{remaining.render()}")


@dataclass
class ApplyReport:
    """What ``apply`` changed, in order (empty when KMS already matched)."""

    applied: list[Change] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.applied)

    def render(self) -> str:
        if not self.applied:
            return "Applied nothing: Cloud KMS already matched the spec."
        return "\n".join([c.render() for c in self.applied] + ["", f"Applied {len(self.applied)} changes."])

    def to_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "applied": [c.to_dict() for c in self.applied]}


def _refuse_conflicts(the_plan: Plan) -> None:
    conflicts = the_plan.conflicts
    if not conflicts:
        return
    first = conflicts[0].resource
    raise ImmutableFieldError(
        first,
        [FieldConflict(str(c.field), c.before, c.after) for c in conflicts if c.resource == first],
    )


class _Recorder:
    def __init__(self, the_plan: Plan, on_change: Callable[[Change], None] | None) -> None:
        self._plan = the_plan
        self._on_change = on_change
        self.report = ApplyReport()

    def record(self, change: Change) -> None:
        self.report.applied.append(change)
        if self._on_change is not None:
            self._on_change(change)

    def planned(self, resource: str, action: str, field_name: str | None = None) -> Change | None:
        return next(
            (
                c
                for c in self._plan.for_resource(resource)
                if c.action == action and (field_name is None or c.field == field_name)
            ),
            None,
        )

    def iam(self, resource: str, drifts: list[Drift]) -> None:
        for drift in drifts:
            for member in drift.missing:
                self.record(Change("grant", resource, drift.role, None, member))
            for member in drift.unexpected:
                self.record(Change("revoke", resource, drift.role, member, None))


def _apply_key(
    client: kms_v1.KeyManagementServiceClient,
    ring_name: str,
    key_name: str,
    key: CryptoKeySpec,
    rec: _Recorder,
) -> None:
    settings = key.settings()
    _, changed = ensure_crypto_key(
        client,
        ring_name,
        key.id,
        purpose=settings.purpose,
        algorithm=settings.algorithm,
        protection_level=settings.protection_level,
        rotation_period=settings.rotation_period,
        destroy_scheduled_duration=settings.destroy_scheduled_duration,
        labels=settings.labels,
    )
    for what in changed:
        if what == "created":
            rec.record(Change("create", key_name, None, None, settings_dict(settings)))
        else:
            planned = rec.planned(key_name, "update", what)
            rec.record(planned or Change("update", key_name, what))


def apply(
    the_plan: Plan,
    client: kms_v1.KeyManagementServiceClient,
    *,
    on_change: Callable[[Change], None] | None = None,
) -> ApplyReport:
    """Make live KMS match ``the_plan.spec`` for every resource the plan names.

    Raises ``ImmutableFieldError`` (nothing written) if the plan has conflicts. A KMS error midway
    propagates (typed, from ``kmsflow.kms.errors``) with a note listing what had been applied;
    running apply again resumes safely.
    """
    _refuse_conflicts(the_plan)
    spec = the_plan.spec
    touched = {c.resource for c in the_plan.changes}
    rec = _Recorder(the_plan, on_change)
    try:
        for ring in spec.key_rings:
            ring_name = spec.key_ring_name(ring)
            if ring_name in touched:
                _, created = ensure_key_ring(client, spec.location_name, ring.id)
                if created:
                    rec.record(Change("create", ring_name))
                wanted = ring.wanted_iam()
                if wanted:
                    rec.iam(ring_name, set_role_members(client, ring_name, wanted))
            for key in ring.keys:
                key_name = spec.key_name(ring, key)
                if key_name not in touched:
                    continue
                if any(c.action in ("create", "update") for c in the_plan.for_resource(key_name)):
                    _apply_key(client, ring_name, key_name, key, rec)
                wanted = key.wanted_iam()
                if wanted:
                    rec.iam(key_name, set_role_members(client, key_name, wanted))
    except Exception as exc:
        done = "; ".join(c.render() for c in rec.report.applied) or "nothing"
        exc.add_note(f"kmsflow apply: applied before the failure: {done}")
        raise
    return rec.report


def verify(spec_or_plan: KeySpec | Plan, client: kms_v1.KeyManagementServiceClient) -> Plan:
    """Plan again and require it empty: returns the (empty) plan, else ``SpecDriftError``.

    Accepts a ``KeySpec`` or a ``Plan`` (its spec is used).
    """
    spec = spec_or_plan.spec if isinstance(spec_or_plan, Plan) else spec_or_plan
    again = plan(spec, client)
    if not again.empty:
        raise SpecDriftError(again)
    return again
