"""docs/FORMAT.md is sufficient: decrypt kmsflow envelopes with ONLY Tink's public API and the
google-cloud-kms client (plus the standard library), following the document step by step.

Nothing from ``kmsflow`` is imported by the reader below; kmsflow is used only to produce the
envelopes. The reader is the same code as the worked example in docs/FORMAT.md.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import google_crc32c
import grpc
import pytest
import tink
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import (
    KeyManagementServiceGrpcTransport,
)
from tink import secret_key_access, streaming_aead

from .conftest import write_random

ROOT = Path(__file__).resolve().parents[2]


# ---- the independent reader (mirrors the worked example in docs/FORMAT.md) --------------------


def read_record(path: str) -> tuple[dict[str, Any], str]:
    """FORMAT.md §1: the record of a dataset directory or of a single file."""
    if os.path.isdir(path):
        with open(os.path.join(path, "_kmsflow", "envelope.json"), "rb") as f:
            return json.load(f), path
    with open(path + ".kmsflow.json", "rb") as f:
        return json.load(f), path


def unwrap(kms: kms_v1.KeyManagementServiceClient, record: dict[str, Any]) -> streaming_aead.StreamingAead:
    """FORMAT.md §3: one KMS Decrypt, then Tink's binary keyset parser."""
    assert record["format"] == "kmsflow.envelope" and record["version"] == 1
    eid = record["envelope_id"].encode("ascii")
    response = kms.decrypt(
        request={
            "name": record["key"]["crypto_key"],
            "ciphertext": base64.b64decode(record["key"]["wrapped_keyset"]),
            "additional_authenticated_data": b"kmsflow/v1\x00keyset\x00" + eid,
        }
    )
    streaming_aead.register()
    handle = tink.proto_keyset_format.parse(response.plaintext, secret_key_access.TOKEN)
    return handle.primitive(streaming_aead.StreamingAead)


def check_manifest(saead: streaming_aead.StreamingAead, record: dict[str, Any]) -> None:
    """FORMAT.md §4: the sealed manifest equals the record minus manifest and wrapped keyset."""
    aad = b"kmsflow/v1\x00manifest\x00" + record["envelope_id"].encode("ascii")
    sealed = io.BytesIO(base64.b64decode(record["manifest"]))
    with saead.new_decrypting_stream(sealed, aad) as dec:
        manifest = json.loads(dec.read())
    expected = {k: v for k, v in record.items() if k != "manifest"}
    expected["key"] = {
        k: v for k, v in record["key"].items() if k not in ("wrapped_keyset", "encapsulated_key")
    }
    if manifest != expected:
        raise ValueError("record does not match its manifest")


def decrypt_file(
    saead: streaming_aead.StreamingAead, record: dict[str, Any], root: str, entry: dict[str, Any], out: str
) -> None:
    """FORMAT.md §5: one Tink stream per file, AAD binding envelope id and relative path."""
    rel = entry["path"]
    src = os.path.join(root, *rel.split("/")) if rel else root
    aad = b"kmsflow/v1\x00data\x00" + record["envelope_id"].encode("ascii") + b"\x00" + rel.encode("utf-8")
    with open(src, "rb") as f:
        ciphertext = f.read()
    if (
        len(ciphertext) != entry["ciphertext_size"]
        or base64.b64encode(google_crc32c.value(ciphertext).to_bytes(4, "big")).decode()
        != entry["ciphertext_crc32c"]
    ):
        raise ValueError(f"{rel}: ciphertext size or CRC32C mismatch")
    with saead.new_decrypting_stream(io.BytesIO(ciphertext), aad) as dec:
        plaintext = dec.read()  # a real reader streams to a temp file and renames at the end
    if len(plaintext) != entry["size"]:
        raise ValueError(f"{rel}: plaintext size mismatch")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "wb") as f:
        f.write(plaintext)


def independent_decrypt(kms: kms_v1.KeyManagementServiceClient, src: str, dst: str) -> None:
    record, root = read_record(src)
    saead = unwrap(kms, record)
    check_manifest(saead, record)
    for entry in record["files"]:
        out = os.path.join(dst, *entry["path"].split("/")) if record["kind"] == "dataset" else dst
        decrypt_file(saead, record, root, entry, out)


def plain_kms_client(endpoint: str) -> kms_v1.KeyManagementServiceClient:
    """google-cloud-kms pointed at the emulator (for Cloud KMS: ``KeyManagementServiceClient()``)."""
    transport = KeyManagementServiceGrpcTransport(
        channel=grpc.insecure_channel(endpoint), credentials=AnonymousCredentials()
    )
    return kms_v1.KeyManagementServiceClient(
        transport=transport, client_options=ClientOptions(api_endpoint=endpoint)
    )


