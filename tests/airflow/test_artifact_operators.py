"""Encrypt/DecryptArtifactOperator against the IAM-enforcing emulator, producer ≠ consumer.

The producer identity holds only cryptoKeyEncrypter, the consumer only cryptoKeyDecrypter (granted
by the owner through ``kmsflow.kms.iam.grant``), so every permission assertion below is enforced by
the emulator's IAM, not by kmsflow.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, AssetAlias, ObjectStoragePath
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.sdk.execution_time.context import OutletEventAccessors

from kmsflow.airflow.hooks import KmsHook
from kmsflow.airflow.operators import DecryptArtifactOperator, EncryptArtifactOperator
from kmsflow.airflow.operators.artifacts import artifact_errors, artifact_url, asset_uri
from kmsflow.envelope import SIDECAR_SUFFIX, EnvelopeIOError
from kmsflow.kms import KmsTransientError, iam

PRODUCER = "serviceAccount:ml-pipeline@kmsflow-test.iam.gserviceaccount.com"
CONSUMER = "serviceAccount:inference@kmsflow-test.iam.gserviceaccount.com"
PLAINTEXT = b"model-weights: THE-SECRET-PLAINTEXT-7f3a " * 64
MARKER = "THE-SECRET-PLAINTEXT-7f3a"


@pytest.fixture
def roles(iam_emulator: Any, owner: str, key: str, set_conn: Callable[..., str]) -> dict[str, str]:
    """Producer and consumer connections, with least-privilege grants made by the owner."""
    client = iam_emulator.client(owner)
    assert iam.grant(client, key, "roles/cloudkms.cryptoKeyEncrypter", [PRODUCER])
    assert iam.grant(client, key, "roles/cloudkms.cryptoKeyDecrypter", [CONSUMER])
    return {
        "producer": set_conn("kmsflow_producer", endpoint=iam_emulator.endpoint, principal=PRODUCER),
        "consumer": set_conn("kmsflow_consumer", endpoint=iam_emulator.endpoint, principal=CONSUMER),
    }


def context() -> Any:
    return {"outlet_events": OutletEventAccessors()}


def run(op: Any, ctx: Any = None) -> Any:
    return op.execute(context=ctx if ctx is not None else context())


def wrapped_keyset(envelope: Path) -> str:
    record = (
        envelope / "_kmsflow" / "envelope.json" if envelope.is_dir() else Path(f"{envelope}{SIDECAR_SUFFIX}")
    )
    return str(json.loads(record.read_text())["key"]["wrapped_keyset"])


def assert_secret_free(value: Any, *envelopes: Path) -> None:
    """No plaintext and no wrapped keyset (base64 as in the record, or its raw bytes) in ``value``."""
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    assert MARKER not in text
    for envelope in envelopes:
        wrapped = wrapped_keyset(envelope)
        assert wrapped not in text
        assert wrapped[:24] not in text
        assert base64.b64decode(wrapped).hex()[:32] not in text


def test_file_round_trip_producer_encrypts_consumer_decrypts(
    roles: dict[str, str], key: str, tmp_path: Path
) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(PLAINTEXT)
    dst = tmp_path / "out" / "model.bin.enc"
    dst.parent.mkdir()
    enc = EncryptArtifactOperator(
        task_id="enc", key_name=key, src=str(src), dst=str(dst), kmsflow_conn_id=roles["producer"]
    )
    assert [o.uri for o in enc.outlets] == [f"file://{dst}"]  # default outlet: the literal dst
    ctx = context()
    out = run(enc, ctx)
    assert out == {
        "src": str(src),
        "dst": str(dst),
        "kind": "file",
        "envelope_id": out["envelope_id"],
        "crypto_key": key,
        "key_version": f"{key}/cryptoKeyVersions/1",
        "file_count": 1,
        "plaintext_bytes": len(PLAINTEXT),
    }
    assert dst.is_file() and PLAINTEXT not in dst.read_bytes()
    assert Path(f"{dst}{SIDECAR_SUFFIX}").is_file()
    extra = ctx["outlet_events"][enc.outlets[0]].extra
    assert extra["key_version"] == f"{key}/cryptoKeyVersions/1"
    assert extra["envelope_id"] == out["envelope_id"] and extra["crypto_key"] == key
    assert_secret_free(out, dst)
    assert_secret_free(extra, dst)

    restored = tmp_path / "restored.bin"
    dec = DecryptArtifactOperator(
        task_id="dec",
        src=ObjectStoragePath(f"file://{dst}"),
        dst=str(restored),
        kmsflow_conn_id=roles["consumer"],
    )
    back = run(dec)
    assert restored.read_bytes() == PLAINTEXT
    assert {k: back[k] for k in ("dst", "envelope_id", "key_version")} == {
        "dst": str(restored),
        "envelope_id": out["envelope_id"],
        "key_version": out["key_version"],
    }
    assert_secret_free(back, dst)
    assert dec.console_resource == key


def test_dataset_round_trip_with_dst_dir_and_object_storage_paths(
    roles: dict[str, str], key: str, tmp_path: Path
) -> None:
    data = tmp_path / "train"
    (data / "shards").mkdir(parents=True)
    shards = {f"shards/part-{i}.csv": PLAINTEXT + str(i).encode() for i in range(3)}
    for rel, content in shards.items():
        (data / rel).write_bytes(content)
    (tmp_path / "enc").mkdir()
    enc = EncryptArtifactOperator(
        task_id="enc",
        key_name=key,
        src=ObjectStoragePath(f"file://{data}"),
        dst_dir=ObjectStoragePath(f"file://{tmp_path / 'enc'}"),
        kmsflow_conn_id=roles["producer"],
    )
    assert enc.outlets == []  # no literal dst: nothing is declared
    out = run(enc)
    envelope = tmp_path / "enc" / "train.enc"
    assert out["dst"] == str(envelope) and out["kind"] == "dataset" and out["file_count"] == 3
    assert (envelope / "_kmsflow" / "envelope.json").is_file()
    assert sorted(p.relative_to(envelope).as_posix() for p in envelope.rglob("*.csv")) == sorted(shards)

    (tmp_path / "plain").mkdir()
    dec = DecryptArtifactOperator(
        task_id="dec", src=str(envelope), dst_dir=str(tmp_path / "plain"), kmsflow_conn_id=roles["consumer"]
    )
    back = run(dec)
    assert back["dst"] == str(tmp_path / "plain" / "train")
    for rel, content in shards.items():
        assert (tmp_path / "plain" / "train" / rel).read_bytes() == content
    assert_secret_free([out, back], envelope)


def test_asset_alias_outlet_gets_an_event_for_the_concrete_destination(
    roles: dict[str, str], key: str, tmp_path: Path
) -> None:
    src = tmp_path / "metrics.json"
    src.write_bytes(b'{"accuracy": 0.9}')
    alias = AssetAlias("kmsflow-test-artifacts")
    enc = EncryptArtifactOperator(
        task_id="enc",
        key_name=key,
        src=str(src),
        dst_dir=str(tmp_path),
        outlets=[alias],
        kmsflow_conn_id=roles["producer"],
    )
    ctx = context()
    out = run(enc, ctx)
    (event,) = ctx["outlet_events"][alias].asset_alias_events
    assert event.dest_asset_key.uri == asset_uri(out["dst"]) == f"file://{tmp_path}/metrics.json.enc"
    assert event.extra["key_version"] == f"{key}/cryptoKeyVersions/1"


def test_a_dataset_with_a_fifo_fails_the_task_unless_told_to_skip_it(
    roles: dict[str, str], key: str, tmp_path: Path
) -> None:
    src = tmp_path / "run"
    src.mkdir()
    (src / "weights.bin").write_bytes(PLAINTEXT)
    os.mkfifo(src / "events.pipe")
    strict = EncryptArtifactOperator(
        task_id="strict",
        key_name=key,
        src=str(src),
        dst=str(tmp_path / "a.enc"),
        kmsflow_conn_id=roles["producer"],
    )
    with pytest.raises(AirflowFailException, match="cannot be encrypted as files"):
        run(strict)
    assert not (tmp_path / "a").exists()

    lenient = EncryptArtifactOperator(
        task_id="lenient",
        key_name=key,
        src=str(src),
        dst=str(tmp_path / "b.enc"),
        kmsflow_conn_id=roles["producer"],
        skip_unsupported=True,
    )
    out = run(lenient)
    assert out["file_count"] == 1 and out["omitted"] == [{"path": "events.pipe", "kind": "special_file"}]


def test_producer_is_refused_decrypt_and_consumer_refused_encrypt(
    roles: dict[str, str], key: str, tmp_path: Path
) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(PLAINTEXT)
    dst = tmp_path / "model.bin.enc"
    run(
        EncryptArtifactOperator(
            task_id="e", key_name=key, src=str(src), dst=str(dst), kmsflow_conn_id=roles["producer"]
        )
    )

    steal = DecryptArtifactOperator(
        task_id="d", src=str(dst), dst=str(tmp_path / "stolen"), kmsflow_conn_id=roles["producer"]
    )
    with pytest.raises(AirflowFailException, match=r"permission denied \(decrypt\).*cryptoKeyDecrypter"):
        run(steal)
    assert not (tmp_path / "stolen").exists()

    forge = EncryptArtifactOperator(
        task_id="f",
        key_name=key,
        src=str(src),
        dst=str(tmp_path / "forged.enc"),
        kmsflow_conn_id=roles["consumer"],
    )
    with pytest.raises(AirflowFailException, match=r"permission denied \(encrypt\).*cryptoKeyEncrypter"):
        run(forge)
    assert not (tmp_path / "forged.enc").exists()


def test_tampered_envelope_fails_without_output(roles: dict[str, str], key: str, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(PLAINTEXT)
    dst = tmp_path / "model.bin.enc"
    run(
        EncryptArtifactOperator(
            task_id="e", key_name=key, src=str(src), dst=str(dst), kmsflow_conn_id=roles["producer"]
        )
    )
    blob = bytearray(dst.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    dst.write_bytes(bytes(blob))
    dec = DecryptArtifactOperator(
        task_id="d", src=str(dst), dst=str(tmp_path / "x"), kmsflow_conn_id=roles["consumer"]
    )
    with pytest.raises(AirflowFailException, match="failed authentication"):
        run(dec)
    assert not (tmp_path / "x").exists()


def test_existing_destination_and_missing_source_fail_without_retry(
    roles: dict[str, str], key: str, tmp_path: Path
) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"a")
    (tmp_path / "taken.enc").write_bytes(b"someone else's")
    op = EncryptArtifactOperator(
        task_id="e",
        key_name=key,
        src=str(src),
        dst=str(tmp_path / "taken.enc"),
        kmsflow_conn_id=roles["producer"],
    )
    with pytest.raises(AirflowFailException, match="already exists"):
        run(op)
    assert (tmp_path / "taken.enc").read_bytes() == b"someone else's"
    missing = EncryptArtifactOperator(
        task_id="m",
        key_name=key,
        src=str(tmp_path / "nope"),
        dst=str(tmp_path / "n.enc"),
        kmsflow_conn_id=roles["producer"],
    )
    with pytest.raises(AirflowFailException, match="no such file"):
        run(missing)


def test_storage_errors_are_retryable() -> None:
    with pytest.raises(AirflowException) as info, artifact_errors("encrypt"):
        raise EnvelopeIOError("gs://b/x: connection reset while writing ciphertext")
    assert not isinstance(info.value, AirflowFailException)


# -- transient KMS errors: retried under the connection's ``deadline`` ------------------------------

DEADLINE = 1.5
"""The flaky connection's ``deadline`` extra: far below the library's 60 s default."""
FAST_ENOUGH = 10.0
"""Seconds a task may take to give up under ``DEADLINE``; waiting out the 60 s default fails."""


@pytest.fixture
def flaky(fresh_emulator: Any, location: str, set_conn: Callable[..., str]) -> tuple[Any, str, str]:
    """A private emulator (faults are injected into it), a connection with a short ``deadline``, a key."""
    conn_id = set_conn("kmsflow_flaky", endpoint=fresh_emulator.endpoint, deadline=DEADLINE)
    hook = KmsHook(kmsflow_conn_id=conn_id)
    ring, _ = hook.ensure_key_ring(location, "r")
    made, _ = hook.ensure_crypto_key(
        ring.name,
        "k",
        purpose="ENCRYPT_DECRYPT",
        algorithm="GOOGLE_SYMMETRIC_ENCRYPTION",
        protection_level="SOFTWARE",
    )
    hook.close()
    return fresh_emulator, conn_id, str(made.name)


@pytest.mark.parametrize("action", ["encrypt", "decrypt"])
def test_kms_unavailable_fails_the_task_at_the_connection_deadline(
    flaky: tuple[Any, str, str], tmp_path: Path, action: str
) -> None:
    emulator, conn_id, key = flaky
    src = tmp_path / "model.bin"
    src.write_bytes(PLAINTEXT)
    envelope = tmp_path / "model.bin.enc"
    run(
        EncryptArtifactOperator(
            task_id="e", key_name=key, src=str(src), dst=str(envelope), kmsflow_conn_id=conn_id
        )
    )
    out = tmp_path / "out"
    op: Any = (
        EncryptArtifactOperator(
            task_id="e2", key_name=key, src=str(src), dst=str(out), kmsflow_conn_id=conn_id
        )
        if action == "encrypt"
        else DecryptArtifactOperator(task_id="d", src=str(envelope), dst=str(out), kmsflow_conn_id=conn_id)
    )
    emulator.admin.set_faults(rate=1.0, codes=["UNAVAILABLE"], methods=["Encrypt", "Decrypt"])
    start = time.monotonic()
    with pytest.raises(AirflowException, match=rf"{action} with {key}: gave up retrying") as info:
        run(op)
    elapsed = time.monotonic() - start
    assert elapsed < FAST_ENOUGH, f"took {elapsed:.1f}s: the connection's deadline did not apply"
    assert not isinstance(info.value, AirflowFailException)  # the task's own retries still apply
    assert isinstance(info.value.__cause__, KmsTransientError)
    assert emulator.admin.faults()["injected"] > 1  # retried within the deadline, then given up
    assert not out.exists() and not Path(f"{out}{SIDECAR_SUFFIX}").exists()


def test_transient_kms_errors_are_retried_until_they_clear(
    flaky: tuple[Any, str, str], tmp_path: Path
) -> None:
    """A short deadline still rides out a brief outage: a few failed calls, then the task succeeds."""
    emulator, conn_id, key = flaky
    src = tmp_path / "model.bin"
    src.write_bytes(PLAINTEXT)
    envelope = tmp_path / "model.bin.enc"
    emulator.admin.set_faults(script=["UNAVAILABLE", "DEADLINE_EXCEEDED", "UNAVAILABLE"], methods=["Encrypt"])
    out = run(
        EncryptArtifactOperator(
            task_id="e", key_name=key, src=str(src), dst=str(envelope), kmsflow_conn_id=conn_id
        )
    )
    assert out["key_version"] == f"{key}/cryptoKeyVersions/1"
    status = emulator.admin.faults()
    assert status["injected"] == 3 and status["script_remaining"] == []

    emulator.admin.set_faults(script=["UNAVAILABLE", "RESOURCE_EXHAUSTED", "OK"], methods=["Decrypt"])
    restored = tmp_path / "restored.bin"
    back = run(
        DecryptArtifactOperator(task_id="d", src=str(envelope), dst=str(restored), kmsflow_conn_id=conn_id)
    )
    assert back["envelope_id"] == out["envelope_id"]
    assert restored.read_bytes() == PLAINTEXT
    status = emulator.admin.faults()
    assert status["injected"] == 5 and status["script_remaining"] == []


def test_paths_and_urls() -> None:
    assert artifact_url("rel/x") == os.path.abspath("rel/x")
    assert artifact_url("file:///tmp/a") == "/tmp/a"
    assert artifact_url("gcs://b/k") == "gs://b/k"
    assert (
        artifact_url(ObjectStoragePath("gs://b/k/m.enc", conn_id="google_cloud_default")) == "gs://b/k/m.enc"
    )
    assert artifact_url(Path("/tmp/p")) == "/tmp/p"
    assert asset_uri("/tmp/p") == "file:///tmp/p" and asset_uri("gs://b/k") == "gs://b/k"
    with pytest.raises(ValueError, match="exactly one of dst= and dst_dir="):
        EncryptArtifactOperator(task_id="x", key_name="k", src="a")
    with pytest.raises(ValueError, match="non-empty"):
        artifact_url("  ")


# -- mapped through dag.test() ---------------------------------------------------------------------


def _sync(dag: DAG) -> None:
    """Register a DAG defined in a test module, as the DAG processor would (dag.test needs it)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.devnull, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level("DEBUG")
    yield caplog


