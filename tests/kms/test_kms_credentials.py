"""Missing or unrefreshable Google credentials are a typed, non-retried KMS error with its fix."""

from __future__ import annotations

import time

import pytest
from expired_credentials import REAUTH, refresh_failing_client
from google.api_core import exceptions as gexc

from kmsflow.kms import KmsCredentialsError, crypto, resources
from kmsflow.kms.backoff import is_transient, retry_deadline
from kmsflow.kms.errors import translate

KEY = "projects/p/locations/global/keyRings/r/cryptoKeys/k"
PLUGIN_FAILED = f"Getting metadata from plugin failed with error: {REAUTH}"


def test_a_refresh_failure_is_a_credentials_error_at_once_not_an_outage() -> None:
    with refresh_failing_client() as client, retry_deadline(10.0):
        started = time.monotonic()
        with pytest.raises(KmsCredentialsError) as raised:
            crypto.encrypt(client, KEY, b"secret")
        with pytest.raises(KmsCredentialsError):
            resources.get_key(client, KEY)
        assert time.monotonic() - started < 5  # not retried for the deadline as if KMS were down
    message = str(raised.value)
    assert f"encrypt with {KEY}" in message and REAUTH.rstrip(".") in message
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message and "KMS_EMULATOR_HOST=host:port" in message


def test_only_plugin_failures_escape_the_retry_and_the_outage_class() -> None:
    assert not is_transient(gexc.ServiceUnavailable(PLUGIN_FAILED))
    assert is_transient(gexc.ServiceUnavailable("connection refused"))
    assert isinstance(translate(gexc.ServiceUnavailable(PLUGIN_FAILED), "decrypt"), KmsCredentialsError)
    assert not isinstance(translate(gexc.ServiceUnavailable("down"), "decrypt"), KmsCredentialsError)
