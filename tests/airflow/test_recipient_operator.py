"""``EncryptArtifactOperator(recipient=...)``: a producer task holding only a public key file (no
connection used, no role) or a recipient key name; the consumer decrypts with the usual operator."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.execution_time.context import OutletEventAccessors
from envelope.recipients import make_recipient_key
from envelope.test_signature import make_signing_key

from kmsflow.airflow.operators import DecryptArtifactOperator, EncryptArtifactOperator
from kmsflow.kms import iam
from kmsflow.kms.public_key import fetch_public_key

PRODUCER = "serviceAccount:edge@kmsflow-test.iam.gserviceaccount.com"
CONSUMER = "serviceAccount:inference@kmsflow-test.iam.gserviceaccount.com"
PLAINTEXT = b"user upload: THE-SECRET-PLAINTEXT-9c1e " * 100


def context() -> Any:
    return {"outlet_events": OutletEventAccessors()}


@pytest.fixture
def recipient(iam_emulator: Any, owner: str) -> str:
    client = iam_emulator.client(owner)
    key = make_recipient_key(client, "ML_KEM_768")
    assert iam.grant(client, key, "roles/cloudkms.decapsulator", [CONSUMER])
    assert iam.grant(client, key, "roles/cloudkms.publicKeyViewer", [PRODUCER])
    assert iam.grant(client, key, "roles/cloudkms.viewer", [PRODUCER])
    return key


def test_producer_with_a_public_key_file_needs_no_connection(
    iam_emulator: Any,
    owner: str,
    recipient: str,
    set_conn: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KMSFLOW_CACHE_DIR", str(tmp_path / "cache"))
    pub = tmp_path / "inbox.pub"
    pub.write_bytes(
        fetch_public_key(iam_emulator.client(owner), f"{recipient}/cryptoKeyVersions/1").to_file_bytes()
    )
    (tmp_path / "upload.bin").write_bytes(PLAINTEXT)

    with DAG(
        "recipient_file", schedule=None, start_date=datetime(2026, 1, 1), params={"pub": str(pub)}
    ) as dag:
        EncryptArtifactOperator(
            task_id="enc",
            recipient="{{ params.pub }}",
            src=str(tmp_path / "upload.bin"),
            dst=str(tmp_path / "upload.enc"),
            kmsflow_conn_id="no_such_connection",  # never looked up: a public key file needs none
        )
    enc = dag.get_task("enc")
    enc.render_template_fields({"params": dag.params.dump()})
    assert enc.recipient == str(pub)
    out = enc.execute(context=context())
    assert out["key_version"] == f"{recipient}/cryptoKeyVersions/1" and out["kind"] == "file"
    text = json.dumps(out)
    assert "THE-SECRET" not in text
    record = json.loads((tmp_path / "upload.enc.kmsflow.json").read_text())
    assert record["key"]["wrap"] == "ml-kem-768"
    assert record["key"]["wrapped_keyset"] not in text and record["key"]["encapsulated_key"][:24] not in text

    consumer = set_conn("kmsflow_consumer", endpoint=iam_emulator.endpoint, principal=CONSUMER)
    producer = set_conn("kmsflow_producer", endpoint=iam_emulator.endpoint, principal=PRODUCER)
    DecryptArtifactOperator(
        task_id="dec", src=str(tmp_path / "upload.enc"), dst=str(tmp_path / "out"), kmsflow_conn_id=consumer
    ).execute(context=context())
    assert (tmp_path / "out").read_bytes() == PLAINTEXT
    with pytest.raises(AirflowFailException):  # the producer cannot open what it wrote
        DecryptArtifactOperator(
            task_id="dec2",
            src=str(tmp_path / "upload.enc"),
            dst=str(tmp_path / "o2"),
            kmsflow_conn_id=producer,
        ).execute(context=context())
    assert not (tmp_path / "o2").exists()


def test_producer_by_key_name_uses_its_connection(
    iam_emulator: Any,
    recipient: str,
    set_conn: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KMSFLOW_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a").write_bytes(PLAINTEXT)
    producer = set_conn("kmsflow_producer", endpoint=iam_emulator.endpoint, principal=PRODUCER)
    out = EncryptArtifactOperator(
        task_id="enc",
        recipient=recipient,
        src=str(tmp_path / "ds"),
        dst=str(tmp_path / "ds.enc"),
        kmsflow_conn_id=producer,
    ).execute(context=context())
    assert out["key_version"] == f"{recipient}/cryptoKeyVersions/1" and out["file_count"] == 1


def test_producer_with_a_public_key_file_signs_with_its_connection(
    iam_emulator: Any,
    owner: str,
    recipient: str,
    set_conn: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``recipient=<file>, sign_with=<key>``: the wrap is local, the connection only signs (the
    producer has no role on the recipient key that would let it unwrap); the consumer decrypts
    with ``signer=`` (the signature and the key commitment checked first)."""
    monkeypatch.setenv("KMSFLOW_CACHE_DIR", str(tmp_path / "cache"))
    owner_client = iam_emulator.client(owner)
    pub = tmp_path / "inbox.pub"
    pub.write_bytes(fetch_public_key(owner_client, f"{recipient}/cryptoKeyVersions/1").to_file_bytes())
    ring = recipient.rsplit("/cryptoKeys/", 1)[0].rsplit("/", 1)[-1]
    signer = make_signing_key(owner_client, ring, "EC_SIGN_P256_SHA256")
    for role in ("roles/cloudkms.signer", "roles/cloudkms.publicKeyViewer"):
        assert iam.grant(owner_client, signer, role, [PRODUCER])
    assert iam.grant(owner_client, signer, "roles/cloudkms.publicKeyViewer", [CONSUMER])
    (tmp_path / "upload.bin").write_bytes(PLAINTEXT)
    producer = set_conn("kmsflow_producer", endpoint=iam_emulator.endpoint, principal=PRODUCER)
    consumer = set_conn("kmsflow_consumer", endpoint=iam_emulator.endpoint, principal=CONSUMER)

    version = f"{signer}/cryptoKeyVersions/1"
    out = EncryptArtifactOperator(
        task_id="enc",
        recipient=str(pub),
        sign_with=version,
        src=str(tmp_path / "upload.bin"),
        dst=str(tmp_path / "upload.enc"),
        kmsflow_conn_id=producer,
    ).execute(context=context())
    assert out["signed_by"] == version and out["key_version"] == f"{recipient}/cryptoKeyVersions/1"
    assert "THE-SECRET" not in json.dumps(out)
    done = DecryptArtifactOperator(
        task_id="dec",
        src=str(tmp_path / "upload.enc"),
        dst=str(tmp_path / "out"),
        signer=signer,
        kmsflow_conn_id=consumer,
    ).execute(context=context())
    assert done["signed_by"] == version and (tmp_path / "out").read_bytes() == PLAINTEXT

    # Another signer named: refused before anything is decrypted.
    other = make_signing_key(owner_client, ring, "EC_SIGN_P256_SHA256")
    assert iam.grant(owner_client, other, "roles/cloudkms.publicKeyViewer", [CONSUMER])
    with pytest.raises(AirflowFailException, match="signed by"):
        DecryptArtifactOperator(
            task_id="dec2",
            src=str(tmp_path / "upload.enc"),
            dst=str(tmp_path / "o2"),
            signer=other,
            kmsflow_conn_id=consumer,
        ).execute(context=context())
    assert not (tmp_path / "o2").exists()


def test_key_name_and_recipient_are_exclusive(tmp_path: Path) -> None:
    """Neither is refused when the DAG is built; both (or neither) non-empty once rendered is
    refused when the task runs, before anything is read or written."""
    with pytest.raises(ValueError, match="exactly one"):
        EncryptArtifactOperator(task_id="x", src="a", dst="b")
    (tmp_path / "a").write_bytes(PLAINTEXT)
    for task_id, key_name, recipient in (("both", "k", "r"), ("neither", "", "")):
        with pytest.raises(AirflowFailException, match="exactly one of key_name and recipient"):
            EncryptArtifactOperator(
                task_id=task_id,
                src=str(tmp_path / "a"),
                dst=str(tmp_path / "b"),
                key_name=key_name,
                recipient=recipient,
            ).execute(context=context())
    assert not (tmp_path / "b").exists()
