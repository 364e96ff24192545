"""kmsflow_rotate_rewrap with a recipient (ML-KEM-768) key: the DAG's rotate step adds a version, the
detect step takes the current version (newest ENABLED) for the primary the key does not have, and
the rewrap moves every recipient envelope to it (data untouched), through ``dag.test()``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from inventory.builders import fingerprint
from lifecycle_dagkit import load_dag, run_dag

from kmsflow.envelope import decrypt, inspect
from kmsflow.envelope.encrypt import encrypt_for
from kmsflow.kms.public_key import fetch_public_key
from kmsflow.spec import apply, load_spec, plan


@pytest.fixture(scope="module")
def rewrap_dag(airflow_db: str) -> Any:
    return load_dag("kmsflow_rotate_rewrap")


def test_rotate_first_then_rewrap_recipient_envelopes(
    rewrap_dag: Any, fresh_emulator: Any, tmp_path: Path, ring_id: str, set_conn: Callable[..., str]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        f"""
project: kmsflow-test
location: us-central1
audit_log: {json.dumps(str(tmp_path / "audit.jsonl"))}
key_rings:
  - id: {ring_id}
    keys:
      - id: inbox
        purpose: KEY_ENCAPSULATION
        algorithm: ML_KEM_768
        roots: [{json.dumps(str(root))}]
"""
    )
    spec = load_spec(spec_path)
    client = fresh_emulator.client()
    apply(plan(spec, client), client)
    key = next(name for name, _ in spec.crypto_keys())
    public = fetch_public_key(client, f"{key}/cryptoKeyVersions/1")
    plain = {f"u{i}": bytes([i]) * (1000 + i) for i in range(3)}
    for name, data in plain.items():
        (tmp_path / name).write_bytes(data)
        encrypt_for(public, str(tmp_path / name), str(root / f"{name}.enc"))
    before = fingerprint(root)
    set_conn(endpoint=fresh_emulator.endpoint)

    run = run_dag(rewrap_dag, spec_path=str(spec_path), rotate_first=True)
    assert run.state == "success", run.states
    assert run.values["detect"]["keys"][key]["primary"] == f"{key}/cryptoKeyVersions/2"
    summary = run.values["publish"]
    assert summary["versions_before"] == {f"{key}/cryptoKeyVersions/1": 3}
    assert summary["versions_after"] == {f"{key}/cryptoKeyVersions/2": 3} and summary["rewrapped"] == 3
    assert run.values["check"]["ok"] is True
    assert fingerprint(root) == before  # data never touched (records are not data)
    for name, data in plain.items():
        assert inspect(str(root / f"{name}.enc"))["wrap"] == "ml-kem-768"
        decrypt(client, str(root / f"{name}.enc"), str(tmp_path / f"{name}.out"))
        assert (tmp_path / f"{name}.out").read_bytes() == data
    assert "encapsulated_key" not in json.dumps([run.values, run.mapped_values], default=str)