def test_mapped_encrypt_over_three_files_through_dag_test(
    airflow_db: str,
    roles: dict[str, str],
    key: str,
    tmp_path: Path,
    captured_logs: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from airflow.models.asset import AssetEvent
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    files = []
    for i in range(3):
        f = tmp_path / "in" / f"shard-{i}.npy"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(PLAINTEXT + bytes([i]))
        files.append(str(f))
    out_dir = tmp_path / "envelopes"
    out_dir.mkdir()
    alias = AssetAlias(f"kmsflow-mapped-{tmp_path.name}")
    single = tmp_path / "single.enc"
    with DAG(
        f"kmsflow_test_mapped_{tmp_path.name}"[:200], schedule=None, start_date=datetime(2026, 1, 1)
    ) as dag:
        EncryptArtifactOperator.partial(
            task_id="encrypt",
            key_name="{{ params.key }}",
            dst_dir=str(out_dir),
            kmsflow_conn_id=roles["producer"],
            outlets=[alias],
        ).expand(src=files)
        EncryptArtifactOperator(
            task_id="single", key_name=key, src=files[0], dst=str(single), kmsflow_conn_id=roles["producer"]
        )
    dag.params["key"] = key
    _sync(dag)
    dag_run = dag.test()

    with create_session() as session:
        states = {
            (ti.task_id, ti.map_index): str(ti.state) for ti in dag_run.get_task_instances(session=session)
        }
        rows = session.scalars(
            XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag.dag_id, key="return_value")
        )
        values = [(row.task_id, row.map_index, XComModel.deserialize_value(row)) for row in rows]
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == dag_run.run_id).all()
        event_data = [(e.asset.uri, dict(e.extra)) for e in events]
    assert states == {
        ("encrypt", 0): "success",
        ("encrypt", 1): "success",
        ("encrypt", 2): "success",
        ("single", -1): "success",
    }
    mapped = sorted((v for t, _, v in values if t == "encrypt"), key=lambda v: v["src"])
    assert [v["dst"] for v in mapped] == [str(out_dir / f"shard-{i}.npy.enc") for i in range(3)]
    assert len({v["envelope_id"] for v in mapped}) == 3
    assert {v["key_version"] for v in mapped} == {f"{key}/cryptoKeyVersions/1"}
    for i in range(3):
        assert (out_dir / f"shard-{i}.npy.enc").is_file()

    uris = {uri: extra for uri, extra in event_data}
    for v in mapped:  # the alias turned each mapped destination into an asset event
        assert uris[f"file://{v['dst']}"]["key_version"] == f"{key}/cryptoKeyVersions/1"
        assert uris[f"file://{v['dst']}"]["envelope_id"] == v["envelope_id"]
    assert uris[f"file://{single}"]["key_version"] == f"{key}/cryptoKeyVersions/1"

    envelopes = [out_dir / f"shard-{i}.npy.enc" for i in range(3)] + [single]
    assert_secret_free([v for _, _, v in values], *envelopes)
    assert_secret_free(event_data, *envelopes)
    out, err = capfd.readouterr()
    logs = captured_logs.text + out + err
    assert "Encrypted" in logs  # the task logs were captured, and hold no secrets
    assert_secret_free(logs, *envelopes)


