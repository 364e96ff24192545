"""``kmsflow.kms.public_key``: GetPublicKey checked (CRC32C, name, algorithm) and cached per version,
public key files read strictly. Corruption in transit is made by a gRPC interceptor on the real
client's channel, the one thing the emulator cannot produce itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import (
    KeyManagementServiceGrpcTransport,
)

from kmsflow.kms.client import emulator_channel
from kmsflow.kms.errors import KmsIntegrityError
from kmsflow.kms.public_key import (
    DER,
    NIST_PQC,
    PublicKey,
    PublicKeyError,
    clear_cache,
    fetch_public_key,
    load,
)

from .conftest import counting_client
from .test_signature import make_signing_key


class _Altered:
    """A finished call whose response went through ``change`` (everything else as the original)."""

    def __init__(self, outcome: Any, change: Callable[[Any], None]) -> None:
        self._outcome, self._change = outcome, change

    def result(self, timeout: float | None = None) -> Any:
        response = self._outcome.result(timeout)
        self._change(response)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._outcome, name)


class Tamper(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Alters every GetPublicKey response as ``change`` says (a byte flipped, another name)."""

    def __init__(self, change: Callable[[Any], None]) -> None:
        self.change = change

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        outcome = continuation(details, request)
        if details.method.endswith("/GetPublicKey"):
            return _Altered(outcome, self.change)
        return outcome


def tampering_client(endpoint: str, change: Callable[[Any], None]) -> kms_v1.KeyManagementServiceClient:
    channel = grpc.intercept_channel(emulator_channel(endpoint), Tamper(change))
    transport = KeyManagementServiceGrpcTransport(channel=channel, credentials=AnonymousCredentials())
    return kms_v1.KeyManagementServiceClient(
        transport=transport, client_options=ClientOptions(api_endpoint=endpoint)
    )


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_cache()


def test_fetch_checks_and_caches_per_version(
    emulator: Any, kms: kms_v1.KeyManagementServiceClient, ring_id: str
) -> None:
    ec = f"{make_signing_key(kms, ring_id, 'EC_SIGN_P384_SHA384')}/cryptoKeyVersions/1"
    pq = f"{make_signing_key(kms, ring_id, 'PQ_SIGN_ML_DSA_65')}/cryptoKeyVersions/1"
    client, counter = counting_client(emulator.endpoint)
    first = fetch_public_key(client, ec)
    assert (first.version_name, first.algorithm, first.format) == (ec, "EC_SIGN_P384_SHA384", DER)
    assert fetch_public_key(client, ec) is first
    assert counter.calls["GetPublicKey"] == 1
    post_quantum = fetch_public_key(client, pq)
    assert (post_quantum.format, len(post_quantum.key)) == (NIST_PQC, 1952)  # FIPS 204 ML-DSA-65
    assert counter.calls["GetPublicKey"] == 3  # DER refused, then NIST_PQC; once per version
    fetch_public_key(client, pq)
    assert counter.calls["GetPublicKey"] == 3


def test_corruption_in_transit_is_refused(
    emulator: Any, kms: kms_v1.KeyManagementServiceClient, ring_id: str
) -> None:
    version = f"{make_signing_key(kms, ring_id, 'EC_SIGN_P256_SHA256')}/cryptoKeyVersions/1"

    def flip(response: Any) -> None:
        data = bytearray(response.public_key.data)
        data[-1] ^= 1
        response.public_key.data = bytes(data)

    def rename(response: Any) -> None:
        response.name = response.name[:-1] + "2"

    with pytest.raises(KmsIntegrityError, match="CRC32C"):
        fetch_public_key(tampering_client(emulator.endpoint, flip), version)
    with pytest.raises(KmsIntegrityError, match="answered for"):
        fetch_public_key(tampering_client(emulator.endpoint, rename), version)
    assert fetch_public_key(kms, version).algorithm == "EC_SIGN_P256_SHA256"  # nothing bad was cached


def test_public_key_files(kms: kms_v1.KeyManagementServiceClient, ring_id: str, tmp_path: Path) -> None:
    version = f"{make_signing_key(kms, ring_id, 'RSA_SIGN_PSS_2048_SHA256')}/cryptoKeyVersions/1"
    public = fetch_public_key(kms, version)
    path = tmp_path / "k.pub"
    path.write_bytes(public.to_file_bytes())
    assert load(str(path)) == public
    assert PublicKey.from_file_bytes(public.to_file_bytes(), "x") == public

    body = json.loads(path.read_text())
    for bad in (
        {**body, "crc32c": "AAAAAA=="},
        {**body, "format": "kmsflow.envelope"},
        {**body, "version": 2},
        {**body, "extra": "x"},
        {**body, "key_format": "PEM"},
        {**body, "crypto_key_version": "projects/p/keys/k"},
        {**body, "public_key": "not base64!"},
        {**body, "algorithm": 7},
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(PublicKeyError):
            load(str(path))
    for raw in (b"", b"\xff\xfe", b"[]", b" " * (64 << 10) + b"{}"):
        path.write_bytes(raw)
        with pytest.raises(PublicKeyError):
            load(str(path))
    with pytest.raises(PublicKeyError, match="cannot read"):
        load(str(tmp_path / "missing.pub"))
    with pytest.raises(PublicKeyError, match="needs a KMS client"):
        load(version)
    # A CryptoKey name means its newest ENABLED version (signing and recipient keys have no primary).
    assert load(version.rsplit("/cryptoKeyVersions/", 1)[0], kms) == public
    assert load(version, kms) == public