# ---- the tests ---------------------------------------------------------------------------------


def test_file_envelope_decrypts_by_the_spec(emulator: Any, key: str, tmp_path: Path) -> None:
    from kmsflow import envelope  # producer only

    data = write_random(tmp_path / "model.bin", 3 * (1 << 20) + 17)
    envelope.encrypt(emulator.client(), key, str(tmp_path / "model.bin"), str(tmp_path / "model.enc"))
    independent_decrypt(
        plain_kms_client(emulator.endpoint), str(tmp_path / "model.enc"), str(tmp_path / "out.bin")
    )
    assert (tmp_path / "out.bin").read_bytes() == data


def test_dataset_envelope_decrypts_by_the_spec(emulator: Any, key: str, tmp_path: Path) -> None:
    from kmsflow import envelope

    files = {
        "train/part-0.parquet": write_random(tmp_path / "ds/train/part-0.parquet", 70_000, seed=1),
        "train/part-1.parquet": write_random(tmp_path / "ds/train/part-1.parquet", 0, seed=2),
        "meta.json": b'{"rows": 3}\n',
    }
    (tmp_path / "ds/meta.json").write_bytes(files["meta.json"])
    envelope.encrypt(emulator.client(), key, str(tmp_path / "ds"), str(tmp_path / "enc"))
    independent_decrypt(plain_kms_client(emulator.endpoint), str(tmp_path / "enc"), str(tmp_path / "out"))
    assert {rel: (tmp_path / "out" / rel).read_bytes() for rel in files} == files


def test_spec_reader_rejects_a_renamed_shard(emulator: Any, key: str, tmp_path: Path) -> None:
    from kmsflow import envelope

    write_random(tmp_path / "ds/a", 100)
    write_random(tmp_path / "ds/b", 100, seed=1)
    envelope.encrypt(emulator.client(), key, str(tmp_path / "ds"), str(tmp_path / "enc"))
    a, b = tmp_path / "enc/a", tmp_path / "enc/b"
    a_bytes = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(a_bytes)
    record_path = tmp_path / "enc/_kmsflow/envelope.json"
    record = json.loads(record_path.read_text())
    kms = plain_kms_client(emulator.endpoint)
    saead = unwrap(kms, record)
    entry = dict(
        record["files"][0],
        ciphertext_size=len(swapped := a.read_bytes()),
        ciphertext_crc32c=base64.b64encode(google_crc32c.value(swapped).to_bytes(4, "big")).decode(),
    )
    with pytest.raises(tink.TinkError):  # even with digests forged to match, the AAD binds the path
        decrypt_file(saead, record, str(tmp_path / "enc"), entry, str(tmp_path / "out"))


def test_format_doc_embeds_this_reader() -> None:
    doc = (ROOT / "docs" / "FORMAT.md").read_text()
    for needle in (
        'b"kmsflow/v1\\x00keyset\\x00" + eid',
        'b"kmsflow/v1\\x00manifest\\x00"',
        'b"kmsflow/v1\\x00data\\x00"',
        "tink.proto_keyset_format.parse(response.plaintext, secret_key_access.TOKEN)",
    ):
        assert needle in doc, needle


# ---- the independent writer: run exactly as docs/FORMAT.md §6 prints it -----------------------


def writer_from_the_doc() -> Any:
    """``independent_encrypt`` compiled from the code block after "**A writer**" in FORMAT.md."""
    doc = (ROOT / "docs" / "FORMAT.md").read_text()
    code = doc.split("**A writer**", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/FORMAT.md (writer)", "exec"), namespace)
    return namespace["independent_encrypt"]


def test_an_envelope_written_by_the_spec_is_read_by_kmsflow(emulator: Any, key: str, tmp_path: Path) -> None:
    from kmsflow import envelope
    from kmsflow.inventory import scan

    files = {
        "weights/layer-0.bin": write_random(tmp_path / "src/weights/layer-0.bin", 1_100_000, seed=3),
        "empty": b"",
        "métriques.json": b'{"f1": 0.9}',
    }
    for rel, data in files.items():
        (tmp_path / "src" / rel).write_bytes(data)
    writer_from_the_doc()(
        plain_kms_client(emulator.endpoint), key, str(tmp_path / "src"), str(tmp_path / "enc")
    )

    record = envelope.verify(emulator.client(), str(tmp_path / "enc"))
    envelope.decrypt(emulator.client(), str(tmp_path / "enc"), str(tmp_path / "out"))
    assert {rel: (tmp_path / "out" / rel).read_bytes() for rel in files} == files
    inv = scan([str(tmp_path / "enc")])
    assert inv.complete and [r.envelope_id for r in inv.envelopes] == [record.envelope_id]
