"""kmsflow_ml_pipeline end to end through ``dag.test()``: seed spec provisioned, IAM enforced.

The emulator is provisioned from ``examples/specs/seed.yaml`` (own key ring id: the IAM emulator is
shared) through ``kmsflow.spec`` plan + apply as the owner, so the producer and consumer identities
have exactly the seed's least-privilege grants.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kmsflow.envelope import DATASET_RECORD, SIDECAR_SUFFIX, inspect
from kmsflow.spec import apply, parse_spec, plan

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "specs" / "seed.yaml"
DAG_ID = "kmsflow_ml_pipeline"
PRODUCER = "serviceAccount:ml-pipeline@kmsflow-demo.iam.gserviceaccount.com"
CONSUMER = "serviceAccount:inference@kmsflow-demo.iam.gserviceaccount.com"
# Plaintext fingerprints: .npy magic, pickle protocol >= 2, and the metrics' field names.
PLAINTEXT_MARKERS = (b"\x93NUMPY", b"holdout_accuracy", b"sklearn.linear_model")


@pytest.fixture(scope="module")
def ml_dag(airflow_db: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "kmsflow_ml_pipeline.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(DAG_ID)


@pytest.fixture
def seed_key(iam_emulator: Any, owner: str, ring_id: str) -> str:
    """The seed spec applied as the owner under this test's key ring id; the ai-crypto-key name."""
    data = yaml.safe_load(SEED.read_text())
    data["key_rings"][0]["id"] = ring_id
    spec = parse_spec(data, "seed.yaml (test ring)")
    client = iam_emulator.client(owner)
    apply(plan(spec, client), client)
    return f"projects/kmsflow-demo/locations/us-central1/keyRings/{ring_id}/cryptoKeys/ai-crypto-key"


@pytest.fixture
def identities(iam_emulator: Any, set_conn: Callable[..., str]) -> None:
    set_conn("kmsflow_producer", endpoint=iam_emulator.endpoint, principal=PRODUCER)
    set_conn("kmsflow_consumer", endpoint=iam_emulator.endpoint, principal=CONSUMER)


def run(dag: Any, **conf: Any) -> tuple[dict[str, str], dict[str, Any]]:
    """One ``dag.test()`` run: ({task_id[map_index]: state}, {same: XCom return value})."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    def name(task_id: str, map_index: int) -> str:
        return task_id if map_index < 0 else f"{task_id}[{map_index}]"

    dag_run = dag.test(run_conf=conf)
    with create_session() as session:
        states = {
            name(ti.task_id, ti.map_index): str(ti.state)
            for ti in dag_run.get_task_instances(session=session)
        }
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=DAG_ID, key="return_value"))
        values = {name(r.task_id, r.map_index): XComModel.deserialize_value(r) for r in rows}
    return states, values


def test_params_and_shape(ml_dag: Any) -> None:
    params = ml_dag.params
    assert params["output_root"] == "demo-output/artifacts"
    assert params["key_name"] == (
        "projects/kmsflow-demo/locations/us-central1/keyRings/ai-key-ring/cryptoKeys/ai-crypto-key"
    )
    assert (params["producer_conn_id"], params["consumer_conn_id"]) == (
        "kmsflow_producer",
        "kmsflow_consumer",
    )
    assert (params["signing_key"], params["recipient"]) == ("", "")  # symmetric and unsigned by default
    tasks = {t.task_id: t for t in ml_dag.tasks}
    assert tasks["prepare"].is_setup and tasks["cleanup_staging"].is_teardown
    assert {"encrypt_dataset", "encrypt_files"} <= tasks["cleanup_staging"].upstream_task_ids


def test_pipeline_encrypts_as_producer_and_scores_as_consumer(
    ml_dag: Any,
    seed_key: str,
    identities: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    staging = tmp_path / "staging"
    monkeypatch.setenv("KMSFLOW_STAGING_DIR", str(staging))
    root = tmp_path / "artifacts"
    states, values = run(ml_dag, output_root=str(root), key_name=seed_key)
    assert states == {
        "prepare": "success",
        "train": "success",
        "recipient_public_key": "success",  # "" without the recipient param
        "encrypt_dataset": "success",
        "encrypt_files[0]": "success",
        "encrypt_files[1]": "success",
        "cleanup_staging": "success",
        "check_least_privilege": "success",
        "score": "success",
    }
    scored = values["score"]
    assert scored["matches_training_metrics"] is True
    assert 0.5 < scored["holdout_accuracy"] <= 1.0
    assert values["check_least_privilege"] == {"producer_decrypt": "refused", "consumer_encrypt": "refused"}
    assert values["recipient_public_key"] == ""

    (run_dir,) = root.iterdir()
    dataset, model, metrics = run_dir / "dataset.enc", run_dir / "model.pkl.enc", run_dir / "metrics.json.enc"
    version = f"{seed_key}/cryptoKeyVersions/1"
    summaries = [inspect(str(p)) for p in (dataset, model, metrics)]
    assert [(s["kind"], s["file_count"]) for s in summaries] == [("dataset", 8), ("file", 1), ("file", 1)]
    assert {s["crypto_key_version"] for s in summaries} == {version}
    assert sorted(scored["envelopes"]) == sorted(s["envelope_id"] for s in summaries)

    # Envelopes only: every file under the output root is a record or a listed ciphertext.
    expected = {
        dataset / DATASET_RECORD,
        Path(f"{model}{SIDECAR_SUFFIX}"),
        Path(f"{metrics}{SIDECAR_SUFFIX}"),
    }
    expected |= {model, metrics} | {dataset / f["path"] for f in summaries[0]["files"]}
    found = {p for p in root.rglob("*") if p.is_file()}
    assert found == expected
    for path in found:
        content = path.read_bytes()
        assert not any(marker in content for marker in PLAINTEXT_MARKERS), path
    # The plaintext staging (and score's temp dir, made beside it) is gone.
    assert staging.is_dir() and list(staging.iterdir()) == []

    for task_id in ("encrypt_dataset", "encrypt_files[0]", "encrypt_files[1]"):
        assert values[task_id]["key_version"] == version
        assert "wrapped_keyset" not in values[task_id]

    # Lineage: the alias turned each envelope into an asset event naming the exact key version.
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = {
            e.asset.uri: dict(e.extra)
            for e in session.query(AssetEvent).filter(AssetEvent.source_dag_id == DAG_ID)
            if e.asset.uri.startswith(f"file://{run_dir}")
        }
    assert set(events) == {f"file://{p}" for p in (dataset, model, metrics)}
    assert {e["key_version"] for e in events.values()} == {version}
    assert sorted(e["envelope_id"] for e in events.values()) == sorted(scored["envelopes"])


def test_staging_is_removed_when_encryption_fails(
    ml_dag: Any,
    seed_key: str,
    identities: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    set_conn: Callable[..., str],
    iam_emulator: Any,
) -> None:
    """The consumer cannot encrypt: the encrypt tasks fail, the teardown still removes plaintext."""
    staging = tmp_path / "staging"
    monkeypatch.setenv("KMSFLOW_STAGING_DIR", str(staging))
    root = tmp_path / "artifacts"
    states, _ = run(ml_dag, output_root=str(root), key_name=seed_key, producer_conn_id="kmsflow_consumer")
    assert states["train"] == "success"
    assert states["encrypt_dataset"] == "failed"
    assert states["cleanup_staging"] == "success"
    assert states["score"] == "upstream_failed"
    assert list(staging.iterdir()) == []
    assert [p for p in root.rglob("*") if p.is_file()] == []
