"""KmsHook / KmsAsyncHook: connection handling, emulator vs real client, crypto with retries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowNotFoundException
from google.auth.credentials import AnonymousCredentials
from google.cloud import kms_v1

from kmsflow.airflow.hooks import KmsAsyncHook, KmsHook
from kmsflow.kms.errors import KmsPermissionError, KmsTransientError

INTRUDER = "user:mallory@example.com"


def test_connection_extras_select_emulator_principal_and_deadline(
    iam_emulator: Any, owner: str, set_conn: Callable[..., str]
) -> None:
    set_conn(endpoint=iam_emulator.endpoint, principal=owner, deadline=7)
    hook = KmsHook()
    assert (hook.endpoint, hook.principal, hook.deadline) == (iam_emulator.endpoint, owner, 7.0)
    assert KmsHook(deadline=2.5).deadline == 2.5
    client = hook.get_conn()
    assert hook.get_conn() is client  # cached
    hook.close()


def test_env_contract_is_honoured_without_any_connection(
    iam_emulator: Any, owner: str, location: str, ring_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMS_EMULATOR_HOST", iam_emulator.endpoint)
    monkeypatch.setenv("KMSFLOW_PRINCIPAL", owner)
    hook = KmsHook()  # no kmsflow_default defined: the emulator contract is enough
    ring, created = hook.ensure_key_ring(location, ring_id)
    assert created and ring.name.endswith(ring_id)
    hook.close()
    with pytest.raises(AirflowNotFoundException):
        KmsHook(kmsflow_conn_id="kmsflow_missing")


def test_prefixed_extras_are_understood(iam_emulator: Any, owner: str, set_conn: Callable[..., str]) -> None:
    set_conn(**{"extra__kmsflow__endpoint": iam_emulator.endpoint, "extra__kmsflow__principal": owner})
    hook = KmsHook()
    assert (hook.endpoint, hook.principal) == (iam_emulator.endpoint, owner)


def test_connection_endpoint_wins_over_env(
    iam_emulator: Any, set_conn: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMS_EMULATOR_HOST", "127.0.0.1:1")
    set_conn(endpoint=iam_emulator.endpoint)
    assert KmsHook().endpoint == iam_emulator.endpoint


def test_without_emulator_uses_google_base_hook_credentials(set_conn: Callable[..., str]) -> None:
    set_conn(is_anonymous=True, project="proj-1")
    hook = KmsHook()
    assert hook.endpoint is None
    client = hook.get_conn()
    assert isinstance(client, kms_v1.KeyManagementServiceClient)
    assert "cloudkms.googleapis.com" in client.transport._host
    assert isinstance(client.transport._credentials, AnonymousCredentials)
    assert hook.project == "proj-1"
    hook.close()


def test_test_connection_checks_the_emulator(
    iam_emulator: Any, set_conn: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_conn(endpoint=iam_emulator.endpoint)
    assert KmsHook().test_connection() == (True, f"kmsflow emulator reachable at {iam_emulator.endpoint}")
    monkeypatch.setattr(KmsHook, "test_timeout", 0.3)
    set_conn(endpoint="127.0.0.1:9")
    ok, message = KmsHook().test_connection()
    assert not ok and "127.0.0.1:9" in message


def test_bad_deadline_is_a_clear_error(set_conn: Callable[..., str]) -> None:
    set_conn(endpoint="127.0.0.1:1", deadline="soon")
    with pytest.raises(ValueError, match="deadline"):
        _ = KmsHook().deadline


def test_encrypt_decrypt_round_trip_names_the_version(hook: KmsHook, key: str) -> None:
    wrapped = hook.encrypt(key, b"model-weights-dek", b"aad")
    assert wrapped.key_version == f"{key}/cryptoKeyVersions/1"
    assert hook.decrypt(key, wrapped.ciphertext, b"aad") == b"model-weights-dek"


def test_principal_without_rights_is_refused(
    hook: KmsHook, key: str, iam_emulator: Any, set_conn: Callable[..., str]
) -> None:
    set_conn("kmsflow_intruder", endpoint=iam_emulator.endpoint, principal=INTRUDER)
    intruder = KmsHook(kmsflow_conn_id="kmsflow_intruder")
    with pytest.raises(KmsPermissionError):
        intruder.encrypt(key, b"x")
    intruder.close()


def _new_key(hook: KmsHook, location: str) -> kms_v1.CryptoKey:
    """A key ring ``r`` and a software ENCRYPT_DECRYPT key ``k`` in it, through the hook."""
    ring, _ = hook.ensure_key_ring(location, "r")
    key, _ = hook.ensure_crypto_key(
        ring.name,
        "k",
        purpose="ENCRYPT_DECRYPT",
        algorithm="GOOGLE_SYMMETRIC_ENCRYPTION",
        protection_level="SOFTWARE",
    )
    return key


def test_transient_errors_retried_within_deadline_then_given_up(
    fresh_emulator: Any, location: str, set_conn: Callable[..., str]
) -> None:
    set_conn(endpoint=fresh_emulator.endpoint, deadline=5)
    hook = KmsHook()
    key = _new_key(hook, location)
    fresh_emulator.admin.set_faults(script=["UNAVAILABLE", "UNAVAILABLE"], methods=["Encrypt"])
    assert hook.encrypt(key.name, b"x").key_version.endswith("/1")
    fresh_emulator.admin.set_faults(rate=1.0, codes=["UNAVAILABLE"], methods=["Encrypt"])
    short = KmsHook(deadline=0.5)
    with pytest.raises(KmsTransientError, match="gave up retrying"):
        short.encrypt(key.name, b"x")
    fresh_emulator.admin.set_faults()
    hook.close()
    short.close()


@pytest.mark.parametrize(
    ("method", "call"),
    [
        ("CreateCryptoKeyVersion", lambda h, key: h.rotate(key)),
        ("ListCryptoKeyVersions", lambda h, key: h.list_versions(key)),
        ("GetIamPolicy", lambda h, key: h.get_iam_policy(key)),
    ],
    ids=["rotate", "list_versions", "get_iam_policy"],
)
def test_resource_and_iam_calls_give_up_at_the_connection_deadline(
    fresh_emulator: Any, location: str, set_conn: Callable[..., str], method: str, call: Any
) -> None:
    """Not only encrypt/decrypt: every hook call retries under the connection's ``deadline``
    (the core's default would keep a task waiting 60 s)."""
    set_conn(endpoint=fresh_emulator.endpoint, deadline=1)
    hook = KmsHook()
    key = _new_key(hook, location)
    fresh_emulator.admin.set_faults(rate=1.0, codes=["UNAVAILABLE"], methods=[method])
    started = time.monotonic()
    with pytest.raises(KmsTransientError, match="gave up retrying"):
        call(hook, key.name)
    assert time.monotonic() - started < 10
    fresh_emulator.admin.set_faults()
    assert call(hook, key.name) is not None  # and the same call works once KMS answers
    hook.close()


def test_async_hook_reads_versions_as_the_connection_principal(
    hook: KmsHook, key: str, iam_emulator: Any, set_conn: Callable[..., str]
) -> None:
    set_conn("kmsflow_intruder", endpoint=iam_emulator.endpoint, principal=INTRUDER)

    async def read(conn_id: str) -> str:
        async with KmsAsyncHook(kmsflow_conn_id=conn_id) as async_hook:
            version = await async_hook.get_crypto_key_version(f"{key}/cryptoKeyVersions/1")
            return str(version.state.name)

    assert asyncio.run(read("kmsflow_default")) == "ENABLED"
    with pytest.raises(KmsPermissionError):
        asyncio.run(read("kmsflow_intruder"))
