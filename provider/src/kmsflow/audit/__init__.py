"""The kmsflow audit log (no Airflow): who changed which KMS resource, when, why, on what evidence.

log = AuditLog("gs://bucket/kmsflow/audit", run="kmsflow_shred/scheduled__2026-11-30")
log.append("disable", version_name, reason="retired 30d, zero references", evidence={...})
read_events("gs://bucket/kmsflow/audit", resource=version_name)

Architecture invariant 5: every state-changing KMS action kmsflow takes appends one event.
Invariant 4: events are scrubbed of anything that looks like bytes or key material.
`kmsflow audit` (``kmsflow.cli.audit``) shows the log.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kmsflow.audit.actions import Action
    from kmsflow.audit.actor import resolve_actor
    from kmsflow.audit.event import REDACTED, AuditEvent, looks_like_key_material, parse_time, scrub
    from kmsflow.audit.log import AuditLog, AuditLogError, read_events
    from kmsflow.audit.recorder import provision_recorder, record_rewrap, record_rotation
    from kmsflow.clock import format_time
else:  # each name is imported on first use (kmsflow.lazy): importing the package loads no module
    from kmsflow.lazy import lazy_names

    __getattr__, __dir__ = lazy_names(
        __name__,
        {
            "kmsflow.audit.actions": ("Action",),
            "kmsflow.audit.actor": ("resolve_actor",),
            "kmsflow.audit.event": (
                "REDACTED",
                "AuditEvent",
                "looks_like_key_material",
                "parse_time",
                "scrub",
            ),
            "kmsflow.audit.log": ("AuditLog", "AuditLogError", "read_events"),
            "kmsflow.audit.recorder": ("provision_recorder", "record_rewrap", "record_rotation"),
            "kmsflow.clock": ("format_time",),
        },
    )

__all__ = [
    "REDACTED",
    "Action",
    "AuditEvent",
    "AuditLog",
    "AuditLogError",
    "format_time",
    "looks_like_key_material",
    "parse_time",
    "provision_recorder",
    "read_events",
    "record_rewrap",
    "record_rotation",
    "resolve_actor",
    "scrub",
]
