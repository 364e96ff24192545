"""What the Key Lifecycle page shows, gathered without scanning anything.

Three sources, all cheap: Cloud KMS (one ``GetCryptoKey`` and one ``ListCryptoKeyVersions`` per key
of the spec), the inventory snapshot the lifecycle DAGs keep beside the audit log
(:mod:`kmsflow.inventory.snapshot`) and the audit log itself. The result is plain JSON data (the
page's ``/api/keys`` answer and the template's input): names, states, times, counts and record URLs
-- never plaintext, wrapped keys or key material (the snapshot and the audit log hold none, and KMS
list calls return none).

A retired version's **shred stage** follows :mod:`kmsflow.lifecycle.retirement.shred`'s rules:
non-primary since the ``create_time`` of the next newer version (or a later ``restore``), disable
due ``retention.retired_version_enabled_for`` after that; soaking since the latest ``disable`` /
``soak-start`` / ``restore`` event, destroy due ``retention.soak_period`` later; destroy scheduled
for the version's ``destroy_time``; destroyed (confirmed once a ``destroyed-confirmed`` event exists).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import quote

from kmsflow.audit import AuditEvent, parse_time, read_events
from kmsflow.audit.actions import SOAK_ACTIONS, Action
from kmsflow.clock import format_time
from kmsflow.inventory.snapshot import read_snapshot, snapshot_location

if TYPE_CHECKING:  # kmsflow.spec loads the KMS client: imported on the first request, not with the app
    from kmsflow.spec import CryptoKeySpec, KeySpec

SPEC_ENV = "KMSFLOW_SPEC"
MAX_EVENTS = 50
KMS_DEADLINE = 10.0
"""Seconds a page request waits on Cloud KMS (retries included), so a KMS outage shows as an error
on the page instead of a hung request."""


class Blockers(TypedDict):
    count: int
    first: list[str]


class Stage(TypedDict):
    stage: str
    """``primary``, ``in_use`` (ENABLED, still wrapping envelopes), ``retired``, ``soaking``,
    ``destroy_scheduled``, ``destroyed``, or the version state's name in lower case."""
    since: str | None
    until: str | None
    detail: str


class VersionView(TypedDict):
    name: str
    id: str
    state: str
    primary: bool
    algorithm: str
    protection_level: str
    created: str | None
    envelopes: int | None
    files: int | None
    plaintext_bytes: int | None
    ciphertext_bytes: int | None
    blockers: Blockers | None
    stage: Stage


class KeyView(TypedDict):
    name: str
    id: str
    primary: str | None
    rotation_period_s: int | None
    next_rotation_time: str | None
    versions: list[VersionView]
    error: str | None


class EventView(TypedDict):
    time: str
    action: str
    resource: str
    actor: str
    reason: str
    run: str
    run_url: str | None


class SnapshotView(TypedDict):
    location: str
    run: str
    run_url: str | None
    scan_id: str
    finished_at: str
    complete: bool
    roots: list[str]
    envelopes: int
    blocking_findings: dict[str, Any]


class PageData(TypedDict):
    spec: str | None
    audit_log: str | None
    snapshot: SnapshotView | None
    keys: list[KeyView]
    events: list[EventView]
    problems: list[str]


def run_url(run: str, ui_base: str = "") -> str | None:
    """The Airflow UI page of the DAG run an audit ``run`` label (``dag_id/run_id``) names."""
    dag_id, sep, run_id = run.partition("/")
    if not sep or not dag_id or not run_id or "/" in run_id:  # a CLI run, or a task-level label
        return None
    return f"{ui_base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def _time(value: Any) -> datetime | None:
    """A protobuf timestamp as read from KMS (a datetime subclass), None when unset."""
    if not value or not getattr(value, "year", 0) or value.year < 1971:
        return None
    return value  # type: ignore[no-any-return]


