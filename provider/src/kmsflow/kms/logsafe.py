"""Keep KMS payloads (plaintext, data keys) out of DEBUG logs of ``google-cloud-kms``.

With DEBUG enabled on its loggers, ``google-cloud-kms``'s gRPC transports attach every request and
response payload to the log record (``extra={"request": {"payload": ...}}``): an Encrypt request
carries the plaintext (base64) and a Decrypt response the unwrapped key. Airflow task logs (and any
JSON log formatter) may render such extras, which would break invariant 4 (plaintext never reaches
logs). This filter replaces the payloads with a marker on those loggers, keeping the method names and
metadata useful for debugging. ``kmsflow.kms.client`` installs it on import, so the CLI, the library
and the Airflow hooks are all covered.
"""

from __future__ import annotations

import logging

_TRANSPORTS = "google.cloud.kms_v1.services.key_management_service.transports"
KMS_PAYLOAD_LOGGERS = (f"{_TRANSPORTS}.grpc", f"{_TRANSPORTS}.grpc_asyncio", f"{_TRANSPORTS}.rest")
REDACTED = "<redacted by kmsflow>"


class RedactKmsPayloads(logging.Filter):
    """Blank the ``payload`` of ``request``/``response`` extras; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for attr in ("request", "response", "httpRequest", "httpResponse"):
            value = record.__dict__.get(attr)
            if isinstance(value, dict) and "payload" in value:
                record.__dict__[attr] = {**value, "payload": REDACTED}
        return True


def install() -> None:
    """Attach the filter to the KMS transport loggers (idempotent)."""
    for name in KMS_PAYLOAD_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKmsPayloads) for f in logger.filters):
            logger.addFilter(RedactKmsPayloads())
