"""kmsflow_ml_pipeline with ``signing_key``: the producer signs every envelope, the consumer requires
each signature (``decrypt --signer`` semantics) before decrypting; IAM enforced by the emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_ml_pipeline_dag import CONSUMER, PRODUCER, identities, ml_dag, run, seed_key  # noqa: F401 (fixtures)

from kmsflow.envelope import Envelope, verify_signature
from kmsflow.kms import iam


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
    signing = client.create_crypto_key(
        request={
            "parent": seed_key.rsplit("/cryptoKeys/", 1)[0],
            "crypto_key_id": "model-signing",
            "crypto_key": {
                "purpose": "ASYMMETRIC_SIGN",
                "version_template": {"algorithm": "EC_SIGN_P256_SHA256"},
            },
        }
    )
    assert iam.grant(client, signing.name, "roles/cloudkms.signer", [PRODUCER])
    assert iam.grant(client, signing.name, "roles/cloudkms.publicKeyViewer", [PRODUCER, CONSUMER])
    version = f"{signing.name}/cryptoKeyVersions/1"
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
