"""End to end with a real Airflow scheduler: the README's demo, run as users run it.

``scripts/demo.py`` starts the KMS emulator (IAM enforced) and ``airflow standalone``, then drives
every kmsflow DAG through real scheduling and task processes, and the CLI as each identity. It
exits non-zero as soon as any step does not behave (a DAG run fails, the producer may decrypt, an
artifact stops verifying, the erased tenant still decrypts), so this test is the lifecycle's
integration check; the assertions below pin the story's key outcomes too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(1200)
def test_the_demo_runs_the_whole_lifecycle_on_a_real_scheduler(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KMS_EMULATOR", "KMSFLOW"))}
    env["KMSFLOW_DEMO_DIR"] = str(tmp_path / "demo")
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = demo.communicate(timeout=1100)
    except subprocess.TimeoutExpired:
        demo.terminate()  # SIGTERM: the demo stops its Airflow and emulator before exiting
        out, err = demo.communicate(timeout=60)
        pytest.fail(f"the demo did not finish in time:\n{out[-4000:]}{err[-4000:]}")
    assert demo.returncode == 0, out[-4000:] + err[-4000:]
    assert "No changes: Cloud KMS matches the spec" in out  # provision is idempotent
    # The clock jump's rotation started the re-wrap through the watcher, not a manual trigger.
    assert "kmsflow_rotate_rewrap asset_triggered__" in out
    assert "started by a rotation event: projects/kmsflow-demo/" in out
    assert "Decrypted model reproduces its metrics" in out  # consumer scored the producer's model
    assert "cloudkms.cryptoKeyVersions.useToDecrypt' denied" in out  # producer refused
    assert "v1 [ENABLED] disabled:" in out and "destroyed_confirmed" in out  # the shred path
    assert "ai-crypto-key v1: DESTROYED" in out
    assert "3 envelope(s) of ai-crypto-key now have a new data key" in out  # mode=reencrypt
    assert out.count("    ok  ") == 4  # every artifact (3 pipeline + 1 tenant) verified after shred
    assert "already exists" in out  # a second writer never replaces a gs:// artifact
    assert "models/model.bin.enc: identical to the model" in out  # gs:// through the GCS emulator
    assert out.rstrip().endswith("demo: all steps passed")
    # The demo directory holds ciphertext and records only: no plaintext file was left behind.
    leftovers = [p for p in (tmp_path / "demo" / "artifacts").rglob("*") if p.is_file()]
    assert leftovers and all(
        p.name.endswith(".kmsflow.json") or any(part.endswith(".enc") for part in p.parts) for p in leftovers
    )
