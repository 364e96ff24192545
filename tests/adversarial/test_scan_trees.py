"""Property: for any directory tree, the scan counts every envelope reachable from the root, or
says it is incomplete.

Hypothesis builds trees out of real envelopes (copies of two made once on the emulator), plain
files, directories (some unreadable), names kmsflow reserves elsewhere, FIFOs, and symbolic links
inside the root, out of it, back to it, and to nowhere. The truth is a brute-force walk that
follows every link (with full privileges) and parses every file named like a record; the scan runs
with file modes enforced, as an unprivileged worker would.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import kms_v1
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inventory.builders import make_dataset, make_file, make_key
from privileges import modes_enforced

from kmsflow.envelope.errors import EnvelopeError
from kmsflow.envelope.layout import DATASET_RECORD, SIDECAR_SUFFIX
from kmsflow.envelope.record import EnvelopeRecord
from kmsflow.inventory import scan

NAMES = [
    "a",
    "b",
    "m.enc",
    "_kmsflow",
    "n.kmsflow.json",
    ".s.kmsflow-0a1b2c.tmp",
    ".p.kmsflow-0a1b2c.part",
    ".o.kmsflow-0123456789abcdef0123456789abcdef.old",
]
ACTIONS = ["dir", "unreadable_dir", "file_envelope", "dataset_envelope", "data"]
ACTIONS += ["link_inside", "link_outside", "link_root", "dangling", "fifo"]
STEP = st.tuples(st.integers(0, 50), st.sampled_from(ACTIONS), st.sampled_from(NAMES), st.integers(0, 50))


@pytest.fixture(scope="module")
def templates(emulator: object) -> Iterator[Path]:
    """One file envelope and one dataset envelope, made once, copied into every generated tree."""
    client: kms_v1.KeyManagementServiceClient = emulator.client()  # type: ignore[attr-defined]
    key = make_key(client, f"trees-{os.getpid()}")
    top = Path(tempfile.mkdtemp(prefix="kmsflow-trees-"))
    make_file(client, key, top / "src", str(top / "file.enc"), 50)
    make_dataset(client, key, top / "src", str(top / "ds.enc"), {"x": 10, "y/z": 20})
    yield top
    shutil.rmtree(top, ignore_errors=True)


def build(base: Path, templates: Path, steps: list[tuple[int, str, str, int]]) -> list[Path]:
    """Apply ``steps`` under ``base/root``; return the directories to make unreadable."""
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    shutil.copy(templates / "file.enc", outside / "far.enc")
    shutil.copy(templates / ("file.enc" + SIDECAR_SUFFIX), outside / ("far.enc" + SIDECAR_SUFFIX))
    dirs, locked = [root], []
    for parent_at, action, name, target_at in steps:
        parent = dirs[parent_at % len(dirs)]
        path = parent / name
        if os.path.lexists(path) or os.path.lexists(str(path) + SIDECAR_SUFFIX):
            continue
        if action in ("dir", "unreadable_dir"):
            path.mkdir()
            dirs.append(path)
            if action == "unreadable_dir":
                locked.append(path)
        elif action == "file_envelope":
            shutil.copy(templates / "file.enc", path)
            shutil.copy(templates / ("file.enc" + SIDECAR_SUFFIX), str(path) + SIDECAR_SUFFIX)
        elif action == "dataset_envelope":
            shutil.copytree(templates / "ds.enc", path)
        elif action == "data":
            path.write_bytes(b"plain data")
        elif action == "link_inside":
            path.symlink_to(dirs[target_at % len(dirs)])
        elif action == "link_outside":
            path.symlink_to(outside)
        elif action == "link_root":
            path.symlink_to(os.path.relpath(root, parent))
        elif action == "dangling":
            path.symlink_to(base / "missing")
        else:
            os.mkfifo(path)
    return locked


def reachable_records(root: Path) -> set[str]:
    """Real paths of every parseable record reachable from ``root``, following every link."""
    found: set[str] = set()
    seen: set[str] = set()
    stack = [str(root)]
    while stack:
        top = stack.pop()
        real = os.path.realpath(top)
        if real in seen:
            continue
        seen.add(real)
        for entry in os.scandir(top):
            if entry.is_dir():  # follows links
                stack.append(entry.path)
            elif entry.is_file() and _named_like_record(entry.path) and _parses(entry.path):
                found.add(os.path.realpath(entry.path))
    return found


def _named_like_record(path: str) -> bool:
    return path.endswith(SIDECAR_SUFFIX) or path.endswith(os.sep + DATASET_RECORD.replace("/", os.sep))


def _parses(path: str) -> bool:
    try:
        EnvelopeRecord.from_json(Path(path).read_bytes(), path)
    except EnvelopeError:
        return False
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, max_size=14))
def test_scan_counts_every_reachable_envelope_or_is_incomplete(
    templates: Path, steps: list[tuple[int, str, str, int]]
) -> None:
    base = Path(tempfile.mkdtemp(prefix="kmsflow-tree-"))
    locked: list[Path] = []
    try:
        locked = build(base, templates, steps)
        truth = reachable_records(base / "root")
        for path in locked:
            os.chmod(path, 0)
        with modes_enforced():
            inv = scan([str(base / "root")])
        counted = {os.path.realpath(r.record_url) for r in inv.envelopes}
        if inv.complete:
            assert truth <= counted, (sorted(truth - counted), inv.findings)
        assert counted <= truth  # nothing is invented
    finally:
        for path in locked:
            os.chmod(path, 0o755)
        shutil.rmtree(base, ignore_errors=True)
