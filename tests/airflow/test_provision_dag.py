"""kmsflow_provision end to end through ``dag.test()`` on a migrated SQLite DB, IAM enforced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "specs" / "seed.yaml"
DAG_ID = "kmsflow_provision"
ROGUE = "user:rogue@example.com"


def load_dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "kmsflow_provision.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(DAG_ID)


@pytest.fixture(scope="module")
def provision_dag(airflow_db: str) -> Any:
    return load_dag()


@pytest.fixture
def spec_file(tmp_path: Path, ring_id: str) -> Path:
    """The seed spec with this test's own key ring id (the IAM emulator is shared)."""
    data = yaml.safe_load(SEED.read_text())
    data["key_rings"][0]["id"] = ring_id
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(dag: Any, **conf: Any) -> tuple[dict[str, str], dict[str, Any]]:
    """One ``dag.test()`` run: ({task_id: state}, {task_id: XCom return value})."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag_run = dag.test(run_conf=conf)
    with create_session() as session:
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=DAG_ID, key="return_value"))
        values = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    return states, values


def test_params_default_to_the_example_spec_and_applying(provision_dag: Any) -> None:
    params = provision_dag.params
    assert Path(params["spec_path"]) == SEED
    assert params["dry_run"] is False
    assert params["kmsflow_conn_id"] == "kmsflow_default"
    assert params["audit_log"] == ""
    assert [t.task_id for t in provision_dag.topological_sort()] == ["validate", "plan", "apply", "verify"]


def test_runs_on_spec_changes_and_on_a_drift_repair_schedule(provision_dag: Any) -> None:
    from airflow.sdk import AssetOrTimeSchedule

    from kmsflow.airflow.triggers import KeySpecChangeTrigger

    schedule = provision_dag.timetable
    assert isinstance(schedule, AssetOrTimeSchedule)
    assert schedule.timetable.expression == "0 * * * *"  # hourly unless KMSFLOW_PROVISION_SCHEDULE
    asset = schedule.asset_condition
    assert asset.name == "kmsflow_key_spec" and asset.uri == f"file://{SEED}"
    (watcher,) = asset.watchers
    assert isinstance(watcher.trigger, KeySpecChangeTrigger) and watcher.trigger.spec_path == str(SEED)
    assert provision_dag.max_active_runs == 1  # an event and the schedule never apply at once


def test_the_schedule_comes_from_the_environment(airflow_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("KMSFLOW_PROVISION_SCHEDULE", "*/5 * * * *")
    monkeypatch.setenv("KMSFLOW_SPEC_POLL_INTERVAL", "7")
    dag = load_dag()
    assert dag.timetable.timetable.expression == "*/5 * * * *"
    assert dag.timetable.asset_condition.watchers[0].trigger.poll_interval == 7.0

    for variable, value in (
        ("KMSFLOW_PROVISION_SCHEDULE", "every hour"),
        ("KMSFLOW_SPEC_POLL_INTERVAL", "-1"),
    ):
        monkeypatch.setenv(variable, value)
        bag = DagBag(dag_folder=str(REPO / "dags" / "kmsflow_provision.py"))
        (error,) = bag.import_errors.values()
        assert variable in error and repr(value) in error
        monkeypatch.delenv(variable)


def test_apply_then_noop_then_drift_repaired(
    provision_dag: Any,
    kms_conn: str,
    spec_file: Path,
    ring_id: str,
    hook: Any,
    iam_emulator: Any,
    owner: str,
    set_conn: Any,
    tmp_path: Path,
) -> None:
    from kmsflow.audit import read_events

    audit = tmp_path / "audit.jsonl"
    set_conn(endpoint=iam_emulator.endpoint, principal=owner, audit_log=str(audit))
    states, values = run(provision_dag, spec_path=str(spec_file))
    assert states == {"validate": "success", "plan": "success", "apply": "success", "verify": "success"}
    plan = values["plan"]
    assert not plan["empty"] and plan["summary"]["create"] == 3  # ring + two keys
    assert values["apply"]["changed"] is True
    assert values["verify"]["converged"] is True
    ring = f"projects/kmsflow-demo/locations/us-central1/keyRings/{ring_id}"
    key = f"{ring}/cryptoKeys/ai-crypto-key"
    assert hook.get_key(key).rotation_period.total_seconds() == 7776000

    events = read_events(str(audit))
    assert len(events) == 8  # 3 creates + 5 IAM grants, one event each
    assert {e.action for e in events} == {"provision-create", "provision-grant"}
    assert {e.actor for e in events} == {owner}
    assert all(e.run.startswith("kmsflow_provision/manual__") for e in events)

    states, values = run(provision_dag, spec_path=str(spec_file))
    assert values["plan"]["empty"] is True
    assert states["apply"] == "skipped" and states["verify"] == "success"
    assert len(read_events(str(audit))) == 8

    hook.grant(key, "roles/cloudkms.cryptoKeyDecrypter", [ROGUE])  # behind kmsflow's back
    states, values = run(provision_dag, spec_path=str(spec_file))
    assert values["plan"]["changes"] == [
        {
            "action": "revoke",
            "resource": key,
            "field": "roles/cloudkms.cryptoKeyDecrypter",
            "before": ROGUE,
            "after": None,
        }
    ]
    assert states == {"validate": "success", "plan": "success", "apply": "success", "verify": "success"}
    assert read_events(str(audit))[-1].action == "provision-revoke"
    assert (
        hook.iam_drift(
            key,
            {
                "roles/cloudkms.cryptoKeyDecrypter": {
                    "serviceAccount:inference@kmsflow-demo.iam.gserviceaccount.com"
                }
            },
        )
        == []
    )


def test_dry_run_plans_without_writing(
    provision_dag: Any, kms_conn: str, spec_file: Path, ring_id: str, hook: Any
) -> None:
    from kmsflow.kms.errors import KmsNotFoundError

    states, values = run(provision_dag, spec_path=str(spec_file), dry_run=True)
    assert states == {"validate": "success", "plan": "success", "apply": "skipped", "verify": "skipped"}
    assert values["plan"]["summary"]["create"] == 3
    with pytest.raises(KmsNotFoundError):
        hook.get_key(
            f"projects/kmsflow-demo/locations/us-central1/keyRings/{ring_id}/cryptoKeys/ai-crypto-key"
        )


def test_invalid_spec_fails_validation_before_any_kms_call(
    provision_dag: Any, kms_conn: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "project: p\nlocation: us-central1\n"
        "key_rings:\n  - id: r\n    keys:\n      - id: k\n        rotation_period: 1h\n"
    )
    states, _ = run(provision_dag, spec_path=str(bad))
    assert states["validate"] == "failed"
    assert states["plan"] == states["apply"] == "upstream_failed"


def test_immutable_change_is_a_conflict_that_blocks_apply(kms_conn: str, spec_file: Path, hook: Any) -> None:
    import logging

    from airflow.sdk.exceptions import AirflowFailException

    from kmsflow.airflow.tasks.provision import apply_plan, plan_spec, verify_plan_spec

    log = logging.getLogger("test")
    apply_plan(hook, plan_spec(hook, spec_file).to_dict(), log)
    data = yaml.safe_load(spec_file.read_text())
    data["key_rings"][0]["keys"][0]["protection_level"] = "HSM"
    spec_file.write_text(yaml.safe_dump(data))

    changed = plan_spec(hook, spec_file)
    assert [(c.action, c.field) for c in changed.conflicts] == [("conflict", "protection_level")]
    assert "immutable" in changed.render()
    with pytest.raises(AirflowFailException, match="protection_level"):
        apply_plan(hook, changed.to_dict(), log)
    with pytest.raises(AirflowFailException, match="does not match the spec"):
        verify_plan_spec(hook, changed.to_dict())
