"""EncryptedXComBackend against the IAM-enforcing emulator: round trip, what is stored, tamper and
swap, forged references, purge, plain values written before the backend, gs://, configuration."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.exceptions import AirflowFailException
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsflow.airflow import xcom
from kmsflow.airflow.xcom import EncryptedXComBackend, XComConfigError, XComMismatchError
from kmsflow.envelope import Envelope
from kmsflow.inventory import scan

MARKER = "PLAINTEXT-MARKER-7f3a91"
CTX: dict[str, Any] = {
    "dag_id": "d",
    "run_id": "manual__2026-12-07T17:00:00+00:00",
    "task_id": "t",
    "map_index": -1,
}


class Stored:
    """What the SDK hands ``deserialize_value`` (``XComResult``-like: ``.value``)."""

    def __init__(self, value: Any) -> None:
        self.value = value


@pytest.fixture
def xcom_root(tmp_path: Path, key: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The backend configured through the environment: ``key``, a local xcom_path, kmsflow_default."""
    root = tmp_path / "xcom"
    monkeypatch.setenv("KMSFLOW_XCOM_KEY", key)
    monkeypatch.setenv("KMSFLOW_XCOM_PATH", str(root))
    xcom._kms.cache_clear()
    yield root
    xcom._kms.cache_clear()


def push(value: Any, *, key: str = "return_value", **context: Any) -> dict[str, Any]:
    ref = EncryptedXComBackend.serialize_value(value, key=key, **{**CTX, **context})
    # What the metadata database stores: JSON. The round trip proves the reference is plain JSON.
    return dict(json.loads(json.dumps(ref)))


def pull(reference: Any) -> Any:
    return EncryptedXComBackend.deserialize_value(Stored(reference))


def all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def data_path(reference: dict[str, Any]) -> Path:
    return Path(reference["url"])


def test_round_trip_stores_no_plaintext(xcom_root: Path, key: str) -> None:
    value = {"prompt": MARKER, "scores": [0.25, 1.5], "pair": (1, 2), "n": None}
    ref = push(value)
    assert pull(ref) == value  # the tuple comes back a tuple: Airflow's serde ran on both sides

    assert ref["kmsflow_xcom"] == 1 and ref["crypto_key"] == key
    assert ref["crypto_key_version"] == f"{key}/cryptoKeyVersions/1"
    assert ref["context"] == {**CTX, "key": "return_value"}
    assert MARKER not in json.dumps(ref)
    stored = all_bytes(xcom_root)
    assert stored and MARKER.encode() not in stored
    # An ordinary kmsflow file envelope: the same record, inventory finds it under its root.
    envelope = Envelope.open(ref["url"])
    assert envelope.record.envelope_id == ref["envelope_id"] and envelope.record.kind == "file"
    found = scan([str(xcom_root)])
    assert found.complete and len(found.envelopes) == 1


def test_one_envelope_per_value(xcom_root: Path) -> None:
    first, second = push("a"), push("a")
    assert first["url"] != second["url"] and first["envelope_id"] != second["envelope_id"]
    assert pull(first) == pull(second) == "a"


def test_tampered_value_fails(xcom_root: Path) -> None:
    ref = push({"secret": MARKER})
    data = data_path(ref)
    raw = bytearray(data.read_bytes())
    raw[-5] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.raises(AirflowFailException, match="failed authentication"):
        pull(ref)


def test_envelope_copied_over_another_value_fails(xcom_root: Path) -> None:
    mine = push("mine", task_id="a")
    theirs = push("theirs", task_id="b")
    for suffix in ("", ".kmsflow.json"):  # an attacker copies b's envelope over a's
        shutil.copyfile(theirs["url"] + suffix, mine["url"] + suffix)
    with pytest.raises(XComMismatchError, match="replaced by another value"):
        pull(mine)


