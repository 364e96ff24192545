"""IAM for signed artifacts, from a key spec applied to the IAM-enforcing emulator: ``signers`` get
signer + publicKeyViewer and sign, ``verifiers`` get publicKeyViewer and verify by key name but
cannot sign, anyone else verifies only with a public key file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kmsflow.envelope import Envelope, encrypt, sign_envelope, verify_signature
from kmsflow.kms import KmsPermissionError
from kmsflow.kms import iam as kiam
from kmsflow.kms.public_key import clear_cache
from kmsflow.spec import SpecError, apply, load_spec, plan

from .conftest import write_random

OWNER = "user:owner@example.com"
SIGNER = "serviceAccount:release@p.iam.gserviceaccount.com"
VERIFIER = "serviceAccount:inference@p.iam.gserviceaccount.com"
STRANGER = "user:eve@example.com"


def spec_text(ring_id: str) -> str:
    return f"""
    project: kmsflow-test
    location: us-central1
    key_rings:
      - id: {ring_id}
        keys:
          - id: data
            producers: ["{SIGNER}"]
            consumers: ["{SIGNER}", "{VERIFIER}"]
          - id: release-signing
            purpose: ASYMMETRIC_SIGN
            algorithm: EC_SIGN_P384_SHA384
            rotation_period: null
            signers: ["{SIGNER}"]
            verifiers: ["{VERIFIER}"]
    """


def test_spec_roles_for_signers_and_verifiers(iam_emulator: Any, ring_id: str, tmp_path: Path) -> None:
    spec = load_spec(spec_text(ring_id))
    signing_spec = spec.key_rings[0].keys[1]
    assert signing_spec.wanted_iam() == {
        kiam.SIGNER_ROLE: {SIGNER},
        kiam.PUBLIC_KEY_VIEWER_ROLE: {SIGNER, VERIFIER},
    }
    owner = iam_emulator.client(OWNER)
    apply(plan(spec, owner), owner)
    ring = f"projects/kmsflow-test/locations/us-central1/keyRings/{ring_id}"
    data, signing = f"{ring}/cryptoKeys/data", f"{ring}/cryptoKeys/release-signing"
    version = f"{signing}/cryptoKeyVersions/1"

    write_random(tmp_path / "m.bin", 500)
    signer = iam_emulator.client(SIGNER)
    encrypt(signer, data, str(tmp_path / "m.bin"), str(tmp_path / "m.enc"), sign_with=version)
    env = Envelope.open(str(tmp_path / "m.enc"))

    verifier = iam_emulator.client(VERIFIER)
    verify_signature(env, signing, client=verifier)
    verify_signature(env, signing, client=verifier, key=env.unlock(verifier))
    with pytest.raises(KmsPermissionError, match="useToSign"):
        sign_envelope(verifier, env, version, replace=True)
    clear_cache()  # public keys are cached per version for the process; ask KMS again
    with pytest.raises(KmsPermissionError, match="viewPublicKey"):
        verify_signature(env, signing, client=iam_emulator.client(STRANGER))


def test_signers_only_on_signing_keys(ring_id: str) -> None:
    text = f"""
    project: p
    location: l
    key_rings: [{{id: {ring_id}, keys: [{{id: k, signers: ["{SIGNER}"], verifiers: []}}]}}]
    """
    with pytest.raises(SpecError) as caught:
        load_spec(text)
    assert [p.split(":", 1)[0] for p in caught.value.problems] == [
        "key_rings[0].keys[0].signers",
        "key_rings[0].keys[0].verifiers",
    ]
