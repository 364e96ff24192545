"""Undo a scheduled destruction within the grace window (``destroy_scheduled_duration``).

KMS keeps a DESTROY_SCHEDULED version's material until its ``destroy_time``; restoring it brings it
back DISABLED (and, when asked, ENABLED). This is the escape hatch for a shred that turned out to
be wrong (an envelope nobody knew about): restore, enable, re-wrap. The restore is audited, and
the ``restore`` event restarts the version's soak clock, so a later shred run cannot destroy it
again before a full soak period (and a new scan) has passed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.cloud import kms_v1

from kmsflow.audit import AuditLog, format_time
from kmsflow.audit.actions import Action
from kmsflow.clock import utc_now
from kmsflow.kms import resources
from kmsflow.kms.errors import KeyVersionUnavailableError
from kmsflow.kms.resources import CryptoKeyVersion, VersionState, state_name


def restore(
    client: kms_v1.KeyManagementServiceClient,
    version_name: str,
    *,
    enable: bool = False,
    audit: AuditLog,
    reason: str,
    run_id: str | None = None,
    now: datetime | None = None,
) -> CryptoKeyVersion:
    """Bring a DESTROY_SCHEDULED version back (DISABLED, or ENABLED with ``enable``); audited.

    A DISABLED version is only enabled (if asked); an ENABLED one is left as is (no event). After
    ``destroy_time`` the material is gone: :class:`KeyVersionUnavailableError` says so, and that
    envelopes still wrapped by it cannot be decrypted by anyone.
    """
    if not reason or not reason.strip():
        raise ValueError("restore needs a reason (it is recorded in the audit log)")
    current = resources.get_version(client, version_name)
    before: Any = current  # proto-plus: timestamps read back as datetimes
    if before.state == VersionState.DESTROYED:
        raise KeyVersionUnavailableError(
            f"cannot restore {version_name}: it is DESTROYED (destroyed at "
            f"{format_time(before.destroy_event_time or before.destroy_time)}); the grace window is "
            "over and the key material is gone for good, so nothing it wrapped can be decrypted"
        )
    if before.state not in (VersionState.DESTROY_SCHEDULED, VersionState.DISABLED):
        if before.state == VersionState.ENABLED:
            return current
        raise KeyVersionUnavailableError(
            f"cannot restore {version_name}: it is {state_name(before.state)}, "
            "only DESTROY_SCHEDULED (or DISABLED) versions can be restored"
        )
    if before.state == VersionState.DISABLED and not enable:
        return current
    after = resources.restore_version(client, version_name, enable=enable)
    audit.append(
        Action.RESTORE,
        version_name,
        reason=reason,
        evidence={
            "state_before": state_name(before.state),
            "state_after": state_name(after.state),
            "enable": enable,
            "scheduled_destroy_time": (
                format_time(before.destroy_time) if before.state == VersionState.DESTROY_SCHEDULED else None
            ),
        },
        run=run_id,
        time=now or utc_now(),
    )
    return after
