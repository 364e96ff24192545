"""docs/FORMAT.md §10 is sufficient: the verifier printed there (``cryptography`` and the standard
library only) accepts what kmsflow signs, with every algorithm, and refuses what kmsflow refuses.
The key commitment is recomputed from the doc's description with Tink's protos and HKDF."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from google.cloud import kms_v1
from tink.proto import aes_gcm_hkdf_streaming_pb2, tink_pb2

from kmsflow.envelope import encrypt
from kmsflow.envelope.signature import DIGESTS
from kmsflow.kms.public_key import fetch_public_key

from .conftest import write_random
from .test_signature import dataset, make_signing_key

ROOT = Path(__file__).resolve().parents[2]


def verifier_from_the_doc() -> Any:
    """``verify_signed_envelope`` compiled from the code block after "**A verifier**" in FORMAT.md."""
    doc = (ROOT / "docs" / "FORMAT.md").read_text()
    code = doc.split("**A verifier**", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/FORMAT.md (verifier)", "exec"), namespace)
    return namespace["verify_signed_envelope"]


@pytest.mark.parametrize("algorithm", sorted(DIGESTS))
def test_the_doc_verifier_accepts_kmsflow_signatures(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path, algorithm: str
) -> None:
    verify = verifier_from_the_doc()
    signer = make_signing_key(kms, ring_id, algorithm)
    pub = tmp_path / "signer.pub"
    pub.write_bytes(fetch_public_key(kms, f"{signer}/cryptoKeyVersions/1").to_file_bytes())
    write_random(tmp_path / "m.bin", 3000)
    encrypt(kms, key, str(tmp_path / "m.bin"), str(tmp_path / "m.enc"), sign_with=signer)
    encrypt(kms, key, str(dataset(tmp_path)), str(tmp_path / "ds"), sign_with=signer)
    for envelope in ("m.enc", "ds"):
        statement = verify(str(tmp_path / envelope), str(pub))
        assert statement["signer"] == {
            "crypto_key_version": f"{signer}/cryptoKeyVersions/1",
            "algorithm": algorithm,
        }


def test_the_doc_verifier_refuses_forgeries(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    verify = verifier_from_the_doc()
    signer = make_signing_key(kms, ring_id, "EC_SIGN_P256_SHA256")
    other = make_signing_key(kms, ring_id, "EC_SIGN_P256_SHA256")
    pub, other_pub = tmp_path / "signer.pub", tmp_path / "other.pub"
    pub.write_bytes(fetch_public_key(kms, f"{signer}/cryptoKeyVersions/1").to_file_bytes())
    other_pub.write_bytes(fetch_public_key(kms, f"{other}/cryptoKeyVersions/1").to_file_bytes())
    src = dataset(tmp_path)
    encrypt(kms, key, str(src), str(tmp_path / "ds"), sign_with=signer)
    encrypt(kms, key, str(src), str(tmp_path / "ds2"), sign_with=signer)

    with pytest.raises(InvalidSignature):
        verify(str(tmp_path / "ds"), str(other_pub))
    # Another key's public key file that claims the signer's name: its bytes do not verify.
    lying = json.loads(other_pub.read_text()) | {"crypto_key_version": f"{signer}/cryptoKeyVersions/1"}
    (tmp_path / "lying.pub").write_text(json.dumps(lying))
    with pytest.raises(InvalidSignature):
        verify(str(tmp_path / "ds"), str(tmp_path / "lying.pub"))
    # The other envelope's signature record.
    shutil.copy(
        tmp_path / "ds2" / "_kmsflow" / "signature.json", tmp_path / "ds" / "_kmsflow" / "signature.json"
    )
    with pytest.raises(ValueError, match="another envelope"):
        verify(str(tmp_path / "ds"), str(pub))
    # An extra file in a dataset; a file swapped in from another envelope (same size).
    (tmp_path / "ds2" / "extra.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="other files than the signed ones"):
        verify(str(tmp_path / "ds2"), str(pub))
    (tmp_path / "ds2" / "extra.bin").unlink()
    shutil.copy(tmp_path / "ds" / "shards" / "a.bin", tmp_path / "ds2" / "shards" / "a.bin")
    with pytest.raises(ValueError, match="ciphertext differs"):
        verify(str(tmp_path / "ds2"), str(pub))


def test_the_commitment_as_the_doc_describes_it(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    signer = make_signing_key(kms, ring_id, "PQ_SIGN_ML_DSA_65")
    write_random(tmp_path / "m.bin", 100)
    record = encrypt(kms, key, str(tmp_path / "m.bin"), str(tmp_path / "m.enc"), sign_with=signer)
    signed = json.loads((tmp_path / "m.enc.kmsflow.sig.json").read_bytes())
    statement = json.loads(base64.b64decode(signed["statement"]))
    eid = record.envelope_id.encode("ascii")
    keyset = kms.decrypt(
        request={
            "name": key,
            "ciphertext": base64.b64decode(record.key.wrapped_keyset),
            "additional_authenticated_data": b"kmsflow/v1\x00keyset\x00" + eid,
        }
    ).plaintext
    parsed = tink_pb2.Keyset.FromString(keyset)
    key_value = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey.FromString(
        parsed.key[0].key_data.value
    ).key_value
    info = b"kmsflow/v1\x00commitment\x00" + eid
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key_value)
    assert statement["data_key_commitment"] == base64.b64encode(expected).decode()
