"""EncryptSecretOperator: plaintext only from Airflow's secret stores, only ciphertext to XCom."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from kmsflow.airflow.hooks import KmsHook
from kmsflow.airflow.operators import EncryptSecretOperator

SECRET = "s3cr3t-api-token-4242"


def run(op: Any) -> Any:
    return op.execute(context={})


@pytest.fixture
def secret_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Variable and a Connection holding the secret, through Airflow's env secrets backend."""
    monkeypatch.setenv("AIRFLOW_VAR_API_TOKEN", SECRET)
    monkeypatch.setenv(
        "AIRFLOW_CONN_UPSTREAM_API",
        json.dumps({"conn_type": "http", "password": SECRET, "extra": {"token": SECRET, "n": 1}}),
    )


@pytest.mark.parametrize(
    "source", ["variable:API_TOKEN", "connection:upstream_api", "connection:upstream_api#token"]
)
def test_encrypts_the_referenced_secret_and_pushes_only_ciphertext(
    hook: KmsHook, key: str, secret_stores: None, source: str
) -> None:
    op = EncryptSecretOperator(task_id="enc", key_name=key, source=source, aad="api-token")
    out = run(op)
    assert set(out) == {"key", "key_version", "ciphertext", "aad", "source"}
    assert out["key_version"] == f"{key}/cryptoKeyVersions/1"
    assert SECRET not in json.dumps(out)
    ciphertext = base64.b64decode(out["ciphertext"])
    assert hook.decrypt(key, ciphertext, b"api-token") == SECRET.encode()


def test_the_secret_never_reaches_any_log_even_at_debug(
    hook: KmsHook,
    key: str,
    secret_stores: None,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # google-cloud-kms attaches request/response payloads to DEBUG records; kmsflow redacts them.
    with caplog.at_level("DEBUG"):
        out = run(EncryptSecretOperator(task_id="enc", key_name=key, source="variable:API_TOKEN"))
        hook.decrypt(key, base64.b64decode(out["ciphertext"]))
    printed = capsys.readouterr()
    assert "Encrypted variable:API_TOKEN under" in printed.out + caplog.text
    encoded = base64.b64encode(SECRET.encode()).decode()
    everything = printed.out + printed.err + "".join(str(r.__dict__) for r in caplog.records)
    assert any("Encrypt" in str(r.__dict__) for r in caplog.records)  # DEBUG records were emitted
    assert SECRET not in everything
    assert encoded not in everything


@pytest.mark.parametrize("source", [SECRET, "env:API_TOKEN", "variable:", "connection:a b", ""])
def test_anything_but_a_reference_is_refused_without_echoing_it(source: str) -> None:
    with pytest.raises(AirflowFailException, match="reference") as info:
        EncryptSecretOperator(task_id="enc", key_name="k", source=source)
    assert SECRET not in str(info.value)


def test_source_is_not_templated() -> None:
    # A rendered template is stored in the metadata DB: the source must stay a plain reference.
    assert "source" not in EncryptSecretOperator.template_fields


def test_missing_or_empty_secrets_fail_clearly(
    kms_conn: str, key: str, secret_stores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(AirflowFailException, match="no extra field 'nope'"):
        run(EncryptSecretOperator(task_id="enc", key_name=key, source="connection:upstream_api#nope"))
    monkeypatch.setenv("AIRFLOW_VAR_EMPTY", "")
    with pytest.raises(AirflowFailException, match="empty"):
        run(EncryptSecretOperator(task_id="enc", key_name=key, source="variable:EMPTY"))


def test_encrypt_refused_for_principal_without_rights(
    key: str, iam_emulator: Any, set_conn: Any, secret_stores: None
) -> None:
    set_conn("kmsflow_intruder", endpoint=iam_emulator.endpoint, principal="user:mallory@example.com")
    op = EncryptSecretOperator(
        task_id="enc", key_name=key, source="variable:API_TOKEN", kmsflow_conn_id="kmsflow_intruder"
    )
    with pytest.raises(AirflowFailException, match=r"(?i)permission"):
        run(op)
