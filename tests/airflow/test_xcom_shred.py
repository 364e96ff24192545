"""XCom envelopes are envelopes like any other: a retired version wrapping XCom values blocks
``kmsflow_shred`` until they are re-wrapped or purged (their xcom_path is a root of the key)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lifecycle.shredkit import World, make_world, version_n

from kmsflow.airflow import xcom
from kmsflow.airflow.xcom import EncryptedXComBackend
from kmsflow.kms import resources
from kmsflow.lifecycle import rewrap
from kmsflow.lifecycle.retirement.shred import run_shred
from kmsflow.spec import load_spec

CONTEXT: dict[str, Any] = {"dag_id": "d", "run_id": "r", "map_index": -1, "key": "return_value"}


class Stored:
    def __init__(self, value: Any) -> None:
        self.value = value


@pytest.fixture
def world(
    fresh_emulator: Any, tmp_path: Path, ring_id: str, set_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """A spec key whose only root is the XCom backend's xcom_path."""
    made = make_world(fresh_emulator, tmp_path, ring_id)
    set_conn(endpoint=fresh_emulator.endpoint)
    monkeypatch.setenv("KMSFLOW_XCOM_KEY", made.key)
    monkeypatch.setenv("KMSFLOW_XCOM_PATH", str(made.root))
    xcom._kms.cache_clear()
    yield made
    xcom._kms.cache_clear()


def shred(world: World) -> Any:
    return run_shred(world.client, world.spec, now=world.now(), audit=world.audit, run_id="t", dry_run=False)


def push(task_id: str) -> dict[str, Any]:
    return dict(EncryptedXComBackend.serialize_value({"v": task_id}, task_id=task_id, **CONTEXT))


def test_xcom_values_block_shredding_until_rewrapped(world: World) -> None:
    refs = [push("a"), push("b")]
    resources.rotate(world.client, world.key)
    v1 = version_n(world.key, 1)
    world.advance_days(40)

    refused = shred(world).decision(v1)
    assert refused is not None and refused.outcome == "refused", refused
    assert refused.references == 2 and "referenced by 2 envelope(s)" in refused.reason

    report = rewrap(world.client, [str(world.root)])
    assert report.rewrapped == 2 and report.ok
    assert shred(world).decision(v1).outcome == "disabled"  # type: ignore[union-attr]
    for ref in refs:  # the values still read, now under version 2
        assert EncryptedXComBackend.deserialize_value(Stored(ref)) == {"v": ref["context"]["task_id"]}


def test_xcom_values_block_shredding_until_purged(world: World) -> None:
    refs = [push("a"), push("b")]
    resources.rotate(world.client, world.key)
    v1 = version_n(world.key, 1)
    world.advance_days(40)
    EncryptedXComBackend.purge(Stored(refs[0]))

    refused = shred(world).decision(v1)
    assert refused is not None and refused.outcome == "refused" and refused.references == 1

    EncryptedXComBackend.purge(Stored(refs[1]))
    assert shred(world).decision(v1).outcome == "disabled"  # type: ignore[union-attr]


def test_example_spec_makes_xcom_path_a_root_of_xcom_key() -> None:
    """examples/specs/xcom.yaml: the configuration its header shows names the spec's key, and the
    xcom_path it shows is that key's root (what makes the shred proof see the XCom envelopes)."""
    path = Path(__file__).resolve().parents[2] / "examples" / "specs" / "xcom.yaml"
    shown = {}
    for line in path.read_text().splitlines():
        match = re.match(r"#.*\b(xcom_key|xcom_path)\s*=\s*(\S+)", line)
        if match:
            shown[match[1]] = match[2]
    [(name, key)] = list(load_spec(str(path)).crypto_keys())
    assert shown["xcom_key"] == name
    assert key.roots == [shown["xcom_path"]]