def _stage(
    version: Any,
    newer_created: datetime | None,
    events: Sequence[AuditEvent],
    retention: Any,
    primary: bool,
    envelopes: int | None,
) -> Stage:
    from kmsflow.kms.resources import state_name  # loads the KMS client: per request, not at import

    state = state_name(version.state)
    mine = [e for e in events if e.resource == version.name]

    def last(actions: Sequence[str]) -> datetime | None:
        times = [parse_time(e.time) for e in mine if e.action in actions]
        return max(times) if times else None

    def spell(moment: datetime | None) -> str | None:
        return format_time(moment) if moment else None

    if primary:
        return {"stage": "primary", "since": None, "until": None, "detail": "primary: never retired"}
    if state == "ENABLED":
        since = max(filter(None, (newer_created, last([Action.RESTORE]))), default=None)
        due = since + retention.retired_version_enabled_for if since else None
        if envelopes:
            detail = f"still wraps {envelopes} envelope(s): re-wrap them before it can be disabled"
            return {"stage": "in_use", "since": spell(since), "until": spell(due), "detail": detail}
        detail = "disable due" if envelopes == 0 else "disable due if unreferenced (no inventory yet)"
        return {"stage": "retired", "since": spell(since), "until": spell(due), "detail": detail}
    if state == "DISABLED":
        since = last(SOAK_ACTIONS)
        if since is None:
            detail = "disabled outside kmsflow: the next shred run starts its soak"
            return {"stage": "soaking", "since": None, "until": None, "detail": detail}
        until = since + retention.soak_period
        return {"stage": "soaking", "since": spell(since), "until": spell(until), "detail": "destroy due"}
    if state == "DESTROY_SCHEDULED":
        scheduled = last([Action.DESTROY])
        destroy_time = spell(_time(version.destroy_time))
        return {"stage": "destroy_scheduled", "since": spell(scheduled), "until": destroy_time, "detail": ""}
    if state == "DESTROYED":
        confirmed = last([Action.DESTROYED_CONFIRMED])
        detail = "confirmed by kmsflow_shred" if confirmed else "not yet confirmed by kmsflow_shred"
        return {
            "stage": "destroyed",
            "since": spell(_time(version.destroy_event_time)),
            "until": None,
            "detail": detail,
        }
    return {"stage": state.lower(), "since": None, "until": None, "detail": ""}


def _key_view(
    client: Any, name: str, key_spec: CryptoKeySpec, counts: dict[str, Any] | None, events: list[AuditEvent]
) -> KeyView:
    """One key: its versions from KMS, each with the snapshot's counts and its shred stage."""
    from kmsflow.kms import resources

    view: KeyView = {
        "name": name,
        "id": name.rsplit("/", 1)[-1],
        "primary": None,
        "rotation_period_s": None,
        "next_rotation_time": None,
        "versions": [],
        "error": None,
    }
    try:
        key: Any = resources.get_key(client, name)
        versions = sorted(resources.list_versions(client, name), key=lambda v: int(v.name.rsplit("/", 1)[-1]))
    except Exception as exc:
        view["error"] = f"cannot read the key from Cloud KMS: {exc}".splitlines()[0]
        return view
    primary = key.primary.name or None
    period = key.rotation_period.total_seconds() if key.rotation_period else 0
    view["primary"] = primary
    view["rotation_period_s"] = int(period) if period else None
    next_rotation = _time(key.next_rotation_time)
    view["next_rotation_time"] = format_time(next_rotation) if period and next_rotation else None
    for index, version in enumerate(versions):
        newer = _time(versions[index + 1].create_time) if index + 1 < len(versions) else None
        found = (counts or {}).get(version.name)
        envelopes = None if counts is None else (found["envelopes"] if found else 0)
        created = _time(version.create_time)
        view["versions"].append(
            {
                "name": version.name,
                "id": version.name.rsplit("/", 1)[-1],
                "state": resources.state_name(version.state),
                "primary": version.name == primary,
                "algorithm": version.algorithm.name,
                "protection_level": version.protection_level.name,
                "created": format_time(created) if created else None,
                "envelopes": envelopes,
                "files": None if counts is None else (found["files"] if found else 0),
                "plaintext_bytes": None if counts is None else (found["plaintext_bytes"] if found else 0),
                "ciphertext_bytes": None if counts is None else (found["ciphertext_bytes"] if found else 0),
                "blockers": None
                if counts is None
                else (found["blockers"] if found else {"count": 0, "first": []}),
                "stage": _stage(
                    version, newer, events, key_spec.retention, version.name == primary, envelopes
                ),
            }
        )
    return view


