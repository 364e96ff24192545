"""kmsflow_shred through ``dag.test()`` on a private emulator whose clock moves between runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from inventory.builders import make_file
from lifecycle_dagkit import failure_messages, load_dag, run_dag
from privileges import unreadable

from kmsflow.audit import read_events
from kmsflow.envelope import decrypt
from kmsflow.kms import resources
from kmsflow.lifecycle import rewrap
from kmsflow.spec import apply, load_spec, plan

DAG_ID = "kmsflow_shred"
DAY = 86400.0


@pytest.fixture(scope="module")
def shred_dag(airflow_db: str) -> Any:
    return load_dag(DAG_ID)


@dataclass
class World:
    emulator: Any
    client: Any
    spec_path: Path
    key: str
    root: Path
    audit: Path
    v1: str
    v2: str

    def state(self, version: str) -> str:
        return str(resources.VersionState(resources.get_version(self.client, version).state).name)

    def advance_days(self, days: float) -> None:
        self.emulator.admin.advance(days * DAY)


@pytest.fixture
def world(fresh_emulator: Any, tmp_path: Path, ring_id: str, set_conn: Callable[..., str]) -> World:
    """Key ``data`` (retired versions stay enabled 2d, soak 3d, destroyed 24h after scheduling):
    one envelope made under v1, then v2 made primary and the envelope re-wrapped onto it."""
    root = tmp_path / "root"
    root.mkdir()
    audit = tmp_path / "audit" / "audit.jsonl"
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        f"""
project: kmsflow-test
location: us-central1
audit_log: {json.dumps(str(audit))}
key_rings:
  - id: {ring_id}
    keys:
      - id: data
        rotation_period: null
        destroy_scheduled_duration: 24h
        roots: [{json.dumps(str(root))}]
        retention: {{retired_version_enabled_for: 2d, soak_period: 3d}}
"""
    )
    spec = load_spec(spec_path)
    client = fresh_emulator.client()
    apply(plan(spec, client), client)
    key = next(name for name, _ in spec.crypto_keys())
    made = make_file(client, key, tmp_path / "src", str(root / "a.enc"), 500)
    resources.rotate(client, key)
    assert rewrap(client, [str(root)]).rewrapped == 1
    (tmp_path / "src" / "made").write_text(made.dst)
    set_conn(endpoint=fresh_emulator.endpoint)
    return World(
        fresh_emulator,
        client,
        spec_path,
        key,
        root,
        audit,
        f"{key}/cryptoKeyVersions/1",
        f"{key}/cryptoKeyVersions/2",
    )


def decision(report: dict[str, Any], version: str) -> dict[str, Any]:
    return next(v for k in report["keys"] for v in k["versions"] if v["version"] == version)


def test_dag_shape_and_defaults(shred_dag: Any) -> None:
    params = shred_dag.params
    assert shred_dag.schedule == "@daily" and shred_dag.catchup is False
    assert params["dry_run"] is None and params["keys"] == [] and params["confirm"] == ""
    assert params["restore_version"] == ""
    assert sorted(t.task_id for t in shred_dag.tasks) == ["restore", "shred"]


def test_dry_run_defaults_follow_the_run_type() -> None:
    from airflow.utils.types import DagRunType

    from kmsflow.airflow.tasks.common import is_manual
    from kmsflow.airflow.tasks.shred import resolve_dry_run

    assert is_manual(DagRunType.MANUAL) and not is_manual(DagRunType.SCHEDULED)
    assert not is_manual(DagRunType.BACKFILL_JOB) and not is_manual(DagRunType.ASSET_TRIGGERED)
    assert resolve_dry_run(None, manual=True) is True
    assert resolve_dry_run(None, manual=False) is False
    assert resolve_dry_run(False, manual=True) is False and resolve_dry_run(True, manual=False) is True


def test_full_path_across_runs_disable_destroy_confirmed(
    shred_dag: Any, world: World, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from kmsflow.airflow.hooks.kms import KmsHook
    from kmsflow.airflow.tasks.shred import shred

    spec = str(world.spec_path)
    waiting = run_dag(shred_dag, spec_path=spec, dry_run=False, confirm="data")
    assert waiting.states == {"shred": "success", "restore": "skipped"}
    assert decision(waiting.values["shred"], world.v1)["outcome"] == "kept"
    assert decision(waiting.values["shred"], world.v2)["reason"].startswith("primary version")

    world.advance_days(2.05)
    failure_messages(capfd)
    unconfirmed = run_dag(shred_dag, spec_path=spec, dry_run=False)
    assert unconfirmed.states["shred"] == "failed" and unconfirmed.state == "failed"
    wrong = run_dag(shred_dag, spec_path=spec, dry_run=False, confirm="other")
    assert wrong.states["shred"] == "failed"
    messages = failure_messages(capfd)
    assert len(messages) == 2 and all(
        "refusing a manual shred run that is not confirmed" in m for m in messages
    )
    assert "got 'other'" in messages[1] and "Nothing was changed" in messages[1]
    assert world.state(world.v1) == "ENABLED"

    preview = run_dag(shred_dag, spec_path=spec)  # manual, dry_run unset: a dry run
    report = preview.values["shred"]
    assert report["dry_run"] is True and report["manual"] is True
    assert decision(report, world.v1)["outcome"] == "would_disable"
    assert world.state(world.v1) == "ENABLED"

    disabled = run_dag(shred_dag, spec_path=spec, dry_run=False, confirm="data")
    d1 = decision(disabled.values["shred"], world.v1)
    assert d1["outcome"] == "disabled" and d1["references"] == 0
    assert world.state(world.v1) == "DISABLED"

    world.advance_days(3.05)
    # The scheduled path: no keys, no confirmation, live because the run is not manual.
    hook = KmsHook()
    try:
        scheduled = shred(hook, spec, keys=None, dry_run=False, manual=False, confirm=None, run="sched")
    finally:
        hook.close()
    assert scheduled["manual"] is False
    assert decision(scheduled, world.v1)["outcome"] == "destroy_scheduled"
    assert world.state(world.v1) == "DESTROY_SCHEDULED"

    world.advance_days(1.05)  # past destroy_scheduled_duration: KMS destroyed it
    confirmed = run_dag(shred_dag, spec_path=spec, dry_run=False, confirm="data")
    assert decision(confirmed.values["shred"], world.v1)["outcome"] == "destroyed_confirmed"
    assert world.state(world.v1) == "DESTROYED" and world.state(world.v2) == "ENABLED"

    actions = [e.action for e in read_events(str(world.audit)) if e.resource == world.v1]
    assert actions == ["disable", "destroy", "destroyed-confirmed"]
    [disable] = read_events(str(world.audit), action="disable")
    assert disable.run == f"{DAG_ID}/{disabled.run_id}" and disable.evidence["references"] == 0
    # The artifact (re-wrapped onto v2 before any of this) still decrypts.
    made = (tmp_path / "src" / "made").read_text()
    decrypt(world.client, made, str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").stat().st_size == 500


def assert_refused_as_incomplete(result: Any, world: World, capfd: pytest.CaptureFixture[str]) -> None:
    """The run failed, v1 was refused for an incomplete scan and is still ENABLED."""
    assert result.states["shred"] == "failed"
    report = result.xcoms[("shred", "report")]
    assert decision(report, world.v1)["outcome"] == "refused"
    assert report["keys"][0]["scan"]["complete"] is False
    assert world.state(world.v1) == "ENABLED"
    assert any("shred needs attention" in m and "incomplete" in m for m in failure_messages(capfd))


def test_incomplete_scan_fails_the_run_and_touches_nothing(
    shred_dag: Any, world: World, capfd: pytest.CaptureFixture[str]
) -> None:
    (world.root / "stray.bin").write_bytes(b"data no record covers")
    world.advance_days(2.05)
    result = run_dag(shred_dag, spec_path=str(world.spec_path), dry_run=False, confirm="data")
    assert_refused_as_incomplete(result, world, capfd)


def test_a_version_referenced_only_through_a_directory_link_is_never_disabled(
    shred_dag: Any, world: World, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The root holds ``models -> ../store``; behind it, an envelope still wrapped by v1 that
    decrypts through the root. Its scan must not prove v1 unused."""
    store = tmp_path / "store"
    made = make_file(world.client, world.v1, tmp_path / "src2", str(store / "m.enc"), 300, seed=7)
    (world.root / "models").symlink_to("../store")
    assert made.record.key.crypto_key_version == world.v1
    world.advance_days(2.05)

    result = run_dag(shred_dag, spec_path=str(world.spec_path), dry_run=False, confirm="data")

    assert_refused_as_incomplete(result, world, capfd)
    decrypt(world.client, str(world.root / "models" / "m.enc"), str(tmp_path / "m.out"))
    assert (tmp_path / "m.out").stat().st_size == 300