# -- templates, serialization, provider registration -----------------------------------------------


def test_templates_render_and_the_dag_serializes(tmp_path: Path) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    from kmsflow.airflow.get_provider_info import get_provider_info

    with DAG(
        "kmsflow_artifacts_serialization",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        params={
            "key": "projects/p/locations/l/keyRings/r/cryptoKeys/k",
            "run": "r1",
            "conn": "kmsflow_producer",
        },
    ) as dag:
        EncryptArtifactOperator(
            task_id="enc",
            key_name="{{ params.key }}",
            src=ObjectStoragePath(f"file://{tmp_path}/model.bin"),
            dst="gs://bucket/{{ params.run }}/model.bin.enc",
            kmsflow_conn_id="{{ params.conn }}",
        )
        EncryptArtifactOperator.partial(
            task_id="mapped", key_name="{{ params.key }}", dst_dir="gs://bucket/{{ params.run }}"
        ).expand(src=["a.npy", "b.npy"])
        DecryptArtifactOperator(task_id="dec", src="gs://bucket/m.enc", dst=str(tmp_path / "m"))
    enc = dag.get_task("enc")
    assert enc.outlets == []  # templated dst: no parse-time asset
    assert [o.uri for o in dag.get_task("dec").outlets] == [f"file://{tmp_path}/m"]
    enc.render_template_fields({"params": dag.params.dump()})
    assert enc.key_name == "projects/p/locations/l/keyRings/r/cryptoKeys/k"
    assert enc.dst == "gs://bucket/r1/model.bin.enc" and enc.kmsflow_conn_id == "kmsflow_producer"
    assert enc.destination(artifact_url(enc.src)) == "gs://bucket/r1/model.bin.enc"

    restored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    assert set(restored.task_ids) == {"enc", "mapped", "dec"}
    assert "Cloud KMS console" in restored.get_task("enc").operator_extra_link_dict
    modules = get_provider_info()["operators"][0]["python-modules"]
    assert "kmsflow.airflow.operators.artifacts" in modules
