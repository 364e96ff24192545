"""End-to-end key lifecycle demo against the kmsflow KMS emulator.

Starts ``kmsflow-emulator`` on a free loopback port (IAM enforced), then drives it with the real
``google-cloud-kms`` client: key ring and key with 90-day rotation (the seed's resources), a
least-privilege IAM binding, encrypt/decrypt through KMS, a manual and an automatic rotation (the
emulated clock is moved forward 90 days), and the resulting versions.
"""

from __future__ import annotations

import subprocess
import sys
import time

from google.cloud import kms_v1

from kmsflow.emulator.admin import AdminClient
from kmsflow.kms import crc32c, new_kms_client

OWNER = "user:demo-admin@example.com"
PIPELINE = "serviceAccount:pipeline@kmsflow-demo.iam.gserviceaccount.com"
LOCATION = "projects/kmsflow-demo/locations/us-central1"
NINETY_DAYS = 90 * 24 * 3600


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "kmsflow.emulator.cli", "serve", "--port", "0",
         "--enforce-iam", "--owner", OWNER],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise SystemExit(f"demo: the emulator did not start: {line!r}")
    return process, line.rsplit(" ", 1)[1].strip()


def show_versions(admin_client: kms_v1.KeyManagementServiceClient, key_name: str) -> None:
    key = admin_client.get_crypto_key(name=key_name)
    for version in admin_client.list_crypto_key_versions(parent=key_name):
        marker = "  <- primary" if version.name == key.primary.name else ""
        print(f"    {version.name.rsplit('/', 1)[1]:>3}  {version.state.name:<18}{marker}")


def main() -> int:
    step("Starting the Cloud KMS emulator (IAM enforced)")
    process, endpoint = start_emulator()
    print(f"    emulator at {endpoint}; owner {OWNER}")
    try:
        admin = new_kms_client(endpoint=endpoint, principal=OWNER)
        pipeline = new_kms_client(endpoint=endpoint, principal=PIPELINE)

        step("Creating key ring 'ai-key-ring' and key 'ai-crypto-key' (90-day rotation)")
        ring = admin.create_key_ring(
            request={"parent": LOCATION, "key_ring_id": "ai-key-ring", "key_ring": {}}
        )
        key = admin.create_crypto_key(
            request={
                "parent": ring.name,
                "crypto_key_id": "ai-crypto-key",
                "crypto_key": {
                    "purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT,
                    "rotation_period": {"seconds": NINETY_DAYS},
                    "next_rotation_time": {"seconds": int(time.time()) + NINETY_DAYS},
                },
            }
        )
        print(f"    {key.name}\n    primary: {key.primary.name}")

        step(f"Granting {PIPELINE} roles/cloudkms.cryptoKeyEncrypterDecrypter")
        policy = admin.get_iam_policy(request={"resource": key.name})
        policy.bindings.add(role="roles/cloudkms.cryptoKeyEncrypterDecrypter", members=[PIPELINE])
        admin.set_iam_policy(request={"resource": key.name, "policy": policy})

        step("Encrypting a sample through KMS as the pipeline (CRC32C verified both ways)")
        plaintext = b"Hello, kmsflow!"
        encrypted = pipeline.encrypt(
            request={"name": key.name, "plaintext": plaintext, "plaintext_crc32c": crc32c(plaintext)}
        )
        assert encrypted.verified_plaintext_crc32c
        assert encrypted.ciphertext_crc32c == crc32c(encrypted.ciphertext)
        print(f"    {len(encrypted.ciphertext)} bytes of ciphertext under {encrypted.name}")
        decrypted = pipeline.decrypt(request={"name": key.name, "ciphertext": encrypted.ciphertext})
        assert decrypted.plaintext == plaintext
        print(f"    decrypted: {decrypted.plaintext.decode()!r}")

        step("Rotating by hand (new version, made primary)")
        version = admin.create_crypto_key_version(parent=key.name, crypto_key_version={})
        admin.update_crypto_key_primary_version(
            name=key.name, crypto_key_version_id=version.name.rsplit("/", 1)[1]
        )
        show_versions(admin, key.name)

        step("Moving the emulated clock forward 90 days: Cloud KMS-style automatic rotation")
        with AdminClient(endpoint) as clock:
            clock.advance(NINETY_DAYS + 60)
        show_versions(admin, key.name)

        step("Old ciphertext still decrypts under its original version")
        again = pipeline.decrypt(request={"name": key.name, "ciphertext": encrypted.ciphertext})
        assert again.plaintext == plaintext and not again.used_primary
        print("    ok (used_primary = False)")
        print("\ndemo: all steps passed")
        return 0
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
