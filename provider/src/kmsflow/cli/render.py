"""Human views of the reports the commands produce: report objects in, text for a terminal out.

Every line goes through :func:`kmsflow.display.printable` (names come from whoever wrote the files
and must not reach the terminal as escape sequences). ``--json`` prints the reports' own
``to_dict()`` instead, which needs no escaping.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from kmsflow.display import printable

if TYPE_CHECKING:
    from kmsflow.audit.event import AuditEvent, JsonValue
    from kmsflow.inventory.model import Finding, Inventory
    from kmsflow.lifecycle.clean import CleanReport
    from kmsflow.lifecycle.reencryption import ReencryptReport
    from kmsflow.lifecycle.rewrap import RewrapReport


class Problem(Protocol):
    """An envelope a lifecycle run could not handle (rewrap's and reencrypt's ``Issue``)."""

    @property
    def url(self) -> str: ...
    @property
    def error(self) -> str: ...
    @property
    def reason(self) -> str: ...


def shown(lines: Iterable[str]) -> str:
    """Report lines for a person's terminal: each :func:`printable` (they hold names), one per line."""
    return "".join(printable(line) + "\n" for line in lines)


def _findings(findings: Iterable[Finding]) -> list[str]:
    return [f"  {f.kind}: {f.url}: {f.detail}" for f in findings]


def _problems(label: str, problems: Sequence[Problem]) -> list[str]:
    return [f"  {label}: {p.url}: {p.error}: {p.reason}" for p in problems]


def render_inventory(inv: Inventory) -> str:
    """The human view of ``kmsflow inventory`` (``--json`` prints the full report instead)."""
    lines = [
        f"scan {inv.scan_id}: {len(inv.envelopes)} envelope(s) under "
        f"{', '.join(inv.roots)} - {'complete' if inv.complete else 'INCOMPLETE'}"
    ]
    for name, stats in inv.by_version().items():
        lines.append(
            f"  {name}: {stats.envelopes} envelope(s), {stats.files} file(s), "
            f"{stats.plaintext_bytes} bytes, newest {stats.newest_created}"
        )
    return shown(lines + _findings(inv.findings))


def render_clean(report: CleanReport) -> str:
    """The human view of ``kmsflow clean`` (``--json`` prints the full report instead)."""
    n = Counter(str(t.status) for t in report.temps)
    done = f"would remove {n['would_remove']}" if report.dry_run else f"removed {n['removed']}"
    lines = [
        f"{done} temp(s), kept {n['kept']}, failed {n['failed']} "
        f"(threshold: older than {report.older_than:g} s)"
    ]
    for t in report.temps:
        # Rounded as in the JSON report first, so both views agree on the age shown.
        age = "age ?" if t.age is None else f"{round(t.age, 1):.0f} s old"
        why = f": {t.reason}" if t.reason else ""
        lines.append(f"  {t.status}: {t.url} ({t.kind}, {age}){why}")
    return shown(lines + _findings(report.unscanned))


def _scan_state(complete: bool) -> str:
    return "complete" if complete else "scan INCOMPLETE"


def render_rewrap(report: RewrapReport) -> str:
    """The opt-in human view of ``kmsflow rewrap`` (``--human``; JSON is the default)."""
    done = f"would rewrap {report.would_rewrap}" if report.dry_run else f"rewrapped {report.rewrapped}"
    lines = [
        f"rewrap: {report.envelopes} envelope(s): {done}, already current {report.already_current}, "
        f"{len(report.conflicts)} conflict(s), {len(report.failures)} failure(s) - "
        f"{_scan_state(report.scan_complete)}"
    ]
    lines += [f"  now under {name}: {count}" for name, count in sorted(report.versions_after.items())]
    lines += _problems("conflict", report.conflicts) + _problems("failure", report.failures)
    return shown(lines + _findings(report.scan_findings))


def render_reencrypt(report: ReencryptReport) -> str:
    """The opt-in human view of ``kmsflow reencrypt`` (``--human``; JSON is the default)."""
    done = (
        f"would reencrypt {report.would_reencrypt}" if report.dry_run else f"reencrypted {report.reencrypted}"
    )
    lines = [
        f"reencrypt: {report.envelopes} envelope(s): {done} ({report.files} file(s), "
        f"{report.plaintext_bytes} bytes), {len(report.conflicts)} conflict(s), "
        f"{len(report.failures)} failure(s) - {_scan_state(report.scan_complete)}"
    ]
    lines += [f"  recovered: {r.url}: {r.reason}" for r in report.recovered]
    lines += [f"  removed temp: {url}" for url in report.removed_temps]
    lines += _problems("conflict", report.conflicts) + _problems("failure", report.failures)
    return shown(lines + _findings(report.scan_findings))


def _short(value: JsonValue) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def render_events(events: list[AuditEvent]) -> str:
    """``kmsflow audit``: one block per event, a header line, then the reason and the evidence as
    ``key=value``. Resources, reasons and evidence (paths) come from the log, which anyone who can
    append to it writes. No trailing newline (the command adds it)."""
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
