"""Plan: the difference between a key spec and live Cloud KMS, as reviewable changes.

``plan`` only reads (GetKeyRing, GetCryptoKey, GetIamPolicy), so it is safe to run anywhere, e.g.
in a pull-request check or a DAG's first task. Immutable differences are reported as ``conflict``
changes, not raised, so one bad key does not hide the rest of the plan; ``apply`` refuses a plan
that has any. Every value in a ``Change`` is JSON-safe (durations as ``90d``, times as ISO-8601),
and nothing secret is ever in a plan: it names resources, settings and IAM members only.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from google.cloud import kms_v1
from google.iam.v1 import policy_pb2

from kmsflow.clock import utc_now
from kmsflow.kms.errors import KmsNotFoundError
from kmsflow.kms.iam import Drift, diff_policy, get_policy
from kmsflow.kms.resources import KeySettings, diff_crypto_key, get_key, get_key_ring
from kmsflow.spec.durations import format_duration
from kmsflow.spec.loader import parse_spec
from kmsflow.spec.model import KeySpec

Action = Literal["create", "update", "grant", "revoke", "conflict"]
ACTIONS: tuple[Action, ...] = ("create", "update", "grant", "revoke", "conflict")

JsonValue = None | str | int | float | bool | list[Any] | dict[str, Any]


def to_json(value: object) -> JsonValue:
    """A JSON-safe rendering of a KMS setting value (durations ``90d``, times ISO-8601 UTC)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
        return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    return str(value)


def _show(value: JsonValue) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class Change:
    """One planned change.

    ``action``: create (a key ring or key; ``after`` holds a key's settings), update (a mutable key
    field), grant / revoke (``field`` is the role, ``after``/``before`` the member), or conflict (an
    immutable field that differs; ``before`` is live, ``after`` wanted).
    """

    action: Action
    resource: str
    field: str | None = None
    before: JsonValue = None
    after: JsonValue = None

    @property
    def kind(self) -> str:
        """``crypto key`` or ``key ring``, from the resource name."""
        return "crypto key" if "/cryptoKeys/" in self.resource else "key ring"

    def render(self) -> str:
        if self.action == "create":
            if isinstance(self.after, dict):
                settings = self.after
                rotation = settings.get("rotation_period")
                extra = [
                    str(settings.get("purpose")),
                    str(settings.get("algorithm")),
                    str(settings.get("protection_level")),
                    f"rotation every {rotation}" if rotation else "no automatic rotation",
                ]
                return f"+ create {self.kind} {self.resource} ({', '.join(extra)})"
            return f"+ create {self.kind} {self.resource}"
        if self.action == "update":
            return f"~ update {self.resource} {self.field}: {_show(self.before)} -> {_show(self.after)}"
        if self.action == "grant":
            return f"+ iam {self.resource} {self.field}: {_show(self.after)}"
        if self.action == "revoke":
            return f"- iam {self.resource} {self.field}: {_show(self.before)}"
        return (
            f"! conflict {self.resource} {self.field}: {_show(self.before)} -> {_show(self.after)} "
            "(immutable: use a new key id instead)"
        )

    def to_dict(self) -> dict[str, JsonValue]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        action = data["action"]
        if action not in ACTIONS:
            raise ValueError(f"unknown plan action {action!r}")
        return cls(
            action=action,
            resource=str(data["resource"]),
            field=data.get("field"),
            before=data.get("before"),
            after=data.get("after"),
        )


def _summary(changes: list[Change]) -> dict[str, int]:
    counts = Counter(c.action for c in changes)
    return {action: counts.get(action, 0) for action in ACTIONS}


