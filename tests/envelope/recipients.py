"""Recipient keys on the emulator for the recipient-envelope tests (RSA-OAEP, ML-KEM, X-Wing)."""

from __future__ import annotations

import time
import uuid

from google.cloud import kms_v1

from kmsflow.kms.public_key import PublicKey, fetch_public_key

LOCATION = "projects/kmsflow-test/locations/us-central1"
ALGORITHMS = ("RSA_DECRYPT_OAEP_3072_SHA256", "ML_KEM_768", "ML_KEM_1024", "KEM_XWING")
_PURPOSE = {"RSA": "ASYMMETRIC_DECRYPT", "ML": "KEY_ENCAPSULATION", "KEM": "KEY_ENCAPSULATION"}


def make_recipient_key(
    client: kms_v1.KeyManagementServiceClient, algorithm: str, ring_id: str | None = None
) -> str:
    """A new key ring (unless ``ring_id`` exists) and a recipient key of ``algorithm``; returns the
    key name once its version 1 is ENABLED."""
    ring_id = ring_id or f"ring-{uuid.uuid4().hex[:12]}"
    try:
        client.create_key_ring(request={"parent": LOCATION, "key_ring_id": ring_id, "key_ring": {}})
    except Exception as exc:  # AlreadyExists on the second key of a ring
        if "exist" not in str(exc).lower():
            raise
    key = client.create_crypto_key(
        request={
            "parent": f"{LOCATION}/keyRings/{ring_id}",
            "crypto_key_id": f"k-{algorithm.lower().replace('_', '-')}"[:60],
            "crypto_key": {
                "purpose": _PURPOSE[algorithm.split("_")[0]],
                "version_template": {"algorithm": algorithm},
            },
        }
    )
    wait_enabled(client, f"{key.name}/cryptoKeyVersions/1")
    return str(key.name)


def wait_enabled(client: kms_v1.KeyManagementServiceClient, version: str, timeout: float = 30.0) -> None:
    """Wait (bounded) until ``version`` leaves PENDING_GENERATION; fail if it does not."""
    deadline = time.monotonic() + timeout
    while client.get_crypto_key_version(name=version, timeout=10).state.name != "ENABLED":
        assert time.monotonic() < deadline, f"{version} never became ENABLED"
        time.sleep(0.05)


def public_key(client: kms_v1.KeyManagementServiceClient, key_name: str, version: int = 1) -> PublicKey:
    return fetch_public_key(client, f"{key_name}/cryptoKeyVersions/{version}")
