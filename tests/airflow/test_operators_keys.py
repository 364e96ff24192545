"""Key ring, crypto key and key version operators against the IAM-enforcing emulator."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from kmsflow.airflow.hooks import KmsHook
from kmsflow.airflow.links import KmsConsoleLink
from kmsflow.airflow.operators import (
    CreateCryptoKeyOperator,
    CreateKeyRingOperator,
    DestroyKeyVersionOperator,
    DisableKeyVersionOperator,
    EnableKeyVersionOperator,
    RestoreKeyVersionOperator,
    RotateKeyOperator,
    SetPrimaryVersionOperator,
)

INTRUDER = "user:mallory@example.com"


def run(op: Any) -> Any:
    return op.execute(context={})


def console_link(op: Any) -> str:
    return KmsConsoleLink().get_link(op, ti_key=None)  # type: ignore[arg-type]


def test_create_key_ring_is_idempotent_and_links_to_console(
    kms_conn: str, location: str, ring_id: str
) -> None:
    op = CreateKeyRingOperator(task_id="ring", location=location, key_ring_id=ring_id)
    assert run(op) == {"name": f"{location}/keyRings/{ring_id}", "created": True}
    assert run(op) == {"name": f"{location}/keyRings/{ring_id}", "created": False}
    assert console_link(op) == (
        "https://console.cloud.google.com/security/kms/keyring/manage/us-central1/"
        f"{ring_id}/key?project=kmsflow-test"
    )


def test_key_ring_creation_refused_for_principal_without_rights(
    iam_emulator: Any, location: str, ring_id: str, set_conn: Callable[..., str]
) -> None:
    set_conn("kmsflow_intruder", endpoint=iam_emulator.endpoint, principal=INTRUDER)
    op = CreateKeyRingOperator(
        task_id="ring", location=location, key_ring_id=ring_id, kmsflow_conn_id="kmsflow_intruder"
    )
    with pytest.raises(AirflowFailException, match=r"(?i)permission"):
        run(op)


def test_create_crypto_key_create_noop_update_and_immutable(ring: str) -> None:
    def op(**kwargs: Any) -> CreateCryptoKeyOperator:
        settings = {"rotation_period": "30d", "labels": {"team": "ml"}, **kwargs}
        return CreateCryptoKeyOperator(task_id="key", key_ring=ring, key_id="k", **settings)

    first = op()
    created = run(first)
    name = f"{ring}/cryptoKeys/k"
    assert created == {
        "name": name,
        "primary": f"{name}/cryptoKeyVersions/1",
        "primary_state": "ENABLED",
        "changes": ["created"],
    }
    assert console_link(first).startswith(
        "https://console.cloud.google.com/security/kms/key/manage/us-central1/"
    )
    assert console_link(first).endswith(f"/{ring.rsplit('/', 1)[1]}/k?project=kmsflow-test")

    assert run(op())["changes"] == []  # same settings: success, nothing written

    updated = run(op(rotation_period=timedelta(days=60), labels='{"team": "ml", "tier": "gold"}'))
    assert sorted(updated["changes"]) == ["labels", "rotation_period"]

    with pytest.raises(AirflowFailException, match="protection_level"):
        run(op(rotation_period="60d", labels={"team": "ml", "tier": "gold"}, protection_level="HSM"))


def test_create_crypto_key_rejects_bad_values_clearly(ring: str) -> None:
    with pytest.raises(AirflowFailException, match="algorithm"):
        run(CreateCryptoKeyOperator(task_id="key", key_ring=ring, key_id="k", algorithm="ROT13"))
    with pytest.raises(AirflowFailException, match="rotation_period"):
        run(CreateCryptoKeyOperator(task_id="key", key_ring=ring, key_id="k", rotation_period="soon"))


def test_rotate_set_primary_and_version_states(hook: KmsHook, key: str) -> None:
    v1 = f"{key}/cryptoKeyVersions/1"
    rotated = run(RotateKeyOperator(task_id="rotate", key_name=key))
    v2 = rotated["name"]
    assert rotated == {"key": key, "name": f"{key}/cryptoKeyVersions/2", "state": "ENABLED"}
    assert hook.get_key(key).primary.name == v2

    # The primary is guarded: neither disabled nor destroyed, and nothing is written.
    with pytest.raises(AirflowFailException, match="primary"):
        run(DisableKeyVersionOperator(task_id="guarded", version_name=v2))
    with pytest.raises(AirflowFailException, match="primary"):
        run(DestroyKeyVersionOperator(task_id="guarded", version_name=v2, confirm=True))
    assert hook.get_crypto_key_version(v2).state.name == "ENABLED"

    assert run(DisableKeyVersionOperator(task_id="d", version_name=v1)) == {"name": v1, "state": "DISABLED"}
    assert run(DisableKeyVersionOperator(task_id="d", version_name=v1))["state"] == "DISABLED"  # re-run
    with pytest.raises(AirflowFailException):  # a DISABLED version cannot become primary
        run(SetPrimaryVersionOperator(task_id="p", key_name=key, version_id="1"))
    assert run(EnableKeyVersionOperator(task_id="e", version_name=v1)) == {"name": v1, "state": "ENABLED"}
    primary = run(SetPrimaryVersionOperator(task_id="p", key_name=key, version_id=v1))
    assert primary == {"key": key, "name": v1, "state": "ENABLED"}

    with pytest.raises(AirflowFailException, match="confirm=True"):  # no reference scan here
        run(DestroyKeyVersionOperator(task_id="x", version_name=v2))
    assert hook.get_crypto_key_version(v2).state.name == "ENABLED"
    destroy = DestroyKeyVersionOperator(task_id="x", version_name=v2, confirm=True)
    assert run(destroy) == {"name": v2, "state": "DESTROY_SCHEDULED"}
    assert run(destroy)["state"] == "DESTROY_SCHEDULED"
    assert run(RestoreKeyVersionOperator(task_id="r", version_name=v2)) == {"name": v2, "state": "DISABLED"}
    restored = run(RestoreKeyVersionOperator(task_id="r", version_name=v2, enable=True))
    assert restored == {"name": v2, "state": "ENABLED"}


def test_version_operators_refuse_a_key_name_and_foreign_versions(key: str) -> None:
    with pytest.raises(AirflowFailException, match="CryptoKeyVersion"):
        run(DisableKeyVersionOperator(task_id="d", version_name=key))
    with pytest.raises(AirflowFailException, match="does not belong"):
        run(
            SetPrimaryVersionOperator(
                task_id="p", key_name=key, version_id=f"{key}-other/cryptoKeyVersions/1"
            )
        )


def test_version_operators_refused_for_principal_without_rights(
    key: str, iam_emulator: Any, set_conn: Callable[..., str]
) -> None:
    set_conn("kmsflow_intruder", endpoint=iam_emulator.endpoint, principal=INTRUDER)
    with pytest.raises(AirflowFailException, match=r"(?i)permission"):
        run(RotateKeyOperator(task_id="rotate", key_name=key, kmsflow_conn_id="kmsflow_intruder"))


def test_templated_fields_are_declared_where_users_expect_them() -> None:
    audit = {"audit_log", "reason"}
    assert set(CreateKeyRingOperator.template_fields) == {"location", "key_ring_id", *audit}
    assert {"key_ring", "key_id", "labels", "rotation_period", *audit} <= set(
        CreateCryptoKeyOperator.template_fields
    )
    assert set(RotateKeyOperator.template_fields) == {"key_name", *audit}
    assert set(SetPrimaryVersionOperator.template_fields) == {"key_name", "version_id", *audit}
    for op in (
        EnableKeyVersionOperator,
        DisableKeyVersionOperator,
        DestroyKeyVersionOperator,
        RestoreKeyVersionOperator,
    ):
        assert set(op.template_fields) == {"version_name", *audit}