@dataclass
class Plan:
    """The changes that would make live KMS match ``spec`` (empty: it already does)."""

    spec: KeySpec
    changes: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def conflicts(self) -> list[Change]:
        return [c for c in self.changes if c.action == "conflict"]

    def for_resource(self, resource: str) -> list[Change]:
        return [c for c in self.changes if c.resource == resource]

    def summary(self) -> dict[str, int]:
        return _summary(self.changes)

    def render(self) -> str:
        """Readable text, one change a line, then a count (like ``terraform plan``)."""
        if self.empty:
            return f"No changes: Cloud KMS matches the spec ({self.spec.location_name})."
        lines = [c.render() for c in self.changes]
        counts = self.summary()
        lines.append("")
        lines.append(
            f"Plan: {counts['create']} to create, {counts['update']} to update, "
            f"{counts['grant']} IAM grants, {counts['revoke']} IAM revokes, "
            f"{counts['conflict']} conflicts."
        )
        if counts["conflict"]:
            lines.append("Conflicts block apply: immutable fields cannot change in place.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (e.g. for XCom); ``Plan.from_dict`` rebuilds it, spec included."""
        return {
            "location": self.spec.location_name,
            "empty": self.empty,
            "summary": self.summary(),
            "changes": [c.to_dict() for c in self.changes],
            "spec": self.spec.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(
            spec=parse_spec(data["spec"], "plan spec"),
            changes=[Change.from_dict(c) for c in data["changes"]],
        )


def settings_dict(settings: KeySettings) -> dict[str, JsonValue]:
    """A key's wanted settings as shown in a ``create`` change."""
    out: dict[str, JsonValue] = {
        "purpose": settings.purpose,
        "algorithm": settings.algorithm,
        "protection_level": settings.protection_level,
        "rotation_period": to_json(settings.rotation_period),
    }
    if settings.destroy_scheduled_duration is not None:
        out["destroy_scheduled_duration"] = to_json(settings.destroy_scheduled_duration)
    if settings.labels is not None:
        out["labels"] = to_json(dict(settings.labels))
    return out


def _iam_changes(resource: str, drifts: list[Drift]) -> list[Change]:
    changes: list[Change] = []
    for drift in drifts:
        changes += [Change("grant", resource, drift.role, None, m) for m in drift.missing]
        changes += [Change("revoke", resource, drift.role, m, None) for m in drift.unexpected]
    return changes


def _policy_or_empty(client: kms_v1.KeyManagementServiceClient, resource: str, exists: bool) -> Any:
    return get_policy(client, resource) if exists else policy_pb2.Policy()


def plan(spec: KeySpec, client: kms_v1.KeyManagementServiceClient) -> Plan:
    """Compare ``spec`` with live KMS (reads only) and list what ``apply`` would change.

    Order is the order apply works in: each key ring, its IAM, then each of its keys and their IAM.
    """
    changes: list[Change] = []
    now = utc_now()
    for ring in spec.key_rings:
        ring_name = spec.key_ring_name(ring)
        try:
            get_key_ring(client, ring_name)
            ring_exists = True
        except KmsNotFoundError:
            ring_exists = False
            changes.append(Change("create", ring_name))
        policy = _policy_or_empty(client, ring_name, ring_exists)
        changes += _iam_changes(ring_name, diff_policy(policy, ring.wanted_iam()))
        for key in ring.keys:
            key_name = spec.key_name(ring, key)
            settings = key.settings()
            live = None
            if ring_exists:
                try:
                    live = get_key(client, key_name)
                except KmsNotFoundError:
                    live = None
            if live is None:
                changes.append(Change("create", key_name, None, None, settings_dict(settings)))
            else:
                diff = diff_crypto_key(live, settings, now=now)
                changes += [
                    Change("conflict", key_name, c.field, to_json(c.current), to_json(c.wanted))
                    for c in diff.conflicts
                ]
                changes += [
                    Change("update", key_name, u.field, to_json(u.current), to_json(u.wanted))
                    for u in diff.updates
                ]
            policy = _policy_or_empty(client, key_name, live is not None)
            changes += _iam_changes(key_name, diff_policy(policy, key.wanted_iam()))
    return Plan(spec=spec, changes=changes)
