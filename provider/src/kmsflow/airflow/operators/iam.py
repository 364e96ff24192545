"""IAM on key rings and crypto keys: grant, revoke, authoritative role sets, drift reports.

Roles and members are validated before any call (``kmsflow.kms.iam.role_problem`` /
``member_problem``): a typo or a public member (``allUsers``) fails the task without touching the
policy. Every write is an etag-guarded read-modify-write in the core; when the policy already
matches nothing is written, so re-runs are no-ops.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from kmsflow.airflow.operators._values import as_bindings, as_members
from kmsflow.airflow.operators.base import AUDIT_FIELDS, KmsBaseOperator, airflow_errors
from kmsflow.kms import iam


def _check(role: str, members: Iterable[str]) -> None:
    problems = [p for p in [iam.role_problem(role), *(iam.member_problem(m) for m in members)] if p]
    if problems:
        raise AirflowFailException("; ".join(problems))


class GrantKmsRoleOperator(KmsBaseOperator):
    """Add ``members`` to ``role`` on ``resource`` (a key ring or crypto key); others untouched.

    XCom: ``{"resource", "role", "members", "changed": bool}``.
    """

    template_fields: Sequence[str] = ("resource", "role", "members", *AUDIT_FIELDS)

    def __init__(self, *, resource: str, role: str, members: Iterable[str] | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resource = resource
        self.role = role
        self.members = members

    def _apply(self, members: list[str]) -> bool:
        return self.hook.grant(self.resource, self.role, members)

    def execute(self, context: Context) -> dict[str, Any]:
        self.console_resource = self.resource
        members = as_members(self.members)
        _check(self.role, members)
        with airflow_errors():
            changed = self._apply(members)
        verb = type(self).__name__.removesuffix("KmsRoleOperator").lower()
        self.log.info(
            "%s %s on %s for %s: %s",
            verb,
            self.role,
            self.resource,
            members,
            "changed" if changed else "no change",
        )
        if changed:
            self.audit(context, f"iam-{verb}", self.resource, {"role": self.role, "members": members})
        return {"resource": self.resource, "role": self.role, "members": members, "changed": changed}


class RevokeKmsRoleOperator(GrantKmsRoleOperator):
    """Remove ``members`` from ``role`` on ``resource``. XCom as for the grant."""

    def _apply(self, members: list[str]) -> bool:
        return self.hook.revoke(self.resource, self.role, members)


class SetKmsIamOperator(KmsBaseOperator):
    """Make each listed role hold exactly the listed members; roles not listed are left alone.

    Authoritative *for the listed roles only*, so kmsflow can own the KMS roles of a key without
    fighting other tooling over unrelated bindings. List a role with ``[]`` to empty it.

    :param bindings: ``{role: [members]}`` (or its JSON text, after templating).

    XCom: ``{"resource", "changed": bool, "corrected": [drift dicts]}``.
    """

    template_fields: Sequence[str] = ("resource", "bindings", *AUDIT_FIELDS)

    def __init__(self, *, resource: str, bindings: Mapping[str, Iterable[str]] | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resource = resource
        self.bindings = bindings

    def execute(self, context: Context) -> dict[str, Any]:
        self.console_resource = self.resource
        bindings = as_bindings(self.bindings)
        for role, members in bindings.items():
            _check(role, members)
        with airflow_errors():
            corrected = self.hook.set_role_members(self.resource, bindings)
        for d in corrected:
            self.log.info(
                "%s %s: added %s, removed %s", self.resource, d.role, list(d.missing), list(d.unexpected)
            )
        if corrected:
            self.audit(context, "iam-set", self.resource, {"corrected": [d.to_dict() for d in corrected]})
        else:
            self.log.info("IAM on %s already as wanted; nothing written", self.resource)
        return {
            "resource": self.resource,
            "changed": bool(corrected),
            "corrected": [d.to_dict() for d in corrected],
        }


class KmsIamDriftOperator(KmsBaseOperator):
    """Report how the listed roles on ``resource`` differ from ``bindings`` (read only).

    :param fail_on_drift: fail the task when drift is found (for alerting DAGs); default False, so
        the report can drive a downstream branch or an apply.

    XCom: ``{"resource", "drifted": bool, "drift": [{"role", "missing", "unexpected"}]}``.
    """

    template_fields: Sequence[str] = ("resource", "bindings")

    def __init__(
        self,
        *,
        resource: str,
        bindings: Mapping[str, Iterable[str]] | str,
        fail_on_drift: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.resource = resource
        self.bindings = bindings
        self.fail_on_drift = fail_on_drift

    def execute(self, context: Context) -> dict[str, Any]:
        self.console_resource = self.resource
        bindings = as_bindings(self.bindings)
        with airflow_errors():
            drift = self.hook.iam_drift(self.resource, bindings)
        for d in drift:
            self.log.warning(
                "IAM drift on %s %s: missing %s, unexpected %s",
                self.resource,
                d.role,
                list(d.missing),
                list(d.unexpected),
            )
        report = {"resource": self.resource, "drifted": bool(drift), "drift": [d.to_dict() for d in drift]}
        if drift and self.fail_on_drift:
            raise AirflowFailException(f"IAM drift on {self.resource}: {report['drift']}")
        if not drift:
            self.log.info("No IAM drift on %s", self.resource)
        return report
