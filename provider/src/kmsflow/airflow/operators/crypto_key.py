"""Create or converge a Cloud KMS crypto key (idempotent, immutable fields guarded)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Context

from kmsflow.airflow.operators._values import as_datetime, as_duration, as_labels
from kmsflow.airflow.operators.base import AUDIT_FIELDS, KmsBaseOperator, airflow_errors


class CreateCryptoKeyOperator(KmsBaseOperator):
    """Make the crypto key ``{key_ring}/cryptoKeys/{key_id}`` exist with the given settings.

    Re-running is safe: an existing key that already matches is success with no write; mutable
    differences (rotation schedule, labels, algorithm of new versions) are updated in place; a
    difference in a field KMS cannot change after creation (purpose, protection level, destroy
    scheduled duration) fails the task at once, naming the field — kmsflow never deletes a key to
    "recreate" it, because every artifact wrapped under it would become undecryptable.

    :param key_ring: the key ring name ``projects/P/locations/L/keyRings/R``.
    :param key_id: the key's id.
    :param rotation_period: automatic rotation period (timedelta, seconds, or ``"90d"``); None: none.
    :param next_rotation_time: first automatic rotation (datetime or ISO string); None: now + period.
    :param destroy_scheduled_duration: how long DESTROY_SCHEDULED lasts; None: not managed.
    :param labels: the key's labels; None: not managed.

    XCom: ``{"name", "primary", "primary_state", "changes": [...]}`` — ``changes`` is ``["created"]``,
    the updated fields, or empty when nothing changed.
    """

    template_fields: Sequence[str] = (
        "key_ring",
        "key_id",
        "purpose",
        "algorithm",
        "protection_level",
        "rotation_period",
        "next_rotation_time",
        "destroy_scheduled_duration",
        "labels",
        *AUDIT_FIELDS,
    )

    def __init__(
        self,
        *,
        key_ring: str,
        key_id: str,
        purpose: str = "ENCRYPT_DECRYPT",
        algorithm: str = "GOOGLE_SYMMETRIC_ENCRYPTION",
        protection_level: str = "SOFTWARE",
        rotation_period: timedelta | float | str | None = None,
        next_rotation_time: datetime | str | None = None,
        destroy_scheduled_duration: timedelta | float | str | None = None,
        labels: Mapping[str, str] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.key_ring = key_ring
        self.key_id = key_id
        self.purpose = purpose
        self.algorithm = algorithm
        self.protection_level = protection_level
        self.rotation_period = rotation_period
        self.next_rotation_time = next_rotation_time
        self.destroy_scheduled_duration = destroy_scheduled_duration
        self.labels = labels

    def execute(self, context: Context) -> dict[str, Any]:
        self.console_resource = f"{self.key_ring}/cryptoKeys/{self.key_id}"
        with airflow_errors():
            key, changes = self.hook.ensure_crypto_key(
                self.key_ring,
                self.key_id,
                purpose=self.purpose,
                algorithm=self.algorithm,
                protection_level=self.protection_level,
                rotation_period=as_duration(self.rotation_period, "rotation_period"),
                next_rotation_time=as_datetime(self.next_rotation_time, "next_rotation_time"),
                destroy_scheduled_duration=as_duration(
                    self.destroy_scheduled_duration, "destroy_scheduled_duration"
                ),
                labels=as_labels(self.labels),
            )
        if changes:
            self.log.info("Crypto key %s: %s", key.name, ", ".join(changes))
            action = "create-crypto-key" if "created" in changes else "update-crypto-key"
            self.audit(context, action, key.name, {"changes": list(changes)})
        else:
            self.log.info("Crypto key %s already as wanted; nothing changed", key.name)
        return {
            "name": key.name,
            "primary": key.primary.name or None,
            "primary_state": key.primary.state.name if key.primary.name else None,
            "changes": list(changes),
        }