def test_an_unreadable_directory_in_a_root_blocks_the_shred(
    shred_dag: Any, world: World, capfd: pytest.CaptureFixture[str]
) -> None:
    (world.root / "team").mkdir()
    world.advance_days(2.05)

    with unreadable(world.root / "team"):
        result = run_dag(shred_dag, spec_path=str(world.spec_path), dry_run=False, confirm="data")

    assert_refused_as_incomplete(result, world, capfd)


def test_restore_brings_a_scheduled_version_back_and_restarts_the_soak(
    shred_dag: Any, world: World, capfd: pytest.CaptureFixture[str]
) -> None:
    resources.disable_version(world.client, world.v1)
    resources.destroy_version(world.client, world.v1)  # by hand: DESTROY_SCHEDULED
    spec = str(world.spec_path)

    refused = run_dag(shred_dag, spec_path=spec, restore_version=world.v1)  # no reason
    assert refused.states == {"shred": "skipped", "restore": "failed"}
    assert world.state(world.v1) == "DESTROY_SCHEDULED"

    restored = run_dag(shred_dag, spec_path=spec, restore_version=world.v1, reason="INC-42 lost artifact")
    assert restored.states == {"shred": "skipped", "restore": "success"}
    assert restored.values["restore"] == {"version": world.v1, "state": "DISABLED", "enabled": False}
    assert world.state(world.v1) == "DISABLED"
    [event] = read_events(str(world.audit), action="restore")
    assert event.resource == world.v1 and event.reason == "INC-42 lost artifact"

    world.advance_days(2)  # less than the 3d soak the restore restarted
    after = run_dag(shred_dag, spec_path=spec, dry_run=False, confirm="data")
    d1 = decision(after.values["shred"], world.v1)
    assert d1["outcome"] == "kept" and "soaking since" in d1["reason"]
    assert world.state(world.v1) == "DISABLED"

    resources.destroy_version(world.client, world.v1)
    world.advance_days(1.05)  # destroyed for good: restore is impossible and says so
    failure_messages(capfd)
    too_late = run_dag(shred_dag, spec_path=spec, restore_version=world.v1, reason="too late")
    assert too_late.states["restore"] == "failed"
    assert any("it is DESTROYED" in m for m in failure_messages(capfd))
    assert world.state(world.v1) == "DESTROYED"
