"""Who is acting: the identity recorded as ``actor`` in every audit event.

Order: an explicit actor; ``KMSFLOW_PRINCIPAL`` (the identity the emulator is told, and what
operators set in Airflow workers); the service account e-mail of the credentials in use; else
``"unknown"``. ADC is deliberately not probed here: on a laptop that would block on the metadata
server, and an audit line must never be the reason a destroy cannot be recorded.
"""

from __future__ import annotations

import os
from typing import Any

UNKNOWN = "unknown"


def resolve_actor(actor: str | None = None, *, credentials: Any = None) -> str:
    """The identity to record (see the module docstring for the order)."""
    if actor and actor.strip():
        return actor.strip()
    from kmsflow.kms.client import PRINCIPAL_ENV  # here: that module loads gRPC, not for reading a log

    env = os.environ.get(PRINCIPAL_ENV, "").strip()
    if env:
        return env
    email = getattr(credentials, "service_account_email", None)
    if isinstance(email, str) and email and email != "default":
        return f"serviceAccount:{email}"
    return UNKNOWN
