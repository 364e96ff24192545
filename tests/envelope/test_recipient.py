"""Recipient (public-key) envelopes per algorithm (RSA-OAEP, ML-KEM, X-Wing), through the real
client against the emulator: ``pubkey export``, ``encrypt --recipient`` with a public key file and
no KMS at all, round trips of files and datasets, one KMS call to open, IAM, tamper, and a
Hypothesis property."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from google.cloud import kms_v1
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmsflow import envelope
from kmsflow.envelope.encrypt import encrypt_for
from kmsflow.envelope.errors import TamperedError
from kmsflow.kms.asymmetric import add_version
from kmsflow.kms.errors import KeyVersionUnavailableError, KmsPermissionError
from kmsflow.kms.public_key import PublicKey
from kmsflow.kms.resources import list_versions

from .conftest import counting_client, listing, write_random
from .recipients import ALGORITHMS, make_recipient_key, public_key, wait_enabled
from .test_cli import KMSFLOW, OWNER, failed, run, without_credentials

UNWRAP_RPC = {"RSA": "AsymmetricDecrypt", "ML": "Decapsulate", "KEM": "Decapsulate"}
CONSUMER_ROLE = {
    "RSA": "roles/cloudkms.cryptoKeyDecrypter",
    "ML": "roles/cloudkms.decapsulator",
    "KEM": "roles/cloudkms.decapsulator",
}


@pytest.fixture(scope="module")
def recipient_keys(emulator: Any) -> dict[str, str]:
    """One recipient key per algorithm on the shared emulator (RSA generation is slow: made once)."""
    client = emulator.client()
    ring = f"ring-{uuid.uuid4().hex[:12]}"
    return {algorithm: make_recipient_key(client, algorithm, ring) for algorithm in ALGORITHMS}


def flip(value: str, at: int) -> str:
    """``value`` (base64) with one bit of byte ``at`` flipped."""
    raw = bytearray(base64.b64decode(value))
    raw[at] ^= 0x80
    return base64.b64encode(bytes(raw)).decode()


def offline(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``kmsflow`` with no emulator, no credentials and no reachable metadata server."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [KMSFLOW, *args], capture_output=True, text=True, env=without_credentials(home), timeout=120
    )


def export(endpoint: str, key: str, out: Path, cache: Path) -> None:
    import os

    env = {**os.environ, "KMS_EMULATOR_HOST": endpoint, "KMSFLOW_CACHE_DIR": str(cache)}
    env.pop("KMSFLOW_PRINCIPAL", None)
    done = subprocess.run([KMSFLOW, "pubkey", "export", key], capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    out.write_bytes(done.stdout)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("kind", ["file", "dataset"])
def test_producer_with_only_a_public_key_file_and_no_kms(
    emulator: Any, recipient_keys: dict[str, str], algorithm: str, kind: str, tmp_path: Path
) -> None:
    key = recipient_keys[algorithm]
    export(emulator.endpoint, key, tmp_path / "key.pub", tmp_path / "cache")
    pub = json.loads((tmp_path / "key.pub").read_text())
    assert pub["crypto_key_version"] == f"{key}/cryptoKeyVersions/1" and pub["algorithm"] == algorithm

    if kind == "file":
        data = {"": write_random(tmp_path / "plain" / "model.bin", 3_000_000)}
        src = tmp_path / "plain" / "model.bin"
    else:
        data = {
            "a/shard-0": write_random(tmp_path / "plain" / "a" / "shard-0", 1_100_000),
            "b": write_random(tmp_path / "plain" / "b", 0, seed=1),
        }
        src = tmp_path / "plain"
    made = offline(
        tmp_path, "encrypt", "--recipient", str(tmp_path / "key.pub"), str(src), str(tmp_path / "enc")
    )
    assert (made.returncode, made.stderr) == (0, "")

    summary = json.loads(run(emulator.endpoint, "inspect", str(tmp_path / "enc")).stdout)
    assert summary["crypto_key_version"] == pub["crypto_key_version"]
    assert summary["wrap"] in ("rsa-oaep-sha256", "ml-kem-768", "ml-kem-1024", "x-wing")

    client, calls = counting_client(emulator.endpoint)
    envelope.decrypt(client, str(tmp_path / "enc"), str(tmp_path / "out"))
    assert calls.calls == {UNWRAP_RPC[algorithm.split("_")[0]]: 1}  # one KMS call, however many files
    for rel, content in data.items():
        assert (tmp_path / "out" / rel if rel else tmp_path / "out").read_bytes() == content
    assert run(emulator.endpoint, "verify", str(tmp_path / "enc")).returncode == 0


def test_recipient_by_key_name_fetches_once_then_uses_the_cache(
    emulator: Any, recipient_keys: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kmsflow.kms import public_key
    from kmsflow.kms.public_key_cache import PublicKeyCache

    key = recipient_keys["ML_KEM_768"]
    client, calls = counting_client(emulator.endpoint)
    cache = PublicKeyCache.for_client(client, tmp_path / "cache")
    first = public_key.load(key, client, cache=cache)
    assert calls.calls == {"ListCryptoKeyVersions": 1, "GetPublicKey": 1}
    entry = cache.path_for(first.version_name)
    assert entry.stat().st_mode & 0o777 == 0o600
    assert public_key.load(key, client, cache=cache) == first
    assert calls.calls == {"ListCryptoKeyVersions": 2, "GetPublicKey": 1}

    # and through the CLI: one key name, then decrypt as usual
    write_random(tmp_path / "in", 10)
    monkeypatch.setenv("KMSFLOW_CACHE_DIR", str(tmp_path / "cli-cache"))
    made = run(emulator.endpoint, "encrypt", "--recipient", key, str(tmp_path / "in"), str(tmp_path / "enc"))
    assert made.returncode == 0, made.stderr
    assert run(emulator.endpoint, "decrypt", str(tmp_path / "enc"), str(tmp_path / "out")).returncode == 0
    assert (tmp_path / "out").read_bytes() == (tmp_path / "in").read_bytes()


def test_a_tampered_cache_entry_is_refused_not_trusted(
    emulator: Any, recipient_keys: dict[str, str], tmp_path: Path
) -> None:
    from kmsflow.kms import public_key
    from kmsflow.kms.public_key import PublicKeyError
    from kmsflow.kms.public_key_cache import PublicKeyCache

    key = recipient_keys["ML_KEM_768"]
    version = f"{key}/cryptoKeyVersions/1"
    client = emulator.client()
    cache = PublicKeyCache.for_client(client, tmp_path / "cache")
    public_key.load(version, client, cache=cache)
    entry = cache.path_for(version)
    original = entry.read_bytes()

    doc = json.loads(original)
    raw = bytearray(base64.b64decode(doc["public_key"]))
    raw[5] ^= 1
    doc["public_key"] = base64.b64encode(bytes(raw)).decode()
    entry.write_text(json.dumps(doc))
    with pytest.raises(PublicKeyError, match="CRC32C"):
        public_key.load(version, client, cache=cache)

    entry.write_bytes(original)
    entry.chmod(0o644)
    with pytest.raises(PublicKeyError, match="not private"):
        public_key.load(version, client, cache=cache)

    other = public_key.fetch_public_key(client, f"{recipient_keys['ML_KEM_1024']}/cryptoKeyVersions/1")
    entry.write_bytes(other.to_file_bytes())
    entry.chmod(0o600)
    with pytest.raises(PublicKeyError, match="names"):
        public_key.load(version, client, cache=cache)


def test_a_tampered_public_key_file_is_refused(
    emulator: Any, recipient_keys: dict[str, str], tmp_path: Path
) -> None:
    export(emulator.endpoint, recipient_keys["ML_KEM_768"], tmp_path / "key.pub", tmp_path / "cache")
    write_random(tmp_path / "in", 10)
    doc = json.loads((tmp_path / "key.pub").read_text())
    cases = {
        "flipped": {
            **doc,
            "public_key": flip(doc["public_key"], 1),
        },
        "algorithm": {**doc, "algorithm": "ML_KEM_1024"},
        "version": {**doc, "crypto_key_version": doc["crypto_key_version"][:-1] + "2"},
        "extra": {**doc, "note": "x"},
        "newer": {**doc, "version": 2},
    }
    for name, bad in cases.items():
        path = tmp_path / f"{name}.pub"
        path.write_text(json.dumps(bad))
        result = offline(
            tmp_path, "encrypt", "--recipient", str(path), str(tmp_path / "in"), str(tmp_path / name)
        )
        line = failed(result, 6)
        assert str(path) in line
        assert not (tmp_path / name).exists() and not (tmp_path / f"{name}.kmsflow.json").exists()

    # A CRC32C is no signature: a forged file, consistent in itself, is used - and what it wrote
    # for a version that does not exist nobody can open (keep public key files owner-writable only).
    real = PublicKey.from_file_bytes((tmp_path / "key.pub").read_bytes(), "key.pub")
    forged = replace(real, version_name=real.version_name[:-1] + "7")
    (tmp_path / "forged.pub").write_bytes(forged.to_file_bytes())
    made = offline(
        tmp_path,
        "encrypt",
        "--recipient",
        str(tmp_path / "forged.pub"),
        str(tmp_path / "in"),
        str(tmp_path / "f"),
    )
    assert made.returncode == 0, made.stderr
    line = failed(run(emulator.endpoint, "decrypt", str(tmp_path / "f"), str(tmp_path / "o")), 12)
    assert forged.version_name in line and not (tmp_path / "o").exists()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_tampered_recipient_records_are_refused(
    emulator: Any, recipient_keys: dict[str, str], algorithm: str, tmp_path: Path
) -> None:
    client = emulator.client()
    recipient = public_key(client, recipient_keys[algorithm])
    second = f"{recipient_keys[algorithm]}/cryptoKeyVersions/2"  # the version a tampered record names
    if not list_versions(client, recipient_keys[algorithm], states=["ENABLED"])[1:]:
        add_version(client, recipient_keys[algorithm])
        wait_enabled(client, second)
    write_random(tmp_path / "in", 100)
    encrypt_for(recipient, str(tmp_path / "in"), str(tmp_path / "enc"))
    sidecar = tmp_path / "enc.kmsflow.json"
    original = json.loads(sidecar.read_text())

    other_kind = {
        "rsa-oaep-sha256": "rsa-oaep-sha512",
        "ml-kem-768": "ml-kem-1024",
        "ml-kem-1024": "ml-kem-768",
        "x-wing": "ml-kem-768",
    }
    key = original["key"]
    edits = {
        "wrapped keyset": {**key, "wrapped_keyset": flip(key["wrapped_keyset"], 20)},
        "nonce": {**key, "wrapped_keyset": flip(key["wrapped_keyset"], 0)},
        "encapsulated key": {**key, "encapsulated_key": flip(key["encapsulated_key"], 7)},
        "kind": {**key, "wrap": other_kind[key["wrap"]]},
        "version": {**key, "crypto_key_version": second},
    }
    for name, edited in edits.items():
        sidecar.write_text(json.dumps({**original, "key": edited}))
        with pytest.raises(TamperedError):
            envelope.decrypt(client, str(tmp_path / "enc"), str(tmp_path / "out"))
        assert not (tmp_path / "out").exists(), name
    # Passed off as a symmetric record: KMS refuses Decrypt on a recipient key (wrong purpose).
    symmetric = {k: v for k, v in key.items() if k not in ("wrap", "encapsulated_key")}
    sidecar.write_text(json.dumps({**original, "key": symmetric}))
    with pytest.raises(KeyVersionUnavailableError, match="purpose is"):
        envelope.decrypt(client, str(tmp_path / "enc"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    sidecar.write_text(json.dumps({**original, "envelope_id": "0" * 32}))
    with pytest.raises(TamperedError):
        envelope.verify(client, str(tmp_path / "enc"))
    sidecar.write_text(json.dumps(original))
    envelope.verify(client, str(tmp_path / "enc"))


def test_consumer_without_the_role_is_refused(iam_emulator: Any, tmp_path: Path) -> None:
    owner = iam_emulator.client(OWNER)
    for algorithm in ("ML_KEM_768", "KEM_XWING", "RSA_DECRYPT_OAEP_3072_SHA256"):
        key = make_recipient_key(owner, algorithm)
        family = algorithm.split("_")[0]
        producer = f"serviceAccount:p-{uuid.uuid4().hex[:6]}@proj.iam.gserviceaccount.com"
        consumer = f"serviceAccount:c-{uuid.uuid4().hex[:6]}@proj.iam.gserviceaccount.com"
        policy = owner.get_iam_policy(request={"resource": key})
        # by key name a producer lists the versions (viewer) to find the current one, then reads its
        # public key (publicKeyViewer); a producer with a version name or a file needs less or nothing
        policy.bindings.add(role="roles/cloudkms.publicKeyViewer", members=[producer])
        policy.bindings.add(role="roles/cloudkms.viewer", members=[producer])
        policy.bindings.add(role=CONSUMER_ROLE[family], members=[consumer])
        owner.set_iam_policy(request={"resource": key, "policy": policy})

        out = tmp_path / algorithm
        out.mkdir()
        write_random(out / "in", 1000)
        ep = iam_emulator.endpoint
        made = run(ep, "encrypt", "--recipient", key, str(out / "in"), str(out / "enc"), principal=producer)
        assert made.returncode == 0, made.stderr
        line = failed(run(ep, "decrypt", str(out / "enc"), str(out / "out"), principal=producer), 10)
        assert key in line and not (out / "out").exists()
        assert run(ep, "decrypt", str(out / "enc"), str(out / "out"), principal=consumer).returncode == 0
        assert (out / "out").read_bytes() == (out / "in").read_bytes()
        # the consumer cannot encrypt for the key by name: it lacks viewPublicKey
        failed(
            run(ep, "encrypt", "--recipient", key, str(out / "in"), str(out / "e2"), principal=consumer), 10
        )
        with pytest.raises(KmsPermissionError):
            envelope.verify(iam_emulator.client(producer), str(out / "enc"))


def test_a_symmetric_key_is_not_a_recipient(
    emulator: Any, key: str, recipient_keys: dict[str, str], tmp_path: Path
) -> None:
    write_random(tmp_path / "in", 10)
    line = failed(run(emulator.endpoint, "pubkey", "export", key), 6)
    assert key in line and "neither wraps for nor signs with GOOGLE_SYMMETRIC_ENCRYPTION" in line
    assert not list((tmp_path).glob("*.kmsflow.json"))
    line = failed(run(emulator.endpoint, "pubkey", "export", "not-a-key"), 6)
    assert "resource name" in line


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    tree=st.dictionaries(
        st.lists(st.sampled_from(["a", "b", "é", "c d", "x.bin"]), min_size=1, max_size=3).map("/".join),
        st.binary(max_size=3000),
        min_size=1,
        max_size=5,
    ).filter(lambda t: not any(p != q and q.startswith(p + "/") for p in t for q in t)),
)
def test_only_the_matching_version_opens_what_encrypt_recipient_writes(
    emulator: Any,
    recipient_keys: dict[str, str],
    other_keys: dict[str, str],
    algorithm: str,
    tree: dict[str, bytes],
    tmp_path_factory: Any,
) -> None:
    client = emulator.client()
    base = tmp_path_factory.mktemp("prop")
    for rel, content in tree.items():
        (base / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / "src" / rel).write_bytes(content)
    record = encrypt_for(public_key(client, recipient_keys[algorithm]), str(base / "src"), str(base / "enc"))
    envelope.decrypt(client, str(base / "enc"), str(base / "out"))
    assert {rel: (base / "out" / rel).read_bytes() for rel in tree} == tree
    assert listing(base / "out") == listing(base / "src")

    # The same record pointed at another key of the same algorithm: that key's holder opens nothing.
    stranger = f"{other_keys[algorithm]}/cryptoKeyVersions/1"
    doc = json.loads(record.to_json())
    doc["key"] = {**doc["key"], "crypto_key": other_keys[algorithm], "crypto_key_version": stranger}
    (base / "enc" / "_kmsflow" / "envelope.json").write_text(json.dumps(doc))
    with pytest.raises(TamperedError):
        envelope.decrypt(client, str(base / "enc"), str(base / "out2"))
    assert not (base / "out2").exists()


@pytest.fixture(scope="module")
def other_keys(emulator: Any) -> dict[str, str]:
    client: kms_v1.KeyManagementServiceClient = emulator.client()
    ring = f"ring-{uuid.uuid4().hex[:12]}"
    return {algorithm: make_recipient_key(client, algorithm, ring) for algorithm in ALGORITHMS}