def test_envelope_and_reference_copied_to_another_task_fail(xcom_root: Path) -> None:
    """The attacker moves b's envelope into a's directory and edits a's reference to match it:
    only the authenticated context inside the ciphertext still says b."""
    mine = push("mine", task_id="a")
    theirs = push("theirs", task_id="b")
    moved = str(Path(mine["url"]).parent / Path(theirs["url"]).name)
    for suffix in ("", ".kmsflow.json"):
        shutil.copyfile(theirs["url"] + suffix, moved + suffix)
    forged = {**mine, "url": moved, "envelope_id": theirs["envelope_id"]}
    with pytest.raises(XComMismatchError, match=r"task_id='b'.*copied from another XCom"):
        pull(forged)


def test_reference_copied_to_another_run_fails_when_pulled(xcom_root: Path) -> None:
    """A whole reference copied into another run's row is self-consistent; the pull knows what it
    asked for."""
    other_run = push("from run 1", run_id="run-1")
    asked = xcom._expecting(dag_id="d", run_id="run-2", task_id="t", key="return_value")
    with asked, pytest.raises(XComMismatchError, match="run_id='run-2'"):
        pull(other_run)
    with xcom._expecting(dag_id="d", run_id="run-1", task_id="t", key="return_value"):
        assert pull(other_run) == "from run 1"


@pytest.mark.parametrize("plaintext", [b"an ordinary artifact", xcom.FRAME_MAGIC + b"{not json"])
def test_envelope_that_is_not_an_xcom_value_is_refused(xcom_root: Path, key: str, plaintext: bytes) -> None:
    """A valid envelope (someone holding the key encrypted it) in the value's place, its reference
    edited to match: still not an XCom value."""
    from kmsflow.airflow.xcom import _kms
    from kmsflow.envelope.encrypt import encrypt_bytes

    ref = push("v")
    other = str(Path(ref["url"]).parent / "other.xcom")
    client, _ = _kms("kmsflow_default")
    record = encrypt_bytes(client, key, plaintext, other)
    with pytest.raises(XComMismatchError, match="not an XCom value"):
        pull({**ref, "url": other, "envelope_id": record.envelope_id})


@pytest.mark.parametrize(
    "url",
    [
        "/etc/passwd",
        "{home}/../../elsewhere/x.xcom",
        "{home}/sub/x.xcom",
        "{home}/x.kmsflow.json",
    ],
)
def test_forged_reference_outside_its_directory_is_refused(xcom_root: Path, url: str) -> None:
    ref = push("v")
    home = str(Path(ref["url"]).parent)
    with pytest.raises(XComMismatchError, match="lies outside"):
        pull({**ref, "url": url.format(home=home)})
    with pytest.raises(XComMismatchError, match="lies outside"):
        EncryptedXComBackend.purge(Stored({**ref, "url": url.format(home=home)}))
    assert Path(ref["url"]).exists()


def test_hostile_names_stay_under_xcom_path(xcom_root: Path) -> None:
    ref = push("v", key="../../../../escape", task_id="..", dag_id="_kmsflow")
    assert Path(ref["url"]).resolve().is_relative_to(xcom_root.resolve())
    assert pull(ref) == "v"


def test_purge_deletes_the_envelope(xcom_root: Path) -> None:
    ref = push({"x": MARKER})
    EncryptedXComBackend.purge(Stored(ref))
    assert not Path(ref["url"]).exists() and not Path(ref["url"] + ".kmsflow.json").exists()
    assert scan([str(xcom_root)]).envelopes == ()
    EncryptedXComBackend.purge(Stored(ref))  # gone already: nothing to do
    EncryptedXComBackend.purge(Stored(BaseXCom.serialize_value("plain")))  # not ours: left alone


