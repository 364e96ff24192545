"""What starts the kmsflow DAGs besides a person: their timetables and watched assets.

``kmsflow_rotate_rewrap`` runs on :func:`key_rotation_asset` (a :class:`KeyRotationTrigger`
watcher: a rotation starts it within one poll) *or* daily, so a missed event is still caught.
``kmsflow_provision`` runs on :func:`key_spec_asset` (a :class:`KeySpecChangeTrigger` watcher: an
edited spec is applied within one poll) *or* :func:`provision_timetable` (drift repair).

Settings come from the environment of the DAG processor, read when the DAG file is parsed (the
values become the triggers' arguments; ``docs/AIRFLOW.md`` lists them with the contracts):
:data:`ROTATION_POLL_ENV`, :data:`SPEC_POLL_ENV` (seconds) and :data:`PROVISION_SCHEDULE_ENV` (a cron
expression or preset). A bad value fails the DAG's import with a message naming the variable.
"""

from __future__ import annotations

import os

from airflow.sdk import Asset, AssetWatcher, CronTriggerTimetable

from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.triggers.key_rotation import KeyRotationTrigger
from kmsflow.airflow.triggers.key_spec import KeySpecChangeTrigger

ROTATION_POLL_ENV = "KMSFLOW_ROTATION_POLL_INTERVAL"
SPEC_POLL_ENV = "KMSFLOW_SPEC_POLL_INTERVAL"
PROVISION_SCHEDULE_ENV = "KMSFLOW_PROVISION_SCHEDULE"
DEFAULT_POLL_INTERVAL = 60.0
DEFAULT_PROVISION_SCHEDULE = "@hourly"
KEY_ROTATION_ASSET = "kmsflow_key_rotations"
KEY_SPEC_ASSET = "kmsflow_key_spec"


def poll_interval(variable: str) -> float:
    """Seconds between two polls, from ``variable`` (default :data:`DEFAULT_POLL_INTERVAL`)."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return DEFAULT_POLL_INTERVAL
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{variable} must be a positive number of seconds, got {raw!r}")
    return seconds


def key_rotation_asset(spec_path: str, *, kmsflow_conn_id: str = KmsHook.default_conn_name) -> Asset:
    """The asset a rotation of any key of the spec updates (one event per rotated key)."""
    trigger = KeyRotationTrigger(
        spec_path=spec_path, kmsflow_conn_id=kmsflow_conn_id, poll_interval=poll_interval(ROTATION_POLL_ENV)
    )
    return Asset(
        name=KEY_ROTATION_ASSET,
        uri="kmsflow://key-rotations",
        watchers=[AssetWatcher(name="kmsflow_key_rotation_watcher", trigger=trigger)],
    )


def key_spec_asset(spec_path: str) -> Asset:
    """The key spec file or object, updated whenever its content changes."""
    uri = spec_path if "://" in spec_path else f"file://{os.path.abspath(spec_path)}"
    trigger = KeySpecChangeTrigger(spec_path=spec_path, poll_interval=poll_interval(SPEC_POLL_ENV))
    return Asset(
        name=KEY_SPEC_ASSET,
        uri=uri,
        watchers=[AssetWatcher(name="kmsflow_key_spec_watcher", trigger=trigger)],
    )


def provision_timetable() -> CronTriggerTimetable:
    """Drift repair's schedule: :data:`PROVISION_SCHEDULE_ENV` (cron or preset), default hourly."""
    expression = os.environ.get(PROVISION_SCHEDULE_ENV, "").strip() or DEFAULT_PROVISION_SCHEDULE
    timetable = CronTriggerTimetable(expression, timezone="UTC")
    try:
        timetable.validate()
    except Exception as exc:  # AirflowTimetableInvalid, from croniter's message
        raise ValueError(
            f"{PROVISION_SCHEDULE_ENV} must be a cron expression or preset (e.g. @hourly), got "
            f"{expression!r}: {exc}"
        ) from None
    return timetable
