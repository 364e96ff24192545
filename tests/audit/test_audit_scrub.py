"""Audit events never carry bytes, secrets or key material (invariant 4)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from kmsflow.audit import REDACTED, AuditLog, looks_like_key_material, read_events, scrub

KEY = "projects/kmsflow-test/locations/us-central1/keyRings/ring-1/cryptoKeys/data"


def test_names_ids_and_counts_pass_through() -> None:
    evidence = {
        "scan_id": os.urandom(16).hex(),
        "resource": KEY + "/cryptoKeyVersions/12",
        "roots": ["/tmp/pytest-of-root/pytest-1/root", "gs://bucket/models/v1"],
        "references": 0,
        "plaintext_bytes": 1000,
        "complete": True,
        "ratio": 0.5,
        "state_before": "ENABLED",
    }
    assert scrub(evidence) == evidence


def test_bytes_and_secret_looking_values_are_redacted() -> None:
    blob = base64.b64encode(os.urandom(48)).decode()
    urlsafe = base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
    cleaned = scrub(
        {
            "raw": b"\x00secret",
            "buf": bytearray(b"k"),
            "wrapped_keyset": "short",
            "nested": {"plaintext": "hello", "list": [blob, "fine"]},
            "note": f"the key is {urlsafe}",
            "plaintext_bytes": 12,
        }
    )
    assert cleaned == {
        "raw": REDACTED,
        "buf": REDACTED,
        "wrapped_keyset": REDACTED,
        "nested": {"plaintext": REDACTED, "list": [REDACTED, "fine"]},
        "note": REDACTED,
        "plaintext_bytes": 12,
    }
    assert looks_like_key_material(blob) and not looks_like_key_material(KEY)


def test_the_log_never_writes_what_looks_like_key_material(tmp_path: Path) -> None:
    secret = os.urandom(32)
    encoded = base64.b64encode(secret).decode()
    log = AuditLog(str(tmp_path / "a.jsonl"), actor="a")
    log.append("disable", KEY, reason=f"oops {encoded}", evidence={"k": secret, "s": encoded})
    text = (tmp_path / "a.jsonl").read_text()
    assert encoded not in text and secret.hex() not in text
    [event] = read_events(str(tmp_path / "a.jsonl"))
    assert event.evidence == {"k": REDACTED, "s": REDACTED} and event.reason == REDACTED


def test_a_base64_blob_that_starts_with_a_slash_is_not_mistaken_for_a_path() -> None:
    # Found by the randomized test above: a key whose base64 began with "/" slipped through as a "path".
    secret = b"\xfc" + os.urandom(31)  # first 6 bits all ones: the base64 starts with "/"
    encoded = base64.b64encode(secret).decode()
    assert encoded.startswith("/")
    assert looks_like_key_material(encoded)
    assert scrub({"note": f"oops {encoded}"}) == {"note": REDACTED}
    assert not looks_like_key_material("/tmp/pytest-of-root/pytest-1/root")
