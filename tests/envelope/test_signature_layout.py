"""Where signature records live, and what everything that walks envelopes makes of them: inventory
and the shred proof count a signed envelope once and never read its signature (a hostile or missing
one changes nothing), ``verify`` and ``decrypt`` accept it inside a dataset, and gs:// works alike."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest
from google.cloud import kms_v1

from kmsflow.envelope import Envelope, decrypt, encrypt, verify
from kmsflow.envelope.signature import sign_envelope, verify_signature
from kmsflow.inventory import scan
from kmsflow.inventory.model import FindingKind

from .conftest import write_random
from .test_signature import dataset, make_signing_key


def signed_tree(kms: kms_v1.KeyManagementServiceClient, key: str, signer: str, tmp_path: Path) -> Path:
    """A root holding a signed file envelope and a signed dataset envelope."""
    root = tmp_path / "root"
    root.mkdir()
    write_random(tmp_path / "m.bin", 2000)
    encrypt(kms, key, str(tmp_path / "m.bin"), str(root / "m.enc"), sign_with=signer)
    encrypt(kms, key, str(dataset(tmp_path)), str(root / "ds"), sign_with=signer)
    return root


def test_inventory_counts_signed_envelopes_once_without_findings(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    signer = make_signing_key(kms, ring_id, "EC_SIGN_P256_SHA256")
    root = signed_tree(kms, key, signer, tmp_path)
    assert (root / "m.enc.kmsflow.sig.json").is_file()
    assert (root / "ds" / "_kmsflow" / "signature.json").is_file()
    inventory = scan([str(root)])
    assert inventory.complete, inventory.findings
    assert inventory.findings == ()
    assert sorted(Path(r.url).name for r in inventory.envelopes) == ["ds", "m.enc"]
    assert len(inventory.references(f"{key}/cryptoKeyVersions/1")) == 2


def test_hostile_or_missing_signatures_change_nothing_for_inventory_and_readers(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    signer = make_signing_key(kms, ring_id, "PQ_SIGN_ML_DSA_65")
    root = signed_tree(kms, key, signer, tmp_path)
    before = scan([str(root)])
    # Garbage, a huge file, and a directory where a signature record should be.
    (root / "m.enc.kmsflow.sig.json").write_bytes(b"\x00" * 3_000_000)
    (root / "ds" / "_kmsflow" / "signature.json").unlink()
    (root / "ds" / "_kmsflow" / "signature.json").write_text('{"format": "kmsflow.signature", "version": 99}')
    after = scan([str(root)])
    assert after.complete and after.findings == ()
    assert [r.to_dict() for r in after.envelopes] == [r.to_dict() for r in before.envelopes]
    # Readers that do not check signatures do not care either.
    verify(kms, str(root / "ds"))
    decrypt(kms, str(root / "m.enc"), str(tmp_path / "out.bin"))
    assert filecmp.cmp(tmp_path / "out.bin", tmp_path / "m.bin", shallow=False)
    # Missing signatures: still nothing to report.
    (root / "m.enc.kmsflow.sig.json").unlink()
    (root / "ds" / "_kmsflow" / "signature.json").unlink()
    assert scan([str(root)]).findings == ()


def test_orphan_signature_is_data_without_record(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    """A signature record whose envelope is gone is reported like any file no record covers: the
    scan cannot tell it from a renamed ciphertext, and a proof must not guess."""
    signer = make_signing_key(kms, ring_id, "EC_SIGN_P256_SHA256")
    root = signed_tree(kms, key, signer, tmp_path)
    (root / "m.enc").unlink()
    (root / "m.enc.kmsflow.json").unlink()
    inventory = scan([str(root)])
    kinds = {(f.kind, Path(f.url).name) for f in inventory.findings}
    assert kinds == {(FindingKind.DATA_WITHOUT_RECORD, "m.enc.kmsflow.sig.json")}
    assert not inventory.complete


def test_interrupted_signature_write_is_a_stale_temp(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    signer = make_signing_key(kms, ring_id, "EC_SIGN_P256_SHA256")
    root = signed_tree(kms, key, signer, tmp_path)
    (root / "ds" / "_kmsflow" / ".signature.json.kmsflow-0123456789ab.part").write_bytes(b"{")
    inventory = scan([str(root)])
    assert [f.kind for f in inventory.findings] == [FindingKind.STALE_TEMP]
    assert inventory.complete
    verify(kms, str(root / "ds"))  # the dataset's listing accepts it, as it does a rewrap's temp


def test_gcs_signed_envelopes(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, gcs_bucket: str, tmp_path: Path
) -> None:
    signer = make_signing_key(kms, ring_id, "EC_SIGN_P384_SHA384")
    write_random(tmp_path / "m.bin", 3000)
    encrypt(kms, key, str(tmp_path / "m.bin"), f"gs://{gcs_bucket}/m.enc", sign_with=signer)
    encrypt(kms, key, str(dataset(tmp_path)), f"gs://{gcs_bucket}/ds")
    ds = Envelope.open(f"gs://{gcs_bucket}/ds")
    sign_envelope(kms, ds, signer)
    for url in (f"gs://{gcs_bucket}/m.enc", f"gs://{gcs_bucket}/ds"):
        verify_signature(Envelope.open(url), signer, client=kms)
    inventory = scan([f"gs://{gcs_bucket}"])
    assert inventory.complete and inventory.findings == ()
    assert len(inventory.envelopes) == 2
    # the ciphertext object replaced by a longer one (its first bytes unchanged)
    from kmsflow.envelope.errors import SignatureError
    from kmsflow.envelope.storage import gcs_filesystem

    fs = gcs_filesystem()
    fs.pipe(f"{gcs_bucket}/m.enc", fs.cat(f"{gcs_bucket}/m.enc") + b"appended")
    with pytest.raises(SignatureError, match=r"m\.enc: ciphertext differs from what was signed"):
        verify_signature(Envelope.open(f"gs://{gcs_bucket}/m.enc"), signer, client=kms)


def test_gcs_reencrypt_of_a_signed_dataset_leaves_a_signature_that_no_longer_applies(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, gcs_bucket: str, tmp_path: Path
) -> None:
    from kmsflow.envelope.errors import SignatureError
    from kmsflow.lifecycle import reencrypt

    signer = make_signing_key(kms, ring_id, "EC_SIGN_P256_SHA256")
    url = f"gs://{gcs_bucket}/ds"
    encrypt(kms, key, str(dataset(tmp_path)), url, sign_with=signer)
    report = reencrypt(kms, [url])
    assert report.to_dict()["reencrypted"] == 1, report.to_dict()
    env = Envelope.open(url)
    verify(kms, url)
    # GCS re-encrypt rolls the staged objects over the live ones; the old signature object stays.
    with pytest.raises(SignatureError, match="signs envelope"):
        verify_signature(env, signer, client=kms)
    sign_envelope(kms, env, signer, replace=True)
    verify_signature(env, signer, client=kms)
