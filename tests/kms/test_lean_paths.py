"""Encrypt and Decrypt behave the same through both paths to KMS: ``google-cloud-kms``'s client and
the lean :class:`~kmsflow.kms.dataplane.KmsDataClient` (``new_data_client``).

Every test here runs once per path (the ``path`` fixture) against real emulator processes; faults
come from the emulator's Admin service (statuses, and corrupted or unverified answers)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from expired_credentials import REAUTH, refresh_failing_client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inventory.builders import make_key

from kmsflow.envelope.errors import TamperedError
from kmsflow.envelope.keyset import DataKey
from kmsflow.envelope.wrap import unwrap_key, wrap_key
from kmsflow.kms import (
    KmsCredentialsError,
    KmsDataClient,
    KmsIntegrityError,
    KmsInvalidArgumentError,
    KmsNotFoundError,
    KmsPermissionError,
    KmsTransientError,
    crypto,
    new_data_client,
    new_kms_client,
)
from kmsflow.kms.backoff import retry_deadline
from kmsflow.kms.dataplane import data_client

PATHS = {"gapic": new_kms_client, "lean": new_data_client}
Factory = Callable[..., Any]


@pytest.fixture(params=sorted(PATHS))
def path(request: pytest.FixtureRequest) -> Factory:
    """``new_kms_client`` or ``new_data_client``: the two ways to reach KMS, same arguments."""
    return PATHS[request.param]


@pytest.fixture(scope="module")
def faulty(shared: Any) -> Iterator[Any]:
    """A private emulator whose faults the tests script (and reset after each, see ``no_faults``)."""
    running = shared.start_emulator()
    yield running
    shared.stop_emulator(running)


@pytest.fixture
def no_faults(faulty: Any) -> Iterator[Any]:
    yield faulty
    faulty.admin.set_faults()


@pytest.fixture
def faulty_key(faulty: Any, ring_id: str) -> str:
    return make_key(faulty.client(), ring_id)


def test_round_trip_and_the_other_path_reads_it(path: Factory, emulator: Any, key: str) -> None:
    other = PATHS["lean"] if path is PATHS["gapic"] else PATHS["gapic"]
    with path(endpoint=emulator.endpoint) as client, other(endpoint=emulator.endpoint) as reader:
        wrapped = crypto.encrypt(client, key, b"data key", b"aad")
        assert wrapped.key_version == f"{key}/cryptoKeyVersions/1"
        assert crypto.decrypt(client, key, wrapped.ciphertext, b"aad") == b"data key"
        assert crypto.decrypt(reader, key, wrapped.ciphertext, b"aad") == b"data key"  # same wire bytes


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plaintext=st.binary(min_size=1, max_size=2048), aad=st.binary(max_size=256))
def test_any_bytes_round_trip(path: Factory, emulator: Any, key: str, plaintext: bytes, aad: bytes) -> None:
    with path(endpoint=emulator.endpoint) as client:
        wrapped = crypto.encrypt(client, key, plaintext, aad)
        assert crypto.decrypt(client, key, wrapped.ciphertext, aad) == plaintext


@pytest.mark.parametrize(
    ("method", "fault", "call", "message"),
    [
        ("Encrypt", "CORRUPT_RESPONSE", "encrypt", "ciphertext was corrupted in transit"),
        ("Encrypt", "UNVERIFIED_REQUEST", "encrypt", "did not verify the request checksums"),
        ("Decrypt", "CORRUPT_RESPONSE", "decrypt", "plaintext was corrupted in transit"),
    ],
)
def test_a_corrupted_or_unverified_answer_is_an_integrity_error(
    path: Factory, no_faults: Any, faulty_key: str, method: str, fault: str, call: str, message: str
) -> None:
    with path(endpoint=no_faults.endpoint) as client:
        wrapped = crypto.encrypt(client, faulty_key, b"secret")
        injected = no_faults.admin.set_faults(script=[fault], methods=[method])["injected"]
        with pytest.raises(KmsIntegrityError, match=message):
            if call == "encrypt":
                crypto.encrypt(client, faulty_key, b"secret")
            else:
                crypto.decrypt(client, faulty_key, wrapped.ciphertext)
        assert no_faults.admin.faults()["injected"] == injected + 1  # an integrity failure is not retried
        assert crypto.decrypt(client, faulty_key, wrapped.ciphertext) == b"secret"  # next call is clean


def test_unavailable_is_retried_within_the_deadline(path: Factory, no_faults: Any, faulty_key: str) -> None:
    with path(endpoint=no_faults.endpoint) as client, retry_deadline(20.0):
        script = ["UNAVAILABLE", "DEADLINE_EXCEEDED", "OK"]
        injected = no_faults.admin.set_faults(script=script, methods=["Encrypt"])["injected"]
        wrapped = crypto.encrypt(client, faulty_key, b"secret")
        assert no_faults.admin.faults()["injected"] == injected + 2
        assert crypto.decrypt(client, faulty_key, wrapped.ciphertext) == b"secret"


def test_a_lasting_outage_gives_up_at_the_deadline(path: Factory, no_faults: Any, faulty_key: str) -> None:
    with path(endpoint=no_faults.endpoint) as client:
        wrapped = crypto.encrypt(client, faulty_key, b"secret")
        outage = no_faults.admin.set_faults(rate=1.0, codes=["UNAVAILABLE"], methods=["Decrypt"])
        injected = outage["injected"]
        started = time.monotonic()
        with retry_deadline(1.0), pytest.raises(KmsTransientError, match="gave up retrying"):
            crypto.decrypt(client, faulty_key, wrapped.ciphertext)
        elapsed = time.monotonic() - started
    assert elapsed < 5.0
    assert no_faults.admin.faults()["injected"] >= injected + 2  # retried, not failed at the first answer


def test_permission_denied(path: Factory, iam_emulator: Any, owner: str, ring_id: str) -> None:
    key = make_key(iam_emulator.client(owner), ring_id)
    stranger = "user:mallory@example.com"
    with (
        path(endpoint=iam_emulator.endpoint, principal=stranger) as client,
        pytest.raises(KmsPermissionError, match=f"encrypt with {key}"),
    ):
        crypto.encrypt(client, key, b"secret")


def test_not_found(path: Factory, emulator: Any, ring_id: str) -> None:
    missing = f"projects/kmsflow-test/locations/us-central1/keyRings/{ring_id}/cryptoKeys/none"
    with path(endpoint=emulator.endpoint) as client, pytest.raises(KmsNotFoundError, match=missing):
        crypto.encrypt(client, missing, b"secret")


def test_invalid_argument_and_a_moved_wrapped_key_is_tampering(
    path: Factory, emulator: Any, key: str
) -> None:
    with path(endpoint=emulator.endpoint) as client:
        with pytest.raises(KmsInvalidArgumentError):
            crypto.decrypt(client, key, b"not a KMS ciphertext")
        data_key = DataKey.generate()
        wrap = wrap_key(client, key, data_key, "a" * 32)
        assert unwrap_key(client, wrap, "a" * 32, "env").serialize() == data_key.serialize()
        with pytest.raises(TamperedError, match="envelope " + "b" * 32):
            unwrap_key(client, wrap, "b" * 32, "env")  # the AAD binds the envelope id


def test_unrefreshable_credentials_fail_at_once() -> None:
    """The lean client over a GAPIC client's channel (how an Airflow hook's credentials, impersonated
    ones included, reach it) meets the same credentials failure, typed and not retried."""
    with refresh_failing_client() as gapic, retry_deadline(10.0):
        started = time.monotonic()
        for client in (gapic, KmsDataClient.over(gapic)):
            with pytest.raises(KmsCredentialsError, match=REAUTH.split(".")[0]):
                crypto.encrypt(client, "projects/p/locations/global/keyRings/r/cryptoKeys/k", b"secret")
        assert time.monotonic() - started < 5


def test_no_application_default_credentials(
    path: Factory, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("KMS_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(KmsCredentialsError, match=r"missing\.json"):
        path()


def test_a_gapic_client_lends_its_channel_once(emulator: Any, key: str) -> None:
    """``envelope.wrap`` turns whatever client it gets into the lean one: the same lean client for
    the life of a GAPIC client, calls on its channel, and closing that lean client leaves the GAPIC
    client working."""
    with new_kms_client(endpoint=emulator.endpoint) as gapic:
        lean = data_client(gapic)
        assert data_client(gapic) is lean and data_client(lean) is lean
        wrapped = crypto.encrypt(lean, key, b"secret")
        lean.close()  # not its channel: nothing closes
        assert crypto.decrypt(gapic, key, wrapped.ciphertext) == b"secret"
