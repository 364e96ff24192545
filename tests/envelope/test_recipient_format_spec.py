"""docs/FORMAT.md §12 is sufficient: open recipient envelopes with only ``cryptography``, Tink and
google-cloud-kms, running the "A recipient reader" block exactly as the document prints it (with the
§6 reader's functions, which ``test_format_spec`` runs too). Nothing from kmsflow is used to read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag

from .conftest import write_random
from .recipients import ALGORITHMS, make_recipient_key, public_key
from .test_format_spec import ROOT, check_manifest, decrypt_file, plain_kms_client, read_record


def recipient_reader_from_the_doc() -> Any:
    doc = (ROOT / "docs" / "FORMAT.md").read_text()
    code = doc.split("**A recipient reader**", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {
        "read_record": read_record,
        "check_manifest": check_manifest,
        "decrypt_file": decrypt_file,
    }
    exec(compile(code, "docs/FORMAT.md (recipient reader)", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def keys(emulator: Any) -> dict[str, str]:
    client = emulator.client()
    return {algorithm: make_recipient_key(client, algorithm) for algorithm in ALGORITHMS}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_recipient_envelopes_decrypt_by_the_spec(
    emulator: Any, keys: dict[str, str], algorithm: str, tmp_path: Path
) -> None:
    from kmsflow.envelope.encrypt import encrypt_for  # producer only

    files = {
        "w/layer-0.bin": write_random(tmp_path / "ds/w/layer-0.bin", 1_100_000, seed=4),
        "empty": write_random(tmp_path / "ds/empty", 0),
    }
    recipient = public_key(emulator.client(), keys[algorithm])
    encrypt_for(recipient, str(tmp_path / "ds"), str(tmp_path / "enc"))
    encrypt_for(recipient, str(tmp_path / "ds/w/layer-0.bin"), str(tmp_path / "one.enc"))
    reader = recipient_reader_from_the_doc()
    kms = plain_kms_client(emulator.endpoint)
    reader["independent_decrypt_recipient"](kms, str(tmp_path / "enc"), str(tmp_path / "out"))
    assert {rel: (tmp_path / "out" / rel).read_bytes() for rel in files} == files
    reader["independent_decrypt_recipient"](kms, str(tmp_path / "one.enc"), str(tmp_path / "one.out"))
    assert (tmp_path / "one.out").read_bytes() == files["w/layer-0.bin"]


def test_the_spec_reader_refuses_an_edited_wrap_kind(
    emulator: Any, keys: dict[str, str], tmp_path: Path
) -> None:
    """HKDF's info binds the kind: the doc's reader fails at GCM when the record's kind is edited."""
    import json

    from kmsflow.envelope.encrypt import encrypt_for

    write_random(tmp_path / "in", 10)
    encrypt_for(
        public_key(emulator.client(), keys["RSA_DECRYPT_OAEP_3072_SHA256"]),
        str(tmp_path / "in"),
        str(tmp_path / "enc"),
    )
    record, _ = read_record(str(tmp_path / "enc"))
    record["key"]["wrap"] = "rsa-oaep-sha512"
    with pytest.raises(InvalidTag):
        recipient_reader_from_the_doc()["recipient_unwrap"](plain_kms_client(emulator.endpoint), record)
    assert json.loads((tmp_path / "enc.kmsflow.json").read_text())["key"]["wrap"] == "rsa-oaep-sha256"
