"""Signed recipient envelopes: a producer holding a recipient's public key file and a KMS signing
key (``encrypt --recipient PUB --sign-with SIGN_KEY``). The wrap stays local; KMS only signs. A
verifier with the signer's public key file checks it offline; the consumer (decrypt/decapsulate
role) checks the key commitment too; forged wraps and moved signatures are refused; a rewrap for
a new recipient version keeps the signature valid."""

from __future__ import annotations

import base64
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from google.cloud import kms_v1
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from terminal import run_on_terminal

from envelope.recipients import make_recipient_key, public_key, wait_enabled
from kmsflow.cli import exits
from kmsflow.envelope import Envelope, manifest, recipient
from kmsflow.envelope.encrypt import encrypt_for
from kmsflow.envelope.keyset import DataKey
from kmsflow.envelope.signature import SignatureError, verify_signature
from kmsflow.kms.public_key import clear_cache, fetch_public_key

from .conftest import counting_client, write_random
from .test_cli import KMSFLOW, failed, run, without_credentials
from .test_recipient import offline
from .test_signature import dataset, make_signing_key

PAIRS = [
    ("ML_KEM_768", "PQ_SIGN_ML_DSA_65"),
    ("RSA_DECRYPT_OAEP_3072_SHA256", "EC_SIGN_P256_SHA256"),
    ("KEM_XWING", "EC_SIGN_P384_SHA384"),
]


@pytest.fixture(scope="module")
def keys(emulator: Any) -> dict[str, str]:
    """One recipient key and one signing key per algorithm of :data:`PAIRS` (made once: RSA is slow)."""
    client = emulator.client()
    ring = f"ring-{uuid.uuid4().hex[:12]}"
    made = {r: make_recipient_key(client, r, ring) for r, _ in PAIRS}
    made.update({s: make_signing_key(client, ring, s) for _, s in PAIRS})
    return made


@pytest.mark.parametrize(("recipient_algorithm", "signer_algorithm"), PAIRS)
def test_signed_recipient_envelope_round_trip_and_rewrap(
    emulator: Any, keys: dict[str, str], recipient_algorithm: str, signer_algorithm: str, tmp_path: Path
) -> None:
    kms = emulator.client()
    inbox, signer = keys[recipient_algorithm], keys[signer_algorithm]
    signer_version = f"{signer}/cryptoKeyVersions/1"
    public = public_key(kms, inbox)
    signer_public = fetch_public_key(kms, signer_version)
    src = dataset(tmp_path)

    clear_cache()  # count the signing key's GetPublicKey too
    counted, calls = counting_client(emulator.endpoint)
    record = encrypt_for(public, str(src), str(tmp_path / "ds"), client=counted, sign_with=signer_version)
    # KMS signs (ML-DSA's public key takes a second GetPublicKey, in its own format); the wrap for
    # the recipient makes no call.
    assert set(calls.calls) == {"GetPublicKey", "AsymmetricSign"} and calls.calls["AsymmetricSign"] == 1
    assert record.key.crypto_key_version == public.version_name

    env = Envelope.open(str(tmp_path / "ds"))
    statement = verify_signature(env, signer_public)  # offline: the public key alone
    assert statement.signer.crypto_key_version == signer_version
    assert statement.signer.algorithm == signer_algorithm
    verify_signature(env, signer_public, key=env.unlock(kms))  # the consumer: the key commitment too
    env.decrypt(kms, str(tmp_path / "out"))
    assert (tmp_path / "out" / "weights.bin").read_bytes() == (src / "weights.bin").read_bytes()

    # A new recipient version, rewrap: the record changes, the signature (and commitment) still hold.
    from kmsflow.lifecycle import rewrap

    new = kms.create_crypto_key_version(request={"parent": inbox, "crypto_key_version": {}})
    wait_enabled(kms, new.name)
    signature_before = (tmp_path / "ds" / "_kmsflow" / "signature.json").read_bytes()
    report = rewrap(kms, [str(tmp_path / "ds")])
    assert report.rewrapped == 1, report.to_dict()
    env = Envelope.open(str(tmp_path / "ds"))
    assert env.record.key.crypto_key_version == new.name
    assert (tmp_path / "ds" / "_kmsflow" / "signature.json").read_bytes() == signature_before
    verify_signature(env, signer_public, key=env.unlock(kms))