def test_plain_values_written_before_the_backend_still_read(
    xcom_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for value in ("text", 3, [1, 2], {"a": (1, 2)}, None):
        assert pull(BaseXCom.serialize_value(value)) == value
    monkeypatch.setenv("KMSFLOW_XCOM_READ_PLAIN", "false")
    with pytest.raises(XComMismatchError, match="xcom_read_plain is false"):
        pull(BaseXCom.serialize_value("text"))
    assert pull(push("still encrypted")) == "still encrypted"


def test_pulling_warns_once_while_rendered_fields_are_kept(
    xcom_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ref = push("v")
    xcom._warn_if_rendered_fields_kept.cache_clear()
    monkeypatch.setenv("AIRFLOW__CORE__MAX_TEMPLATED_FIELD_LENGTH", "4096")
    with caplog.at_level("WARNING", logger="kmsflow.airflow.xcom"):
        pull(ref)
        pull(ref)
    [warning] = caplog.records
    assert "max_templated_field_length" in warning.message

    caplog.clear()
    xcom._warn_if_rendered_fields_kept.cache_clear()
    monkeypatch.setenv("AIRFLOW__CORE__MAX_TEMPLATED_FIELD_LENGTH", "0")
    with caplog.at_level("WARNING", logger="kmsflow.airflow.xcom"):
        pull(ref)
    assert caplog.records == []


def test_reference_as_json_text_reads(xcom_root: Path) -> None:
    ref = push("v")
    assert pull(json.dumps(ref)) == "v"


def test_missing_configuration_is_a_clear_error(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KMSFLOW_XCOM_PATH", raising=False)
    monkeypatch.setenv("KMSFLOW_XCOM_KEY", key)
    with pytest.raises(XComConfigError, match="xcom_path"):
        push("v")
    monkeypatch.setenv("KMSFLOW_XCOM_PATH", "/tmp/x")
    monkeypatch.setenv("KMSFLOW_XCOM_READ_PLAIN", "maybe")
    with pytest.raises(XComConfigError, match="xcom_read_plain"):
        push("v")


def test_denied_encrypt_names_the_role_and_writes_nothing(
    xcom_root: Path, key: str, set_conn: Any, iam_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_conn("kmsflow_nobody", endpoint=iam_emulator.endpoint, principal="user:nobody@example.com")
    monkeypatch.setenv("KMSFLOW_XCOM_CONN_ID", "kmsflow_nobody")
    with pytest.raises(AirflowFailException, match="cryptoKeyEncrypter"):
        push({"x": MARKER})
    assert not xcom_root.exists() or all_bytes(xcom_root) == b""


def test_large_value_to_gcs(key: str, gcs_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMSFLOW_XCOM_KEY", key)
    monkeypatch.setenv("KMSFLOW_XCOM_PATH", f"gs://{gcs_bucket}/xcom")
    xcom._kms.cache_clear()
    value = MARKER + "x" * (3 << 20)
    ref = push(value)
    assert ref["url"].startswith(f"gs://{gcs_bucket}/xcom/dag_id=d/")
    assert pull(ref) == value
    from kmsflow.envelope import gcs_filesystem

    fs = gcs_filesystem()
    objects = fs.find(f"{gcs_bucket}/xcom")
    assert len(objects) == 2 and all(MARKER.encode() not in fs.cat(o) for o in objects)
    found = scan([f"gs://{gcs_bucket}/xcom"])
    assert found.complete and [e.envelope_id for e in found.envelopes] == [ref["envelope_id"]]
    EncryptedXComBackend.purge(Stored(ref))
    fs.invalidate_cache()
    assert fs.find(f"{gcs_bucket}/xcom") == []


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    a=st.tuples(names, names, names, st.integers(-1, 10**6), names),
    b=st.tuples(names, names, names, st.integers(-1, 10**6), names),
)
def test_context_directories_are_distinct_and_contained(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    """Any two contexts get different directories, each a plain child path of the root."""
    fields = ("dag_id", "run_id", "task_id", "map_index", "key")
    da = xcom.context_dir("/r", dict(zip(fields, a, strict=True)))  # type: ignore[arg-type]
    db = xcom.context_dir("/r", dict(zip(fields, b, strict=True)))  # type: ignore[arg-type]
    assert (da == db) == (a == b)
    parts = da.split("/")[2:]
    assert len(parts) == 5 and all(p.split("=", 1)[0] in fields and not p.startswith(".") for p in parts)
