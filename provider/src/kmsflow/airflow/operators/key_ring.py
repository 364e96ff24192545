"""Create a Cloud KMS key ring (idempotent)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from kmsflow.airflow.operators.base import AUDIT_FIELDS, KmsBaseOperator, airflow_errors


class CreateKeyRingOperator(KmsBaseOperator):
    """Make sure the key ring ``{location}/keyRings/{key_ring_id}`` exists.

    Key rings cannot be deleted or changed in Cloud KMS, so "exists" is the whole desired state: an
    existing ring is success without a write (a caller with only ``cloudkms.keyRings.get`` passes).

    :param location: ``projects/P/locations/L``.
    :param key_ring_id: the ring's id.

    XCom: ``{"name": ring name, "created": bool}``.
    """

    template_fields: Sequence[str] = ("location", "key_ring_id", *AUDIT_FIELDS)

    def __init__(self, *, location: str, key_ring_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.location = location
        self.key_ring_id = key_ring_id

    def execute(self, context: Context) -> dict[str, Any]:
        self.console_resource = f"{self.location}/keyRings/{self.key_ring_id}"
        with airflow_errors():
            ring, created = self.hook.ensure_key_ring(self.location, self.key_ring_id)
        self.log.info("Key ring %s %s", ring.name, "created" if created else "already exists")
        if created:
            self.audit(context, "create-key-ring", ring.name)
        return {"name": ring.name, "created": created}
