"""``kmsflow audit``: show the audit log as text for people or JSON for tools.

The lead wires the CLI; the command's whole behaviour is :func:`audit_command`, so it is tested
without a subprocess and the CLI stays a thin argument parser.
"""

from __future__ import annotations

import json

from kmsflow.audit.event import AuditEvent, JsonValue
from kmsflow.audit.log import read_events
from kmsflow.display import printable


def _short(value: JsonValue) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def render_events(events: list[AuditEvent]) -> str:
    """One block per event: a header line, then the reason and the evidence as ``key=value``.

    Each line is :func:`printable`: resources, reasons and evidence (paths) come from the log, which
    anyone who can append to it writes, and must not reach the terminal as escape sequences."""
    if not events:
        return "no audit events"
    lines: list[str] = []
    for e in events:
        lines.append(f"{e.time}  {e.action:<20} {e.resource}")
        lines.append(f"    by {e.actor} in run {e.run}")
        if e.reason:
            lines.append(f"    why: {e.reason}")
        if e.evidence:
            lines.append(
                "    evidence: " + ", ".join(f"{k}={_short(v)}" for k, v in sorted(e.evidence.items()))
            )
    lines.append(f"{len(events)} event(s)")
    return "\n".join(printable(line) for line in lines)


def audit_command(
    location: str, *, json_output: bool = False, resource: str | None = None, action: str | None = None
) -> str:
    """The output of ``kmsflow audit LOCATION [--json] [--resource NAME]``.

    ``resource`` may be a key or key ring name: events for it and everything below it are shown
    (a key's versions are ``<key>/cryptoKeyVersions/N``). Raises ``AuditLogError`` when the log
    cannot be read (the CLI prints the one-line message and exits non-zero).
    """
    events = read_events(location, action=action)
    if resource:
        prefix = resource.rstrip("/")
        events = [e for e in events if e.resource == prefix or e.resource.startswith(prefix + "/")]
    if json_output:
        return json.dumps([e.to_dict() for e in events], indent=2, sort_keys=True)
    return render_events(events)
