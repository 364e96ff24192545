"""Every kmsflow operator in a DAG: templates render, the DAG serializes, the console link is kept."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG

from kmsflow.airflow.links import KmsConsoleLink, console_url
from kmsflow.airflow.operators import (
    CreateCryptoKeyOperator,
    CreateKeyRingOperator,
    DestroyKeyVersionOperator,
    DisableKeyVersionOperator,
    EnableKeyVersionOperator,
    EncryptSecretOperator,
    GrantKmsRoleOperator,
    KmsIamDriftOperator,
    RestoreKeyVersionOperator,
    RevokeKmsRoleOperator,
    RotateKeyOperator,
    SetKmsIamOperator,
    SetPrimaryVersionOperator,
)
from kmsflow.airflow.sensors import KeyVersionStateSensor

LOC = "projects/p/locations/europe-west1"
KEY = "{{ params.ring }}/cryptoKeys/{{ params.key }}"
VERSION = KEY + "/cryptoKeyVersions/2"
ROLE = "roles/cloudkms.cryptoKeyDecrypter"


def build() -> DAG:
    with DAG(
        "kmsflow_all_operators",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        params={"ring": f"{LOC}/keyRings/r", "key": "k", "member": "user:a@example.com"},
    ) as dag:
        CreateKeyRingOperator(task_id="ring", location=LOC, key_ring_id="r")
        CreateCryptoKeyOperator(task_id="key", key_ring="{{ params.ring }}", key_id="{{ params.key }}")
        RotateKeyOperator(task_id="rotate", key_name=KEY)
        SetPrimaryVersionOperator(task_id="primary", key_name=KEY, version_id="2")
        for cls in (
            EnableKeyVersionOperator,
            DisableKeyVersionOperator,
            DestroyKeyVersionOperator,
            RestoreKeyVersionOperator,
        ):
            cls(task_id=cls.__name__, version_name=VERSION, reason="ticket {{ params.key }}")
        GrantKmsRoleOperator(task_id="grant", resource=KEY, role=ROLE, members=["{{ params.member }}"])
        RevokeKmsRoleOperator(task_id="revoke", resource=KEY, role=ROLE, members=["{{ params.member }}"])
        SetKmsIamOperator(task_id="set_iam", resource=KEY, bindings={ROLE: ["{{ params.member }}"]})
        KmsIamDriftOperator(task_id="drift", resource=KEY, bindings={ROLE: ["{{ params.member }}"]})
        EncryptSecretOperator(task_id="encrypt", key_name=KEY, source="variable:API_TOKEN")
        KeyVersionStateSensor(task_id="wait", version_name=VERSION, target_state="DESTROYED")
    return dag


def test_templated_fields_render() -> None:
    dag = build()
    context: dict[str, Any] = {"params": dag.params.dump()}
    grant = dag.get_task("grant")
    grant.render_template_fields(context)
    assert grant.resource == f"{LOC}/keyRings/r/cryptoKeys/k"
    assert grant.members == ["user:a@example.com"]
    set_iam = dag.get_task("set_iam")
    set_iam.render_template_fields(context)
    assert set_iam.bindings == {ROLE: ["user:a@example.com"]}
    wait = dag.get_task("wait")
    wait.render_template_fields(context)
    assert wait.version_name == f"{LOC}/keyRings/r/cryptoKeys/k/cryptoKeyVersions/2"


def test_dag_serializes_with_the_console_link() -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    dag = build()
    restored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    assert set(restored.task_ids) == set(dag.task_ids)
    for task_id in dag.task_ids:
        links = restored.get_task(task_id).operator_extra_link_dict
        assert KmsConsoleLink.name in links, task_id


def test_console_url_shapes() -> None:
    key = f"{LOC}/keyRings/r/cryptoKeys/k"
    expected = "https://console.cloud.google.com/security/kms/key/manage/europe-west1/r/k?project=p"
    assert console_url(key) == expected
    assert console_url(f"{key}/cryptoKeyVersions/3") == expected
    assert console_url(f"{LOC}/keyRings/r") == (
        "https://console.cloud.google.com/security/kms/keyring/manage/europe-west1/r/key?project=p"
    )
    assert console_url("not-a-kms-name") == ""
