"""Fault injection: scripted and random failures, the serve flags and the ``faults`` CLI.

Client calls pass ``retry=None`` so each injected status reaches the test instead of being retried.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import kms_v1

Cli = Callable[..., subprocess.CompletedProcess[str]]
ENCRYPT = "/google.cloud.kms.v1.KeyManagementService/Encrypt"


def raw_encrypt(endpoint: str, name: str) -> grpc.StatusCode:
    """One Encrypt over a bare gRPC channel (no client library, no retries); returns its status."""
    with grpc.insecure_channel(endpoint) as channel:
        call = channel.unary_unary(
            ENCRYPT,
            request_serializer=kms_v1.EncryptRequest.pb().SerializeToString,
            response_deserializer=kms_v1.EncryptResponse.pb().FromString,
        )
        try:
            call(kms_v1.EncryptRequest.pb()(name=name, plaintext=b"raw"), timeout=10)
        except grpc.RpcError as exc:
            code = exc.code()
            assert isinstance(code, grpc.StatusCode)
            return code
        return grpc.StatusCode.OK


def outcome(call: Callable[[], Any]) -> str:
    """The gRPC status name a client call ended with."""
    try:
        call()
    except exceptions.GoogleAPICallError as exc:
        assert exc.grpc_status_code is not None
        return str(exc.grpc_status_code.name)
    return "OK"


@pytest.fixture
def keyed(fresh_emulator: Any, clients: Any, new_ring: Callable[..., str], new_key: Any) -> Any:
    kms = clients(fresh_emulator)
    return kms, new_key(kms, new_ring(kms))


def test_script_is_answered_in_order(fresh_emulator: Any, keyed: Any) -> None:
    kms, key = keyed
    status = fresh_emulator.admin.set_faults(
        script=["UNAVAILABLE", "OK", "RESOURCE_EXHAUSTED"], methods=["Encrypt"]
    )
    assert status["script_remaining"] == ["UNAVAILABLE", "OK", "RESOURCE_EXHAUSTED"]

    def encrypt() -> Any:
        return kms.encrypt(name=key.name, plaintext=b"x", retry=None)

    def get_key() -> Any:
        return kms.get_crypto_key(name=key.name, retry=None)

    # Other methods are not affected and do not consume the script.
    seen = [outcome(encrypt), outcome(get_key), outcome(encrypt), outcome(get_key), outcome(encrypt)]
    assert seen == ["UNAVAILABLE", "OK", "OK", "OK", "RESOURCE_EXHAUSTED"]
    assert [outcome(encrypt) for _ in range(3)] == ["OK"] * 3
    status = fresh_emulator.admin.faults()
    assert status["script_remaining"] == []
    assert status["injected"] == 2

    # The same over a bare channel.
    fresh_emulator.admin.set_faults(script=["RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "OK"])
    codes = [raw_encrypt(fresh_emulator.endpoint, key.name) for _ in range(4)]
    assert codes == [
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.OK,
        grpc.StatusCode.OK,
    ]

    # With its default retry the client rides out transient faults.
    injected = fresh_emulator.admin.faults()["injected"]
    assert injected == 4
    fresh_emulator.admin.set_faults(script=["UNAVAILABLE", "DEADLINE_EXCEEDED"], methods=["Encrypt"])
    sealed = kms.encrypt(name=key.name, plaintext=b"eventually")
    assert fresh_emulator.admin.faults()["injected"] == injected + 2
    assert kms.decrypt(name=key.name, ciphertext=sealed.ciphertext).plaintext == b"eventually"


def test_rate_one_fails_every_kms_and_iam_call_but_not_admin(fresh_emulator: Any, keyed: Any) -> None:
    kms, key = keyed
    fresh_emulator.admin.set_faults(rate=1.0, codes=["DEADLINE_EXCEEDED"])
    calls: list[Callable[[], Any]] = [
        lambda: kms.encrypt(name=key.name, plaintext=b"x", retry=None),
        lambda: kms.get_crypto_key(name=key.name, retry=None),
        lambda: kms.list_crypto_key_versions(request={"parent": key.name}, retry=None),
        lambda: kms.get_iam_policy(request={"resource": key.name}, retry=None),
        lambda: kms.test_iam_permissions(request={"resource": key.name, "permissions": []}, retry=None),
    ]
    assert [outcome(c) for c in calls] == ["DEADLINE_EXCEEDED"] * len(calls)
    with pytest.raises(exceptions.DeadlineExceeded):
        calls[0]()
    assert raw_encrypt(fresh_emulator.endpoint, key.name) == grpc.StatusCode.DEADLINE_EXCEEDED
    # The Admin service is the harness's hand, never faulted.
    before = fresh_emulator.admin.now()
    assert fresh_emulator.admin.advance(1) >= before + 1
    assert fresh_emulator.admin.faults()["injected"] == len(calls) + 2

    fresh_emulator.admin.set_faults(rate=0.0)
    assert [outcome(c) for c in calls] == ["OK"] * len(calls)

    # A seeded rate gives the same sequence every time.
    def run(seed: int) -> list[str]:
        fresh_emulator.admin.set_faults(
            rate=0.5, codes=["UNAVAILABLE", "RESOURCE_EXHAUSTED"], seed=seed, methods=["GetCryptoKey"]
        )
        return [outcome(calls[1]) for _ in range(20)]

    first = run(7)
    assert first == run(7)
    assert {"OK", "UNAVAILABLE", "RESOURCE_EXHAUSTED"} <= set(first)

    with pytest.raises(grpc.RpcError) as refused:
        fresh_emulator.admin.set_faults(script=["PERMISSION_DENIED"])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError):
        fresh_emulator.admin.set_faults(rate=1.5)


def test_fault_serve_flags(launch: Callable[..., Any], clients: Any, location: str) -> None:
    running = launch(
        "--fault-script",
        "UNAVAILABLE,OK,RESOURCE_EXHAUSTED",
        "--fault-rate",
        "1",
        "--fault-codes",
        "DEADLINE_EXCEEDED",
    )
    kms = clients(running)
    # Admin calls leave the script alone.
    status = running.admin.faults()
    assert status["script_remaining"] == ["UNAVAILABLE", "OK", "RESOURCE_EXHAUSTED"]
    assert (status["rate"], status["codes"]) == (1.0, ["DEADLINE_EXCEEDED"])
    request = {"parent": location, "key_ring_id": "flagged", "key_ring": {}}
    ring = f"{location}/keyRings/flagged"
    # The script first, call by call; then the rate (1.0: every call).
    seen = [
        outcome(lambda: kms.create_key_ring(request=request, retry=None)),
        outcome(lambda: kms.create_key_ring(request=request, retry=None)),
        outcome(lambda: kms.get_key_ring(name=ring, retry=None)),
        outcome(lambda: kms.get_key_ring(name=ring, retry=None)),
        outcome(lambda: kms.list_key_rings(request={"parent": location}, retry=None)),
    ]
    assert seen == ["UNAVAILABLE", "OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"]
    running.admin.set_faults(rate=0.0)
    assert kms.get_key_ring(name=ring, retry=None).name == ring

    # SIGINT (Ctrl-C) stops the server as cleanly as SIGTERM.
    running.process.send_signal(signal.SIGINT)
    assert running.process.wait(timeout=10) == 0
    assert running.stop() == 0
    assert "kmsflow-emulator stopped" in running.stdout_rest


def test_faults_cli(fresh_emulator: Any, keyed: Any, cli: Cli) -> None:
    kms, key = keyed
    endpoint = fresh_emulator.endpoint
    result = cli(
        "faults",
        "--endpoint",
        endpoint,
        "--script",
        "UNAVAILABLE,OK,DEADLINE_EXCEEDED",
        "--methods",
        "Decrypt",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["script_remaining"] == ["UNAVAILABLE", "OK", "DEADLINE_EXCEEDED"]

    sealed = kms.encrypt(name=key.name, plaintext=b"x", retry=None)  # not a Decrypt: untouched

    def decrypt() -> Any:
        return kms.decrypt(name=key.name, ciphertext=sealed.ciphertext, retry=None)

    assert [outcome(decrypt) for _ in range(4)] == ["UNAVAILABLE", "OK", "DEADLINE_EXCEEDED", "OK"]

    shown = cli("faults", "--endpoint", endpoint)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["injected"] == 2
    assert status["methods"] == ["Decrypt"]

    refused = cli("faults", "--endpoint", endpoint, "--script", "NOT_FOUND")
    assert refused.returncode == 1
    assert "INVALID_ARGUMENT" in refused.stderr
    assert fresh_emulator.admin.faults()["methods"] == ["Decrypt"]


def test_faults_reach_the_new_rpcs(fresh_emulator: Any, clients: Any, new_ring: Callable[..., str]) -> None:
    """Issue 21's RPCs are fault-injected like the others (script per method name)."""
    kms = clients(fresh_emulator)
    ring = new_ring(kms)
    key = kms.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": "signer",
            "crypto_key": {
                "purpose": "ASYMMETRIC_SIGN",
                "version_template": {"algorithm": "EC_SIGN_P256_SHA256"},
            },
        }
    )
    name = f"{key.name}/cryptoKeyVersions/1"
    fresh_emulator.admin.set_faults(
        script=["UNAVAILABLE", "DEADLINE_EXCEEDED"], methods=["AsymmetricSign", "GetPublicKey"]
    )

    def sign() -> Any:
        return kms.asymmetric_sign(request={"name": name, "data": b"x"}, retry=None)

    def public_key() -> Any:
        return kms.get_public_key(request={"name": name}, retry=None)

    assert [outcome(sign), outcome(public_key), outcome(sign)] == ["UNAVAILABLE", "DEADLINE_EXCEEDED", "OK"]
    # With the client's default retry, an UNAVAILABLE is retried through.
    fresh_emulator.admin.set_faults(script=["UNAVAILABLE"], methods=["AsymmetricSign"])
    assert kms.asymmetric_sign(request={"name": name, "data": b"x"}).signature