def test_forged_wrap_and_moved_signature_are_refused(
    emulator: Any, keys: dict[str, str], tmp_path: Path
) -> None:
    """Anyone holding the recipient's public key can wrap a key of their own into a record; only
    the signed commitment tells the consumer it is not the signer's key."""
    kms = emulator.client()
    inbox, signer = keys["ML_KEM_768"], keys["PQ_SIGN_ML_DSA_65"]
    public = public_key(kms, inbox)
    signer_public = fetch_public_key(kms, f"{signer}/cryptoKeyVersions/1")
    write_random(tmp_path / "a.bin", 4000)
    write_random(tmp_path / "b.bin", 4000, seed=1)
    encrypt_for(public, str(tmp_path / "a.bin"), str(tmp_path / "a.enc"), client=kms, sign_with=signer)
    encrypt_for(public, str(tmp_path / "b.bin"), str(tmp_path / "b.enc"), client=kms, sign_with=signer)

    # The wrapped key replaced by a forger's own key, wrapped for the same recipient version.
    forged_dir = tmp_path / "forged"
    forged_dir.mkdir()
    for name in ("a.enc", "a.enc.kmsflow.json", "a.enc.kmsflow.sig.json"):
        shutil.copy(tmp_path / name, forged_dir / name)
    env = Envelope.open(str(forged_dir / "a.enc"))
    other = DataKey.generate()
    forged = manifest.reseal(other, env.record, recipient.wrap_key(public, other, env.record.envelope_id))
    (forged_dir / "a.enc.kmsflow.json").write_bytes(forged.to_json())
    forged_env = Envelope.open(str(forged_dir / "a.enc"))
    verify_signature(forged_env, signer_public)  # offline the record alone still looks signed
    with pytest.raises(SignatureError, match="data key is not the one that was signed"):
        verify_signature(forged_env, signer_public, key=forged_env.unlock(kms))

    # b's signature put beside a: another envelope's statement.
    shutil.copy(tmp_path / "b.enc.kmsflow.sig.json", tmp_path / "a.enc.kmsflow.sig.json")
    with pytest.raises(SignatureError, match="signature not for this envelope"):
        verify_signature(Envelope.open(str(tmp_path / "a.enc")), signer_public)


