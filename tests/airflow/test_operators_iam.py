"""IAM operators: grant/revoke, authoritative role sets, drift reports and their repair."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from kmsflow.airflow.hooks import KmsHook
from kmsflow.airflow.operators import (
    GrantKmsRoleOperator,
    KmsIamDriftOperator,
    RevokeKmsRoleOperator,
    SetKmsIamOperator,
)
from kmsflow.kms.iam import DECRYPTER_ROLE, ENCRYPTER_ROLE, VIEWER_ROLE

PIPELINE = "serviceAccount:pipeline@proj.iam.gserviceaccount.com"
INFERENCE = "serviceAccount:inference@proj.iam.gserviceaccount.com"
ROGUE = "user:rogue@example.com"
INTRUDER = "user:mallory@example.com"


def run(op: Any) -> Any:
    return op.execute(context={})


def test_grant_and_revoke_change_once_then_are_noops(hook: KmsHook, key: str) -> None:
    grant = GrantKmsRoleOperator(task_id="g", resource=key, role=ENCRYPTER_ROLE, members=[PIPELINE])
    assert run(grant) == {"resource": key, "role": ENCRYPTER_ROLE, "members": [PIPELINE], "changed": True}
    assert run(grant)["changed"] is False
    assert hook.iam_drift(key, {ENCRYPTER_ROLE: [PIPELINE]}) == []

    revoke = RevokeKmsRoleOperator(task_id="r", resource=key, role=ENCRYPTER_ROLE, members=PIPELINE)
    assert run(revoke)["changed"] is True
    assert run(revoke)["changed"] is False
    assert hook.iam_drift(key, {ENCRYPTER_ROLE: []}) == []


def test_members_and_roles_are_validated_before_any_call(key: str) -> None:
    with pytest.raises(AirflowFailException, match="public"):
        run(GrantKmsRoleOperator(task_id="g", resource=key, role=DECRYPTER_ROLE, members=["allUsers"]))
    with pytest.raises(AirflowFailException, match="unknown role"):
        run(GrantKmsRoleOperator(task_id="g", resource=key, role="roles/owner", members=[PIPELINE]))
    with pytest.raises(AirflowFailException, match="not an IAM member"):
        run(SetKmsIamOperator(task_id="s", resource=key, bindings={DECRYPTER_ROLE: ["bob"]}))


def test_iam_refused_for_principal_without_rights(
    key: str, iam_emulator: Any, set_conn: Callable[..., str]
) -> None:
    set_conn("kmsflow_intruder", endpoint=iam_emulator.endpoint, principal=INTRUDER)
    op = GrantKmsRoleOperator(
        task_id="g",
        resource=key,
        role=DECRYPTER_ROLE,
        members=[INTRUDER],
        kmsflow_conn_id="kmsflow_intruder",
    )
    with pytest.raises(AirflowFailException, match=r"(?i)permission"):
        run(op)


def test_drift_behind_kmsflows_back_is_reported_then_repaired(hook: KmsHook, key: str) -> None:
    wanted = {ENCRYPTER_ROLE: [PIPELINE], DECRYPTER_ROLE: [INFERENCE]}
    applied = run(SetKmsIamOperator(task_id="set", resource=key, bindings=wanted))
    assert applied["changed"] is True
    assert run(SetKmsIamOperator(task_id="set", resource=key, bindings=wanted)) == {
        "resource": key,
        "changed": False,
        "corrected": [],
    }
    drift_op = KmsIamDriftOperator(task_id="drift", resource=key, bindings=wanted)
    assert run(drift_op) == {"resource": key, "drifted": False, "drift": []}

    # Someone edits IAM directly: a rogue decrypter appears, the pipeline loses encrypt, and an
    # unrelated role is granted (not kmsflow's to manage).
    hook.grant(key, DECRYPTER_ROLE, [ROGUE])
    hook.revoke(key, ENCRYPTER_ROLE, [PIPELINE])
    hook.grant(key, VIEWER_ROLE, [ROGUE])

    report = run(drift_op)
    assert report["drifted"] is True
    assert report["drift"] == [
        {"role": DECRYPTER_ROLE, "missing": [], "unexpected": [ROGUE]},
        {"role": ENCRYPTER_ROLE, "missing": [PIPELINE], "unexpected": []},
    ]
    with pytest.raises(AirflowFailException, match="IAM drift"):
        run(KmsIamDriftOperator(task_id="drift", resource=key, bindings=wanted, fail_on_drift=True))

    repaired = run(SetKmsIamOperator(task_id="set", resource=key, bindings=wanted))
    assert repaired["changed"] is True and repaired["corrected"] == report["drift"]
    assert run(drift_op)["drifted"] is False
    assert hook.iam_drift(key, {VIEWER_ROLE: [ROGUE]}) == []  # the unlisted role was left alone


def test_bindings_may_arrive_as_rendered_json(hook: KmsHook, key: str) -> None:
    op = SetKmsIamOperator(task_id="s", resource=key, bindings=f'{{"{DECRYPTER_ROLE}": ["{INFERENCE}"]}}')
    assert run(op)["changed"] is True
    assert hook.iam_drift(key, {DECRYPTER_ROLE: [INFERENCE]}) == []
    assert set(SetKmsIamOperator.template_fields) == {"resource", "bindings", "audit_log", "reason"}
    assert set(GrantKmsRoleOperator.template_fields) == {"resource", "role", "members", "audit_log", "reason"}
    assert set(KmsIamDriftOperator.template_fields) == {"resource", "bindings"}  # read only
