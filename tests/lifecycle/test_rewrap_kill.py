"""kill -9 in the middle of a rewrap, then rerun: every envelope decrypts and names the primary."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from inventory.builders import make_file, make_key

from kmsflow.envelope import Envelope
from kmsflow.inventory import scan
from kmsflow.kms import resources
from kmsflow.lifecycle import rewrap, verify_unwraps

COUNT = 300

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from kmsflow.kms import new_kms_client
    from kmsflow.lifecycle import rewrap
    client = new_kms_client(endpoint=sys.argv[1])
    # Slow each swap a little so that the parent reliably kills the run half-way.
    rewrap(client, [sys.argv[2]], max_workers=4, before_swap=lambda _url: time.sleep(0.02))
    print("finished", flush=True)
    """
)


def versions(root: Path) -> list[str]:
    return [json.loads(p.read_bytes())["key"]["crypto_key_version"] for p in root.glob("*.kmsflow.json")]


def test_sigkill_mid_run_then_rerun_converges(emulator: object, ring_id: str, tmp_path: Path) -> None:
    client = emulator.client()  # type: ignore[attr-defined]
    key = make_key(client, ring_id)
    root = tmp_path / "root"
    with ThreadPoolExecutor(8) as pool:
        made = list(
            pool.map(
                lambda i: make_file(client, key, tmp_path / "src", str(root / f"e{i:03}.enc"), 64, seed=i),
                range(COUNT),
            )
        )
    v1 = made[0].record.key.crypto_key_version
    v2 = resources.rotate(client, key).name

    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, emulator.endpoint, str(root)],  # type: ignore[attr-defined]
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while versions(root).count(v2) < 30:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the rewrap subprocess made no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    partial = versions(root)
    assert len(partial) == COUNT  # no record lost, none torn (all parse as JSON)
    assert 30 <= partial.count(v2) < COUNT and partial.count(v1) > 0

    # Leftover .part temps (if the kill landed mid-swap) are informational, never references.
    mid = scan([str(root)])
    assert mid.complete, mid.blocking_findings
    assert {str(f.kind) for f in mid.findings} <= {"stale_temp"}

    report = rewrap(client, [str(root)], max_workers=8)

    assert report.ok, report.to_dict()
    assert report.rewrapped == partial.count(v1) and report.already_current == partial.count(v2)
    assert versions(root) == [v2] * COUNT
    assert verify_unwraps(client, [str(root)]) == []
    final = scan([str(root)])
    assert final.complete and final.references(v1) == [] and len(final.references(v2)) == COUNT
    for i in range(0, COUNT, 7):
        out = tmp_path / "out" / f"{i}"
        Envelope.open(made[i].dst).decrypt(client, str(out))
        assert out.read_bytes() == made[i].src.read_bytes()