def test_encrypt_recipient_sign_with_commands(emulator: Any, keys: dict[str, str], tmp_path: Path) -> None:
    """The CLI: a public key file to wrap for and a signing key in KMS; verify offline, decrypt
    with ``--signer``; a changed ciphertext is refused; without KMS the signing step fails and
    leaves nothing behind."""
    endpoint = emulator.endpoint
    kms: kms_v1.KeyManagementServiceClient = emulator.client()
    inbox, signer = keys["RSA_DECRYPT_OAEP_3072_SHA256"], keys["EC_SIGN_P256_SHA256"]
    (tmp_path / "inbox.pub").write_bytes(public_key(kms, inbox).to_file_bytes())
    signer_pub = tmp_path / "signer.pub"
    signer_pub.write_bytes(fetch_public_key(kms, f"{signer}/cryptoKeyVersions/1").to_file_bytes())
    write_random(tmp_path / "model.bin", 70_000)
    enc = str(tmp_path / "model.enc")

    done = run(
        endpoint, "encrypt", "--recipient", str(tmp_path / "inbox.pub"), "--sign-with", signer,
        str(tmp_path / "model.bin"), enc,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    ok = offline(tmp_path, "verify", "--signer", str(signer_pub), enc)
    assert (ok.returncode, ok.stderr) == (0, "")
    out = tmp_path / "out.bin"
    assert run(endpoint, "decrypt", "--signer", str(signer_pub), enc, str(out)).returncode == 0
    assert out.read_bytes() == (tmp_path / "model.bin").read_bytes()
    record = json.loads((tmp_path / "model.enc.kmsflow.json").read_text())
    assert record["key"]["wrap"] == "rsa-oaep-sha256"

    data = bytearray((tmp_path / "model.enc").read_bytes())
    data[500] ^= 1
    (tmp_path / "model.enc").write_bytes(bytes(data))
    line = failed(offline(tmp_path, "verify", "--signer", str(signer_pub), enc), exits.EXIT_TAMPERED)
    assert "differs from what was signed" in line

    # The signing key lives in KMS: with no KMS at all, nothing is written.
    no_kms = offline(
        tmp_path, "encrypt", "--recipient", str(tmp_path / "inbox.pub"), "--sign-with", signer,
        str(tmp_path / "model.bin"), str(tmp_path / "unsigned.enc"),
    )  # fmt: skip
    assert no_kms.returncode == exits.EXIT_KMS_CREDENTIALS, no_kms.stderr
    assert not list(tmp_path.glob("unsigned.enc*"))


def test_inspect_names_the_claimed_signer_without_verifying(
    emulator: Any, keys: dict[str, str], tmp_path: Path
) -> None:
    """``inspect`` (no KMS, no credentials) says whether an envelope is signed and by which
    version, and that it did not check it: a signature record whose signature bytes are junk is
    still shown as a claim; ``verify --signer`` is what refuses it."""
    kms = emulator.client()
    inbox, signer = keys["ML_KEM_768"], keys["PQ_SIGN_ML_DSA_65"]
    signer_version = f"{signer}/cryptoKeyVersions/1"
    public = public_key(kms, inbox)
    write_random(tmp_path / "m.bin", 3000)
    encrypt_for(public, str(tmp_path / "m.bin"), str(tmp_path / "signed.enc"), client=kms, sign_with=signer)
    encrypt_for(public, str(tmp_path / "m.bin"), str(tmp_path / "plain.enc"))

    def inspect(name: str) -> dict[str, Any]:
        shown = offline(tmp_path, "inspect", "--no-files", str(tmp_path / name))
        assert (shown.returncode, shown.stderr) == (0, ""), shown.stderr
        return dict(json.loads(shown.stdout))

    signed = inspect("signed.enc")
    assert signed["wrap"] == "ml-kem-768" and signed["crypto_key_version"] == public.version_name
    assert signed["signature"] == {
        "signed_by": signer_version,
        "algorithm": "PQ_SIGN_ML_DSA_65",
        "verified": False,
        "note": f"signed by {signer_version} (not verified; use kmsflow verify --signer)",
    }
    assert inspect("plain.enc")["signature"] is None

    # On a terminal, the same in one line of text after the JSON.
    code, text = run_on_terminal(
        [KMSFLOW, "inspect", "--no-files", str(tmp_path / "signed.enc")],
        without_credentials(tmp_path / "home"),
    )
    assert code == 0, text
    assert (
        f"file envelope under {public.version_name} (ml-kem-768, for a recipient); signed by "
        f"{signer_version} (not verified; use kmsflow verify --signer)"
    ) in text.replace("\n", "")

    # Junk signature bytes: still only a claim to inspect; verify --signer refuses it.
    sig = tmp_path / "signed.enc.kmsflow.sig.json"
    body = json.loads(sig.read_text())
    body["signature"] = base64.b64encode(b"\0" * 64).decode()
    sig.write_text(json.dumps(body))
    assert inspect("signed.enc")["signature"]["signed_by"] == signer_version
    signer_pub = tmp_path / "signer.pub"
    signer_pub.write_bytes(fetch_public_key(kms, signer_version).to_file_bytes())
    failed(
        offline(tmp_path, "verify", "--signer", str(signer_pub), str(tmp_path / "signed.enc")),
        exits.EXIT_TAMPERED,
    )

    # Not a signature record at all: described, the envelope still inspected.
    sig.write_text("not json")
    described = inspect("signed.enc")["signature"]
    assert described["signed_by"] is None and described["verified"] is False
    assert described["note"].startswith("signature record invalid: ") and "not JSON" in described["note"]


@pytest.fixture(scope="module")
def signed_envelope(emulator: Any, keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    kms = emulator.client()
    where = tmp_path_factory.mktemp("signed")
    write_random(where / "m.bin", 100)
    encrypt_for(
        public_key(kms, keys["ML_KEM_768"]),
        str(where / "m.bin"),
        str(where / "m.enc"),
        client=kms,
        sign_with=keys["EC_SIGN_P256_SHA256"],
    )
    return where / "m.enc"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_inspect_describes_any_corrupted_signature_record(signed_envelope: Path, at: float, bit: int) -> None:
    """One bit flipped anywhere in the signature record: inspect still shows the envelope, never
    calls anything verified, and either names a claimed signer or says the record is invalid."""
    sig = signed_envelope.with_name(signed_envelope.name + ".kmsflow.sig.json")
    original = sig.read_bytes()
    data = bytearray(original)
    data[int(at * len(data))] ^= 1 << bit
    sig.write_bytes(bytes(data))
    try:
        shown = Envelope.open(str(signed_envelope)).inspect()["signature"]
    finally:
        sig.write_bytes(original)
    assert shown is not None and shown["verified"] is False
    if shown["signed_by"] is None:
        assert shown["note"].startswith("signature record invalid: ")
    else:
        assert shown["note"] == f"signed by {shown['signed_by']} (not verified; use kmsflow verify --signer)"
