"""Audit hooks for actions whose code lives elsewhere (``spec.apply``, rotation).

``spec.apply(plan, client, on_change=provision_recorder(log, run=...))`` records each landed
provisioning change as one ``provision`` event, without the spec package knowing about auditing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kmsflow.audit.actions import Action, provision
from kmsflow.audit.log import AuditLog


def provision_recorder(
    log: AuditLog, *, run: str | None = None, reason: str = "apply key spec"
) -> Callable[[Any], None]:
    """An ``on_change`` callback for ``kmsflow.spec.apply`` that appends one event per change.

    A change is a ``kmsflow.spec.Change`` (``action``, ``resource``, ``render()``, ``to_dict()``).
    """

    def record(change: Any) -> None:
        details = change.to_dict() if hasattr(change, "to_dict") else {}
        log.append(
            provision(change.action),
            str(change.resource),
            reason=f"{reason}: {change.render()}" if hasattr(change, "render") else reason,
            evidence={k: v for k, v in dict(details).items() if k not in ("resource", "action")},
            run=run,
        )

    return record


def record_rotation(
    log: AuditLog,
    key_name: str,
    new_primary: str,
    *,
    reason: str,
    previous_primary: str | None = None,
    run: str | None = None,
) -> None:
    """One ``rotate`` event for the crypto key ``key_name`` (call it after the rotation landed)."""
    log.append(
        Action.ROTATE,
        key_name,
        reason=reason,
        evidence={"new_primary": new_primary, "previous_primary": previous_primary},
        run=run,
    )


def record_rewrap(log: AuditLog, report: Any, *, reason: str, run: str | None = None) -> int:
    """One ``rewrap-batch`` event per crypto key whose envelopes a (non-dry) rewrap run moved.

    ``report`` is a ``kmsflow.lifecycle.RewrapReport`` (read through ``to_dict()``, so this module
    does not depend on lifecycle). The evidence is counts per version before and after, failures
    and conflicts; never envelope contents. A dry run or a run that moved nothing records nothing
    (no state changed). Returns the number of events appended.
    """
    data = report.to_dict()
    if data.get("dry_run") or not data.get("rewrapped"):
        return 0
    before: dict[str, int] = data.get("versions_before", {})
    after: dict[str, int] = data.get("versions_after", {})
    keys = sorted({v.split("/cryptoKeyVersions/")[0] for v in (*before, *after)})
    for key in keys:
        mine = f"{key}/cryptoKeyVersions/"
        log.append(
            Action.REWRAP_BATCH,
            key,
            reason=reason,
            evidence={
                "rewrapped_total": data.get("rewrapped"),
                "envelopes_total": data.get("envelopes"),
                "versions_before": {v: n for v, n in before.items() if v.startswith(mine)},
                "versions_after": {v: n for v, n in after.items() if v.startswith(mine)},
                "failures": len(data.get("failures", [])),
                "conflicts": len(data.get("conflicts", [])),
                "scan_complete": data.get("scan_complete"),
                "started_at": data.get("started_at"),
                "finished_at": data.get("finished_at"),
            },
            run=run,
        )
    return len(keys)
