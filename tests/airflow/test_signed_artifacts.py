"""``EncryptArtifactOperator(sign_with=...)`` and ``DecryptArtifactOperator(signer=...)`` against
the IAM-enforcing emulator: the producer holds encrypter + signer (+ publicKeyViewer) roles, the
consumer decrypter and, to name the signer by key, publicKeyViewer; every refusal is the
emulator's IAM or a signature check, never a kmsflow shortcut."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from test_artifact_operators import CONSUMER, PLAINTEXT, PRODUCER, assert_secret_free, context

from kmsflow.airflow.hooks import KmsHook
from kmsflow.airflow.operators import DecryptArtifactOperator, EncryptArtifactOperator
from kmsflow.kms import iam
from kmsflow.kms.public_key import fetch_public_key

SIGNER_ROLES = ("roles/cloudkms.signer", "roles/cloudkms.publicKeyViewer")


@pytest.fixture
def signing_key(hook: KmsHook, ring: str) -> str:
    made, _ = hook.ensure_crypto_key(
        ring,
        "signing",
        purpose="ASYMMETRIC_SIGN",
        algorithm="EC_SIGN_P256_SHA256",
        protection_level="SOFTWARE",
    )
    return str(made.name)


@pytest.fixture
def conns(
    iam_emulator: Any, owner: str, key: str, signing_key: str, set_conn: Callable[..., str]
) -> dict[str, str]:
    client = iam_emulator.client(owner)
    assert iam.grant(client, key, "roles/cloudkms.cryptoKeyEncrypter", [PRODUCER])
    assert iam.grant(client, key, "roles/cloudkms.cryptoKeyDecrypter", [CONSUMER])
    for role in SIGNER_ROLES:
        assert iam.grant(client, signing_key, role, [PRODUCER])
    assert iam.grant(client, signing_key, "roles/cloudkms.publicKeyViewer", [CONSUMER])
    return {
        "producer": set_conn("kmsflow_producer", endpoint=iam_emulator.endpoint, principal=PRODUCER),
        "consumer": set_conn("kmsflow_consumer", endpoint=iam_emulator.endpoint, principal=CONSUMER),
    }


def test_producer_signs_consumer_checks_the_signer(
    iam_emulator: Any, owner: str, conns: dict[str, str], key: str, signing_key: str, tmp_path: Path
) -> None:
    version = f"{signing_key}/cryptoKeyVersions/1"
    (tmp_path / "model.bin").write_bytes(PLAINTEXT)
    dst = tmp_path / "model.bin.enc"
    enc = EncryptArtifactOperator(
        task_id="enc",
        key_name=key,
        sign_with="{{ params.signer }}",
        src=str(tmp_path / "model.bin"),
        dst=str(dst),
        kmsflow_conn_id=conns["producer"],
    )
    assert "sign_with" in enc.template_fields
    enc.sign_with = version  # what the template renders to (a key name would also need viewer)
    out = enc.execute(context=context())
    assert out["signed_by"] == version
    assert_secret_free(out, dst)

    # The consumer names the signer by key (publicKeyViewer), or by a public key file (nothing).
    for signer in (signing_key, "file"):
        if signer == "file":
            public = fetch_public_key(iam_emulator.client(owner), version)
            (tmp_path / "signer.pub").write_bytes(public.to_file_bytes())
            signer = str(tmp_path / "signer.pub")
        target = tmp_path / f"restored-{len(list(tmp_path.iterdir()))}.bin"
        dec = DecryptArtifactOperator(
            task_id="dec", src=str(dst), dst=str(target), signer=signer, kmsflow_conn_id=conns["consumer"]
        )
        assert "signer" in dec.template_fields
        back = dec.execute(context=context())
        assert target.read_bytes() == PLAINTEXT
        assert back["signed_by"] == version
        assert_secret_free(back, dst)


def test_unsigned_or_foreign_signatures_fail_the_consumer(
    conns: dict[str, str], key: str, signing_key: str, tmp_path: Path
) -> None:
    (tmp_path / "a.bin").write_bytes(PLAINTEXT)
    (tmp_path / "b.bin").write_bytes(PLAINTEXT)
    for name, sign_with in (("a", f"{signing_key}/cryptoKeyVersions/1"), ("b", None)):
        EncryptArtifactOperator(
            task_id=name,
            key_name=key,
            sign_with=sign_with,
            src=str(tmp_path / f"{name}.bin"),
            dst=str(tmp_path / f"{name}.enc"),
            kmsflow_conn_id=conns["producer"],
        ).execute(context=context())

    def consume(name: str) -> None:
        DecryptArtifactOperator(
            task_id="d",
            src=str(tmp_path / f"{name}.enc"),
            dst=str(tmp_path / f"{name}.out"),
            signer=signing_key,
            kmsflow_conn_id=conns["consumer"],
        ).execute(context=context())

    with pytest.raises(AirflowFailException, match="not signed"):
        consume("b")
    shutil.copy(tmp_path / "a.enc.kmsflow.sig.json", tmp_path / "b.enc.kmsflow.sig.json")
    with pytest.raises(AirflowFailException, match="signature not for this envelope"):
        consume("b")
    assert not (tmp_path / "b.out").exists()
    json.loads((tmp_path / "a.enc.kmsflow.sig.json").read_text())  # untouched, still a record


def test_producer_without_the_signer_role_publishes_nothing(
    iam_emulator: Any, owner: str, conns: dict[str, str], key: str, signing_key: str, tmp_path: Path
) -> None:
    iam.revoke(iam_emulator.client(owner), signing_key, "roles/cloudkms.signer", [PRODUCER])
    (tmp_path / "model.bin").write_bytes(PLAINTEXT)
    enc = EncryptArtifactOperator(
        task_id="enc",
        key_name=key,
        sign_with=f"{signing_key}/cryptoKeyVersions/1",
        src=str(tmp_path / "model.bin"),
        dst=str(tmp_path / "model.enc"),
        kmsflow_conn_id=conns["producer"],
    )
    with pytest.raises(AirflowFailException, match=r"permission denied \(encrypt\).*roles/cloudkms.signer"):
        enc.execute(context=context())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]
