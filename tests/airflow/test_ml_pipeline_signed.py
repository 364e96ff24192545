"""kmsflow_ml_pipeline with ``signing_key``: the producer signs every envelope, the consumer requires
each signature (``decrypt --signer`` semantics) before decrypting; with ``recipient`` too, the
producer holds only the recipient's public key file and the signing key. IAM enforced by the
emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envelope.recipients import wait_enabled
from google.cloud import kms_v1
from test_ml_pipeline_dag import (  # noqa: F401 (fixtures)
    CONSUMER,
    PLAINTEXT_MARKERS,
    PRODUCER,
    identities,
    ml_dag,
    run,
    seed_key,
)

from kmsflow.envelope import Envelope, inspect, verify_signature
from kmsflow.kms import iam


def signing_key(client: kms_v1.KeyManagementServiceClient, in_ring_of: str) -> str:
    """An EC P-256 signing key in the ring of key ``in_ring_of``: the producer signs, both may read
    its public key; returns its version 1."""
    signing = client.create_crypto_key(
        request={
            "parent": in_ring_of.rsplit("/cryptoKeys/", 1)[0],
            "crypto_key_id": "model-signing",
            "crypto_key": {
                "purpose": "ASYMMETRIC_SIGN",
                "version_template": {"algorithm": "EC_SIGN_P256_SHA256"},
            },
        }
    )
    assert iam.grant(client, signing.name, "roles/cloudkms.signer", [PRODUCER])
    assert iam.grant(client, signing.name, "roles/cloudkms.publicKeyViewer", [PRODUCER, CONSUMER])
    return f"{signing.name}/cryptoKeyVersions/1"


def test_pipeline_signs_as_producer_and_checks_signatures_as_consumer(
    ml_dag: Any,  # noqa: F811
    seed_key: str,  # noqa: F811
    identities: None,  # noqa: F811
    iam_emulator: Any,
    owner: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = iam_emulator.client(owner)
    version = signing_key(client, seed_key)
    monkeypatch.setenv("KMSFLOW_STAGING_DIR", str(tmp_path / "staging"))
    root = tmp_path / "artifacts"

    states, values = run(ml_dag, output_root=str(root), key_name=seed_key, signing_key=version)
    assert set(states.values()) == {"success"}, states
    assert values["score"]["matches_training_metrics"] is True
    for task_id in ("encrypt_dataset", "encrypt_files[0]", "encrypt_files[1]"):
        assert values[task_id]["signed_by"] == version
    (run_dir,) = root.iterdir()
    for name in ("dataset.enc", "model.pkl.enc", "metrics.json.enc"):
        statement = verify_signature(Envelope.open(str(run_dir / name)), version, client=client)
        assert statement.signer.algorithm == "EC_SIGN_P256_SHA256"


def test_producer_holding_only_a_public_key_file_encrypts_for_ml_kem_and_signs(
    ml_dag: Any,  # noqa: F811
    seed_key: str,  # noqa: F811
    identities: None,  # noqa: F811
    iam_emulator: Any,
    owner: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``recipient`` names an ML-KEM-768 key: the producer exports its public key file (viewer and
    publicKeyViewer only), wraps locally for it and signs; it cannot open what it wrote. The
    consumer (decapsulator) checks each signature and the key commitment, then scores."""
    client = iam_emulator.client(owner)
    version = signing_key(client, seed_key)
    inbox = client.create_crypto_key(
        request={
            "parent": seed_key.rsplit("/cryptoKeys/", 1)[0],
            "crypto_key_id": "ml-inbox",
            "crypto_key": {"purpose": "KEY_ENCAPSULATION", "version_template": {"algorithm": "ML_KEM_768"}},
        }
    ).name
    wait_enabled(client, f"{inbox}/cryptoKeyVersions/1")
    for role in ("roles/cloudkms.publicKeyViewer", "roles/cloudkms.viewer"):
        assert iam.grant(client, inbox, role, [PRODUCER])
    assert iam.grant(client, inbox, "roles/cloudkms.decapsulator", [CONSUMER])
    staging = tmp_path / "staging"
    monkeypatch.setenv("KMSFLOW_STAGING_DIR", str(staging))
    root = tmp_path / "artifacts"

    states, values = run(
        ml_dag, output_root=str(root), key_name=seed_key, signing_key=version, recipient=inbox
    )
    assert set(states.values()) == {"success"}, states
    assert values["score"]["matches_training_metrics"] is True
    assert values["check_least_privilege"]["producer_decrypt"] == "refused"
    assert values["recipient_public_key"].endswith("recipient.pub")
    inbox_version = f"{inbox}/cryptoKeyVersions/1"
    for task_id in ("encrypt_dataset", "encrypt_files[0]", "encrypt_files[1]"):
        assert values[task_id]["signed_by"] == version
        assert values[task_id]["key_version"] == inbox_version
    (run_dir,) = root.iterdir()
    for name in ("dataset.enc", "model.pkl.enc", "metrics.json.enc"):
        summary = inspect(str(run_dir / name))
        assert summary["wrap"] == "ml-kem-768" and summary["signature"]["signed_by"] == version
        verify_signature(Envelope.open(str(run_dir / name)), version, client=client)
    for path in (p for p in root.rglob("*") if p.is_file()):
        assert not any(marker in path.read_bytes() for marker in PLAINTEXT_MARKERS), path
    assert list(staging.iterdir()) == []  # the public key file went with the staging
