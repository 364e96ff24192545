"""``shared_paths:``: which local roots and audit logs are the same storage on every worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kmsflow.spec import KeySpec, SpecError, load_spec


def spec(tmp_path: Path, shared: list[str] | None = None, **extra: Any) -> KeySpec:
    lines = ["project: p", "location: l"]
    if shared is not None:
        lines.append(f"shared_paths: {shared!r}")
    lines += [f"{k}: {v}" for k, v in extra.items()]
    lines += ["key_rings:", "  - id: r", "    keys:", "      - id: k", "        roots: [/data/a, gs://b/x]"]
    path = tmp_path / "spec.yaml"
    path.write_text("\n".join(lines) + "\n")
    return load_spec(path)


def test_default_is_nothing_shared(tmp_path: Path) -> None:
    the_spec = spec(tmp_path)
    assert the_spec.shared_paths == []
    assert the_spec.roots() == ["/data/a", "gs://b/x"]
    assert the_spec.unshared(the_spec.roots()) == ["/data/a"]


@pytest.mark.parametrize("bad", ["data", "./data", "gs://bucket/x", "file:///data"])
def test_only_absolute_local_directories(tmp_path: Path, bad: str) -> None:
    with pytest.raises(SpecError, match="shared_paths"):
        spec(tmp_path, [bad])


def test_paths_are_normalized_and_round_trip(tmp_path: Path) -> None:
    the_spec = spec(tmp_path, ["/data/./shared/"])
    assert the_spec.shared_paths == ["/data/shared"]
    assert the_spec.to_dict()["shared_paths"] == ["/data/shared"]


def test_what_counts_as_shared(tmp_path: Path) -> None:
    the_spec = spec(tmp_path, ["/data", "/mnt/nfs/kms"])
    places = [
        "/data/a",  # under a shared directory
        "/data",  # the directory itself
        "file:///mnt/nfs/kms/audit.jsonl",  # file:// is local
        "gs://bucket/x",  # object stores are the same everywhere
        "/database/x",  # a sibling with a common prefix is not under /data
        "/data/../etc/x",  # leaves the shared directory
        "relative/root",  # relative to each worker's working directory
        "/mnt/nfs",  # a parent of a shared directory
        "file:///tmp/x",
    ]
    assert the_spec.unshared(places) == [
        "/database/x",
        "/data/../etc/x",
        "relative/root",
        "/mnt/nfs",
        "file:///tmp/x",
    ]


def test_the_compose_spec_declares_its_volume_shared() -> None:
    root = Path(__file__).resolve().parents[2]
    the_spec = load_spec(root / "deploy" / "kmsflow-spec.yaml")
    assert the_spec.shared_paths == ["/opt/airflow/kmsflow-data"]
    assert the_spec.audit_log and the_spec.unshared([the_spec.audit_log, *the_spec.roots()]) == []
