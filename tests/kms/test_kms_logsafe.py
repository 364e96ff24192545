"""Invariant 4 in the core: google-cloud-kms DEBUG records never carry KMS payloads.

google-cloud-kms's gRPC transport attaches Encrypt request and Decrypt response payloads (plaintext,
unwrapped data keys) to DEBUG records; ``kmsflow.kms.logsafe`` blanks them. The ``google`` logger
does not propagate to the root logger, so the test listens on the transport's own logger.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kmsflow.kms import crypto
from kmsflow.kms.logsafe import KMS_PAYLOAD_LOGGERS, REDACTED

LOCATION = "projects/kmsflow-test/locations/us-central1"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def transport_debug_records() -> Iterator[list[logging.LogRecord]]:
    logger = logging.getLogger(KMS_PAYLOAD_LOGGERS[0])
    handler, level = _Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_debug_logs_of_the_kms_client_carry_no_plaintext_or_data_key(
    emulator: Any, transport_debug_records: list[logging.LogRecord]
) -> None:
    client = emulator.client()
    ring = client.create_key_ring(
        request={"parent": LOCATION, "key_ring_id": f"log-{uuid.uuid4().hex[:8]}", "key_ring": {}}
    )
    key = client.create_crypto_key(
        request={"parent": ring.name, "crypto_key_id": "k", "crypto_key": {"purpose": 1}}
    )
    secret = b"top secret data key bytes"
    wrapped = crypto.encrypt(client, key.name, secret)
    assert crypto.decrypt(client, key.name, wrapped.ciphertext) == secret
    text = "".join(f"{r.getMessage()} {r.__dict__}" for r in transport_debug_records)
    assert "Encrypt" in text and REDACTED in text  # payload-bearing records were emitted
    for needle in (secret.decode(), base64.b64encode(secret).decode()):
        assert needle not in text
