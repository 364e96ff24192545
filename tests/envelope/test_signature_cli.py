"""``kmsflow sign``, ``encrypt --sign-with``, ``verify --signer`` and ``decrypt --signer`` as a
pipeline runs them: exit codes from the table, one line on failure, and a verifier holding only a
public key file needs no KMS endpoint or credentials at all."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from google.cloud import kms_v1

from kmsflow.cli import exits
from kmsflow.kms.public_key import fetch_public_key

from .conftest import write_random
from .test_cli import KMSFLOW, failed, run
from .test_signature import dataset, make_signing_key


def offline(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``kmsflow`` with no KMS endpoint and credentials that cannot exist: any KMS call fails."""
    env = {k: v for k, v in os.environ.items() if k not in ("KMS_EMULATOR_HOST", "KMSFLOW_PRINCIPAL")}
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(tmp_path / "no-such-credentials.json")
    return subprocess.run([KMSFLOW, *args], capture_output=True, text=True, env=env, timeout=60)


def test_sign_and_verify_commands(
    emulator: object, kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    endpoint = emulator.endpoint  # type: ignore[attr-defined]
    signer = make_signing_key(kms, ring_id, "RSA_SIGN_PSS_3072_SHA256")
    pub = tmp_path / "signer.pub"
    pub.write_bytes(fetch_public_key(kms, f"{signer}/cryptoKeyVersions/1").to_file_bytes())
    src = dataset(tmp_path)
    ds, model = str(tmp_path / "ds.enc"), str(tmp_path / "model.enc")

    done = run(endpoint, "encrypt", "--key", key, "--sign-with", signer, str(src), ds)
    assert done.returncode == 0, done.stderr
    ok = offline("verify", "--signer", str(pub), ds, tmp_path=tmp_path)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")  # summaries go to terminals only
    # Without --signer, verify needs KMS: the same environment fails on credentials.
    assert offline("verify", ds, tmp_path=tmp_path).returncode == exits.EXIT_KMS_CREDENTIALS

    write_random(tmp_path / "model.bin", 5000)
    assert run(endpoint, "encrypt", "--key", key, str(tmp_path / "model.bin"), model).returncode == 0
    assert "not signed" in failed(run(endpoint, "verify", "--signer", signer, model), exits.EXIT_NOT_FOUND)
    assert run(endpoint, "sign", "--key", signer, model).returncode == 0
    assert run(endpoint, "verify", "--signer", signer, model).returncode == 0
    assert "--replace" in failed(run(endpoint, "sign", "--key", signer, model), exits.EXIT_EXISTS)
    assert run(endpoint, "sign", "--replace", "--key", signer, model).returncode == 0

    # decrypt --signer checks the signature (and the key commitment) before writing anything.
    out = tmp_path / "out"
    assert run(endpoint, "decrypt", "--signer", str(pub), ds, str(out)).returncode == 0
    assert (out / "weights.bin").read_bytes() == (src / "weights.bin").read_bytes()

    # A byte of a signed ciphertext changed: refused, nothing decrypted.
    data = bytearray((tmp_path / "ds.enc" / "shards" / "a.bin").read_bytes())
    data[100] ^= 1
    (tmp_path / "ds.enc" / "shards" / "a.bin").write_bytes(bytes(data))
    line = failed(offline("verify", "--signer", str(pub), ds, tmp_path=tmp_path), exits.EXIT_TAMPERED)
    assert "differs from what was signed" in line
    failed(run(endpoint, "decrypt", "--signer", str(pub), ds, str(tmp_path / "out2")), exits.EXIT_TAMPERED)
    assert not (tmp_path / "out2").exists()


def test_signer_errors(
    emulator: object, kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    endpoint = emulator.endpoint  # type: ignore[attr-defined]
    signer = make_signing_key(kms, ring_id, "EC_SIGN_P256_SHA256")
    write_random(tmp_path / "m.bin", 100)
    m = str(tmp_path / "m.enc")
    assert (
        run(endpoint, "encrypt", "--key", key, "--sign-with", signer, str(tmp_path / "m.bin"), m).returncode
        == 0
    )

    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    assert "not a kmsflow public key file" in failed(
        offline("verify", "--signer", str(bad), m, tmp_path=tmp_path), exits.EXIT_RECORD_INVALID
    )
    failed(
        offline("verify", "--signer", str(tmp_path / "missing.pub"), m, tmp_path=tmp_path),
        exits.EXIT_RECORD_INVALID,
    )
    # A symmetric key has no public key: KMS refuses it (FAILED_PRECONDITION), before any byte is written.
    symmetric = run(
        endpoint, "encrypt", "--key", key, "--sign-with", key, str(tmp_path / "m.bin"), str(tmp_path / "x")
    )
    assert "purpose is ENCRYPT_DECRYPT" in failed(symmetric, exits.EXIT_KMS_KEY_UNAVAILABLE)
    pkcs1 = make_signing_key(kms, ring_id, "RSA_SIGN_PKCS1_2048_SHA256")
    line = failed(run(endpoint, "sign", "--replace", "--key", pkcs1, m), exits.EXIT_USAGE)
    assert "not an algorithm kmsflow signs with" in line
    assert not (tmp_path / "x").exists()