def spec_path() -> str | None:
    """The key spec the page describes: ``$KMSFLOW_SPEC``, as for the DAGs (None when unset)."""
    return os.environ.get(SPEC_ENV) or None


def spec_key_names() -> set[str]:
    """The full names of the configured spec's keys (empty when there is no readable spec)."""
    from kmsflow.spec import load_spec

    path = spec_path()
    try:
        return {name for name, _ in load_spec(Path(path)).crypto_keys()} if path else set()
    except Exception:
        return set()


def load_page(
    *,
    kmsflow_conn_id: str,
    ui_base: str = "",
    key: str | None = None,
    action: str | None = None,
    max_events: int = MAX_EVENTS,
) -> PageData:
    """Everything the page shows; problems (no spec, unreadable log or snapshot) are listed, not raised.

    ``key`` (an id or full name) and ``action`` filter the recent audit events.
    """
    data: PageData = {
        "spec": spec_path(),
        "audit_log": None,
        "snapshot": None,
        "keys": [],
        "events": [],
        "problems": [],
    }
    path = data["spec"]
    if path is None:
        data["problems"].append(f"${SPEC_ENV} is not set on the API server: no key spec to show")
        return data
    from kmsflow.spec import load_spec

    try:
        spec: KeySpec = load_spec(Path(path))
    except Exception as exc:
        data["problems"].append(f"cannot load the key spec {path}: {exc}".splitlines()[0])
        return data

    from kmsflow.airflow.hooks.kms import KmsHook

    hook = KmsHook(kmsflow_conn_id=kmsflow_conn_id, deadline=KMS_DEADLINE)
    try:
        location = spec.audit_log or hook.audit_log
        data["audit_log"] = location
        events: list[AuditEvent] = []
        counts: dict[str, Any] | None = None
        if location:
            try:
                events = read_events(location)
            except Exception as exc:
                data["problems"].append(f"cannot read the audit log: {exc}".splitlines()[0])
            try:
                snapshot = read_snapshot(snapshot_location(location))
            except Exception as exc:
                data["problems"].append(f"cannot read the inventory snapshot: {exc}".splitlines()[0])
                snapshot = None
            if snapshot is not None:
                counts = snapshot["versions"]
                data["snapshot"] = {
                    "location": snapshot_location(location),
                    "run": snapshot["run"],
                    "run_url": run_url(snapshot["run"], ui_base),
                    "scan_id": snapshot["scan_id"],
                    "finished_at": snapshot["finished_at"],
                    "complete": bool(snapshot["complete"]),
                    "roots": list(snapshot["roots"]),
                    "envelopes": int(snapshot["envelopes"]),
                    "blocking_findings": snapshot["blocking_findings"],
                }
        else:
            data["problems"].append(
                "no audit log configured (spec 'audit_log:' or the connection's extra): no inventory "
                "snapshot and no events to show"
            )
        with hook.deadline_scope():
            client = hook.get_conn()
            for name, key_spec in spec.crypto_keys():
                data["keys"].append(_key_view(client, name, key_spec, counts, events))
    finally:
        hook.close()
    data["events"] = recent_events(events, spec, ui_base=ui_base, key=key, action=action, limit=max_events)
    return data


def recent_events(
    events: Sequence[AuditEvent],
    spec: KeySpec,
    *,
    ui_base: str = "",
    key: str | None = None,
    action: str | None = None,
    limit: int = MAX_EVENTS,
) -> list[EventView]:
    """The newest ``limit`` events about the spec's keys (or ``key``: id or full name), of ``action``."""
    names = [name for name, _ in spec.crypto_keys()]
    if key:
        names = [n for n in names if key in (n, n.rsplit("/", 1)[-1])]
    wanted = tuple(names)

    def about(resource: str) -> bool:
        return any(resource == n or resource.startswith(n + "/") for n in wanted)

    chosen = [e for e in events if about(e.resource) and (not action or e.action == action)]
    chosen.sort(key=lambda e: e.time, reverse=True)
    return [
        {
            "time": e.time,
            "action": e.action,
            "resource": e.resource,
            "actor": e.actor,
            "reason": e.reason,
            "run": e.run,
            "run_url": run_url(e.run, ui_base),
        }
        for e in chosen[:limit]
    ]


ACTIONS = tuple(str(a) for a in Action)
"""Every audit action, for the page's filter."""
