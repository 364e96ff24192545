"""End to end with a real Airflow scheduler: the README's demo, run as users run it.

``scripts/demo.py`` starts the KMS emulator (IAM enforced) and ``airflow standalone``, then drives
every kmsflow DAG through real scheduling and task processes, and the CLI as each identity. It
exits non-zero as soon as any step does not behave (a DAG run fails, the producer may decrypt, an
artifact stops verifying, the erased tenant still decrypts), so this test is the lifecycle's
integration check; the assertions below pin the story's key outcomes too.

It runs the demo as ``./scripts/demo.sh --serve`` does: after the story, Airflow stays up with the
Key Lifecycle page, so the test logs in with the printed password, reads the page and its JSON as a
person would see them after the demo, then presses Ctrl-C (SIGINT) and checks that everything
stopped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


SERVING = "Ctrl-C stops Airflow and the emulator"


def follow(stream: Any, lines: list[str], serving: threading.Event) -> None:
    for line in stream:
        lines.append(line)
        if SERVING in line:
            serving.set()


def api(
    base: str, path: str, token: str | None = None, body: dict[str, str] | None = None
) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def port_answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def served_page(out: str) -> dict[str, Any]:
    """What a person sees on the page ``--serve`` leaves up, logged in with the printed password."""
    login = re.search(r"(http://127\.0\.0\.1:(\d+))/  login: admin / (\S+)", out)
    assert login, out[-4000:]
    base, port, password = login.group(1), int(login.group(2)), login.group(3)
    assert f"{base}/plugin/kmsflow  the Key Lifecycle page" in out
    assert api(base, "/kmsflow/api/keys")[0] == 401  # the page is behind Airflow's login
    assert api(base, "/auth/token", body={"username": "admin", "password": "not " + password})[0] == 401
    status, body = api(base, "/auth/token", body={"username": "admin", "password": password})
    assert status == 201, body
    token = json.loads(body)["access_token"]
    status, body = api(base, "/kmsflow/api/keys", token)
    assert status == 200, body
    data = json.loads(body)
    assert data["problems"] == [] and data["user"] == "admin"
    status, page = api(base, "/kmsflow/", token)
    assert status == 200 and "ai-crypto-key" in page
    assert api(base, "/plugin/kmsflow")[0] == 200  # the UI route that frames the page
    keys = {k["name"].rsplit("/", 1)[-1]: {v["id"]: v["state"] for v in k["versions"]} for k in data["keys"]}
    return {"port": port, "keys": keys, "complete": data["snapshot"]["complete"]}


@pytest.mark.timeout(1200)
def test_the_demo_runs_the_whole_lifecycle_on_a_real_scheduler(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KMS_EMULATOR", "KMSFLOW"))}
    env["KMSFLOW_DEMO_DIR"] = str(tmp_path / "demo")
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    serving = threading.Event()
    reader = threading.Thread(target=follow, args=(demo.stdout, lines, serving), daemon=True)
    reader.start()
    try:
        while not serving.wait(timeout=5):
            assert demo.poll() is None, "".join(lines)[-8000:]
        out = "".join(lines)
        try:
            served = served_page(out)
        except AssertionError as failed:
            raise AssertionError(f"{failed}\n{out[-6000:]}") from None
    finally:
        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends: the demo stops Airflow and the emulator
        try:
            demo.wait(timeout=120)
        except subprocess.TimeoutExpired:
            demo.kill()
            pytest.fail("the demo did not stop within 120 s of Ctrl-C:\n" + "".join(lines)[-4000:])
        reader.join(timeout=30)
    assert demo.returncode == 130, "".join(lines)[-4000:]
    assert not port_answers(served["port"]), "Airflow's API server still answers after Ctrl-C"
    assert served["keys"]["ai-crypto-key"]["1"] == "DESTROYED"  # the shred story, as the page shows it
    assert served["keys"]["ai-crypto-key"]["2"] == "ENABLED"
    assert served["complete"] is True
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
    assert "demo: all steps passed" in out
    # The demo directory holds ciphertext and records only: no plaintext file was left behind.
    leftovers = [p for p in (tmp_path / "demo" / "artifacts").rglob("*") if p.is_file()]
    assert leftovers and all(
        p.name.endswith(".kmsflow.json") or any(part.endswith(".enc") for part in p.parts) for p in leftovers
    )
