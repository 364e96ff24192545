"""The end-to-end key lifecycle demo: KMS emulator + a real local Airflow + the kmsflow CLI.

Everything runs on this machine, under ``demo-output/`` (or ``$KMSFLOW_DEMO_DIR``; wiped at the start):

1. the Cloud KMS emulator (IAM enforced, persistent, clock under the demo's control);
2. a local Airflow (``airflow standalone``: scheduler, DAG processor, triggerer, API server) running
   the kmsflow DAGs from ``dags/``, with one kmsflow connection per identity;
3. ``kmsflow_provision`` converges KMS to the seed's key spec (then a second run changes nothing);
4. ``kmsflow_ml_pipeline`` trains a model and encrypts dataset, model and metrics as the producer,
   then decrypts and scores them as the consumer; the CLI shows who may do what; a producer
   holding only an ML-KEM-768 public key file encrypts with no KMS access, a model signed with
   an EC key is verified offline with the signer's public key file, a partner encrypts for an
   X-Wing public key file and signs, and ``kmsflow_ml_pipeline`` runs again with a producer that
   holds only the ML-KEM public key file and the signing key;
5. 91 days pass: Cloud KMS-style automatic rotation; the triggerer's rotation watcher sees it and
   starts ``kmsflow_rotate_rewrap`` (no manual trigger), which re-wraps every data key onto the new
   version without touching the data;
6. ``kmsflow_shred`` proves the old version unreferenced, disables it, lets it soak, destroys it and
   confirms DESTROYED, while every artifact still decrypts;
7. ``kmsflow_rotate_rewrap`` in ``reencrypt`` mode gives every artifact of the key a new data key
   (a suspected data-key leak), and every artifact still verifies;
   then artifacts on ``gs://`` (the GCS emulator that enforces preconditions,
   ``kmsflow_emulator.gcs``): encrypt, a second writer refused, inventory, decrypt;
8. ``kmsflow_erase`` crypto-erases the tenant "acme", with a report proving it;
9. ``kmsflow audit`` shows every state change, with its evidence.

With ``--serve`` (``./scripts/demo.sh --serve``) Airflow and the emulator then stay up, and the URL
and login are printed: the DAG runs, and Browse -> KMS keys (the Key Lifecycle page), until Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from local_airflow import LocalAirflow, kmsflow_connection

from kmsflow.kms import new_kms_client
from kmsflow.kms.iam import DECAPSULATOR_ROLE, PUBLIC_KEY_VIEWER_ROLE, SIGNER_ROLE, VIEWER_ROLE, grant
from kmsflow_emulator import gcs
from kmsflow_emulator.admin import AdminClient
from kmsflow_emulator.process import spawn

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("KMSFLOW_DEMO_DIR", ROOT / "demo-output")).resolve()
BIN = Path(sys.executable).parent
DAY = 86400

PROVISIONER = "user:kmsflow-provisioner@example.com"
PRODUCER = "serviceAccount:ml-pipeline@kmsflow-demo.iam.gserviceaccount.com"
CONSUMER = "serviceAccount:inference@kmsflow-demo.iam.gserviceaccount.com"
GCS_BUCKET = "kmsflow-demo-artifacts"
ACME_CONSUMER = "serviceAccount:acme-inference@kmsflow-demo.iam.gserviceaccount.com"
RING = "projects/kmsflow-demo/locations/us-central1/keyRings/ai-key-ring"
KEY = f"{RING}/cryptoKeys/ai-crypto-key"
TENANT_KEY = f"{RING}/cryptoKeys/tenant-acme-key"
DAGS = ["kmsflow_provision", "kmsflow_ml_pipeline", "kmsflow_rotate_rewrap", "kmsflow_shred", "kmsflow_erase"]


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def say(text: str) -> None:
    for line in text.rstrip().splitlines():
        print(f"    {line}", flush=True)


class Demo:
    def __init__(self) -> None:
        self.emulator: subprocess.Popen[str] | None = None
        self.gcs: subprocess.Popen[str] | None = None
        self.endpoint = ""
        self.airflow: LocalAirflow | None = None
        self.audit_log = OUT / "audit.jsonl"

    # ------------------------------------------------------------------ set-up

    def start_emulator(self) -> None:
        self.emulator, self.endpoint = spawn(
            "--data-dir", str(OUT / "kms"), "--enforce-iam", "--owner", PROVISIONER
        )

    def start_gcs(self) -> None:
        """The GCS emulator enforcing preconditions, with one bucket; the CLI then uses it."""
        self.gcs, host = gcs.spawn("--default-bucket", GCS_BUCKET)
        os.environ["STORAGE_EMULATOR_HOST"] = host

    def write_spec(self) -> Path:
        """The seed's spec, with its artifact roots and audit log placed under demo-output/."""
        text = (ROOT / "examples" / "specs" / "seed.yaml").read_text()
        text = text.replace("- demo-output/", f"- {OUT}/")
        for root in ("artifacts", "tenants/acme"):  # the spec's roots: they exist before any scan
            (OUT / root).mkdir(parents=True, exist_ok=True)
        spec = OUT / "spec.yaml"
        spec.write_text(f"audit_log: {self.audit_log}\n{text}")
        return spec

    def start_airflow(self, spec: Path) -> None:
        self.airflow = LocalAirflow(
            OUT / "airflow",
            ROOT / "dags",
            {
                "KMSFLOW_SPEC": str(spec),
                "KMSFLOW_ARTIFACT_ROOT": str(OUT / "artifacts"),
                "KMSFLOW_STAGING_DIR": str(OUT / "staging"),
                "AIRFLOW_CONN_KMSFLOW_DEFAULT": kmsflow_connection(
                    self.endpoint, PROVISIONER, audit_log=str(self.audit_log)
                ),
                "AIRFLOW_CONN_KMSFLOW_PRODUCER": kmsflow_connection(self.endpoint, PRODUCER),
                "AIRFLOW_CONN_KMSFLOW_CONSUMER": kmsflow_connection(self.endpoint, CONSUMER),
                # The scheduler starts runs itself (asset events: a rotation starts the re-wrap),
                # and the watchers poll every few seconds.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True",
                "KMSFLOW_ROTATION_POLL_INTERVAL": "5",
                "KMSFLOW_SPEC_POLL_INTERVAL": "5",
            },
        )
        self.airflow.start(DAGS)

    def stop(self) -> None:
        if self.airflow is not None:
            self.airflow.stop()
        for process in (self.emulator, self.gcs):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)

    # ------------------------------------------------------------------ helpers

    def dag(self, dag_id: str, conf: dict[str, Any] | None = None, *, show: tuple[str, ...] = ()) -> None:
        """Run a DAG on the local Airflow; print what the ``show`` tasks logged; fail loudly."""
        assert self.airflow is not None
        self.report(dag_id, *self.airflow.run_dag(dag_id, conf), show=show)

    def report(self, dag_id: str, state: str, run_id: str, *, show: tuple[str, ...] = ()) -> None:
        """Print a finished run and what its ``show`` tasks logged; fail loudly unless it succeeded."""
        assert self.airflow is not None
        say(f"{dag_id} {run_id}: {state}")
        for task, message in self.airflow.messages(dag_id, run_id):
            if task in show:
                say(f"[{task}] {message}")
        if state != "success":
            raise SystemExit(f"demo: {dag_id} failed; logs under {OUT / 'airflow' / 'logs'}")

    def cli(self, *args: str, principal: str, expect: int = 0) -> str:
        """Run the ``kmsflow`` CLI as ``principal`` against the emulator; check its exit code."""
        env = {
            **os.environ,
            "KMS_EMULATOR_HOST": self.endpoint,
            "KMSFLOW_PRINCIPAL": principal,
            "KMSFLOW_AUDIT_LOG": str(self.audit_log),
        }
        result = subprocess.run(
            [str(BIN / "kmsflow"), *args], env=env, capture_output=True, text=True, timeout=300
        )
        if result.returncode != expect:
            raise SystemExit(
                f"demo: kmsflow {' '.join(args)} exited {result.returncode}, want {expect}: "
                f"{result.stderr.strip()}"
            )
        return result.stdout + result.stderr if expect == 0 else result.stderr  # stderr: what was skipped

    def advance(self, days: float) -> None:
        with AdminClient(self.endpoint) as admin:
            admin.advance(days * DAY)

    def versions(self, key: str) -> None:
        client = new_kms_client(endpoint=self.endpoint, principal=PROVISIONER)
        primary = client.get_crypto_key(name=key).primary.name
        for version in client.list_crypto_key_versions(parent=key):
            mark = "  <- primary" if version.name == primary else ""
            say(f"{key.rsplit('/', 1)[1]} v{version.name.rsplit('/', 1)[1]}: {version.state.name}{mark}")

    def envelopes(self) -> list[str]:
        """Every envelope the demo wrote (the ``url`` of each, from the inventory)."""
        return list(self.envelope_ids())

    def envelope_ids(self) -> dict[str, str]:
        """Every envelope the demo wrote, from the inventory: URL -> envelope id (a new id means a
        new data key)."""
        report = json.loads(
            self.cli("inventory", str(OUT / "artifacts"), str(OUT / "tenants"), "--json", principal=CONSUMER)
        )
        return {e["url"]: e["envelope_id"] for e in report["envelopes"]}

    def offline_cli(self, *args: str) -> str:
        """``kmsflow`` with no KMS endpoint, principal or credentials: all a producer holding only a
        public key file, or a verifier holding only a signer's, has."""
        env = {k: v for k, v in os.environ.items() if k not in ("KMS_EMULATOR_HOST", "KMSFLOW_PRINCIPAL")}
        result = subprocess.run(
            [str(BIN / "kmsflow"), *args], env=env, capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            raise SystemExit(
                f"demo: kmsflow {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result.stdout + result.stderr

    def public_key_step(self) -> None:
        """Recipient (post-quantum) envelopes and signed artifacts, outside the spec's roots."""
        step("End to end with public keys: ML-KEM-768 and X-Wing producers holding only public key files")
        # The demo's emulator is new each run but its version names are not: a public key cached
        # by an earlier run (~/.cache/kmsflow) would be another key's.
        os.environ["KMSFLOW_CACHE_DIR"] = str(OUT / "public-key-cache")
        client = new_kms_client(endpoint=self.endpoint, principal=PROVISIONER)
        kem, signing = f"{RING}/cryptoKeys/ai-kem-key", f"{RING}/cryptoKeys/ai-signing-key"
        xwing = f"{RING}/cryptoKeys/ai-xwing-key"
        for key, purpose, algorithm in (
            (kem, "KEY_ENCAPSULATION", "ML_KEM_768"),
            (xwing, "KEY_ENCAPSULATION", "KEM_XWING"),
            (signing, "ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256"),
        ):
            client.create_crypto_key(
                request={
                    "parent": RING,
                    "crypto_key_id": key.rsplit("/", 1)[1],
                    "crypto_key": {"purpose": purpose, "version_template": {"algorithm": algorithm}},
                }
            )
        for recipient in (kem, xwing):
            grant(client, recipient, DECAPSULATOR_ROLE, [CONSUMER])
        grant(client, kem, PUBLIC_KEY_VIEWER_ROLE, [PRODUCER])  # the pipeline's producer exports it
        grant(client, kem, VIEWER_ROLE, [PRODUCER])
        grant(client, signing, SIGNER_ROLE, [PRODUCER])
        grant(client, signing, PUBLIC_KEY_VIEWER_ROLE, [PRODUCER, CONSUMER])
        pq = OUT / "public-key"
        pq.mkdir()
        for key, name in ((kem, "ai-kem.pub"), (xwing, "ai-xwing.pub"), (signing, "ai-signing.pub")):
            (pq / name).write_text(
                self.cli("pubkey", "export", f"{key}/cryptoKeyVersions/1", principal=PROVISIONER)
            )
        (pq / "features.parquet").write_bytes(os.urandom(32 * 1024))
        say(
            self.offline_cli(
                "encrypt",
                "--recipient",
                str(pq / "ai-kem.pub"),
                str(pq / "features.parquet"),
                str(pq / "features.enc"),
            )
        )
        say("the producer held only ai-kem.pub: no KMS endpoint, no credentials, no KMS call")
        self.cli("decrypt", str(pq / "features.enc"), str(pq / "features.out"), principal=CONSUMER)
        assert (pq / "features.out").read_bytes() == (pq / "features.parquet").read_bytes()
        say("the consumer (roles/cloudkms.decapsulator) opened it with one Decapsulate")
        (pq / "model.bin").write_bytes(os.urandom(16 * 1024))
        signer = f"{signing}/cryptoKeyVersions/1"
        self.cli(
            "encrypt",
            "--key",
            KEY,
            "--sign-with",
            signer,
            str(pq / "model.bin"),
            str(pq / "model.enc"),
            principal=PRODUCER,
        )
        say(self.offline_cli("verify", "--signer", str(pq / "ai-signing.pub"), str(pq / "model.enc")))

        # A partner holding the X-Wing public key file and the signing key: the wrap is local, KMS
        # only signs; the consumer opens it only with the signer's signature checked.
        self.cli(
            "encrypt",
            "--recipient",
            str(pq / "ai-xwing.pub"),
            "--sign-with",
            signer,
            str(pq / "features.parquet"),
            str(pq / "features-xwing.enc"),
            principal=PRODUCER,
        )
        inspected = json.loads(self.offline_cli("inspect", "--no-files", str(pq / "features-xwing.enc")))
        say(f"inspect: {inspected['wrap']} envelope, {inspected['signature']['note']}")
        self.cli(
            "decrypt",
            "--signer",
            str(pq / "ai-signing.pub"),
            str(pq / "features-xwing.enc"),
            str(pq / "features-xwing.out"),
            principal=CONSUMER,
        )
        assert (pq / "features-xwing.out").read_bytes() == (pq / "features.parquet").read_bytes()
        say("the consumer checked the signature, then opened the X-Wing envelope with one Decapsulate")

        step("kmsflow_ml_pipeline for a recipient: the producer holds only ai-kem.pub and the signing key")
        self.dag(
            "kmsflow_ml_pipeline",
            {
                "key_name": KEY,  # the least-privilege probe's key; the envelopes are for the recipient
                "recipient": kem,
                "signing_key": signer,
                "output_root": str(pq / "pipeline"),
            },
            show=("score",),
        )

    # ------------------------------------------------------------------ the story

    def run(self) -> None:
        step("Starting the Cloud KMS emulator (IAM enforced) and a local Airflow (airflow standalone)")
        self.start_emulator()
        spec = self.write_spec()
        self.start_airflow(spec)
        say(f"emulator {self.endpoint}; Airflow home {OUT / 'airflow'}; spec {spec}")

        step("kmsflow_provision: plan and apply the seed's key spec (key ring, keys, rotation, IAM)")
        self.dag("kmsflow_provision", {"spec_path": str(spec)}, show=("plan",))
        step("kmsflow_provision again: the spec is converged, nothing to change")
        self.dag("kmsflow_provision", {"spec_path": str(spec)}, show=("plan",))

        step("kmsflow_ml_pipeline: train, encrypt as the producer, decrypt and score as the consumer")
        self.dag("kmsflow_ml_pipeline", {"key_name": KEY}, show=("score",))
        say(self.cli("inventory", str(OUT / "artifacts"), principal=CONSUMER))

        step("Least privilege: the producer cannot decrypt what it wrote; the consumer can")
        metrics = next(u for u in self.envelopes() if u.endswith("metrics.json.enc"))
        say(self.cli("decrypt", metrics, str(OUT / "refused.json"), principal=PRODUCER, expect=10))
        self.cli("decrypt", metrics, str(OUT / "metrics.json"), principal=CONSUMER)
        say(f"consumer decrypted metrics: {(OUT / 'metrics.json').read_text().strip()}")
        (OUT / "metrics.json").unlink()

        step("A tenant's data under its own key (tenant-acme-key), encrypted by the producer")
        tenant_src = OUT / "tenant-src" / "acme-embeddings.bin"
        tenant_src.parent.mkdir(parents=True)
        tenant_src.write_bytes(os.urandom(64 * 1024))
        self.cli(
            "encrypt",
            "--key",
            TENANT_KEY,
            str(tenant_src),
            str(OUT / "tenants" / "acme" / "embeddings.enc"),
            principal=PRODUCER,
        )
        shutil.rmtree(tenant_src.parent)

        self.public_key_step()

        step("91 days pass: the emulator rotates ai-crypto-key automatically, like Cloud KMS")
        assert self.airflow is not None
        self.airflow.wait_for_log(f"Watching {KEY}: primary")  # the watcher knows the primary before
        before = self.airflow.run_ids("kmsflow_rotate_rewrap")
        self.advance(91)
        self.versions(KEY)

        step("The rotation event starts kmsflow_rotate_rewrap (no manual trigger): re-wrap the stale keys")
        found = self.airflow.next_run("kmsflow_rotate_rewrap", before, "asset_triggered__")
        self.report("kmsflow_rotate_rewrap", *found, show=("detect", "publish"))
        say(self.cli("inventory", str(OUT / "artifacts"), principal=CONSUMER))

        step("A careless link in a root: the scan says it cannot see behind it, so nothing can be shredded")
        outside = OUT / "elsewhere"
        shared_src = OUT / "shared-src.bin"
        shared_src.write_bytes(os.urandom(4096))
        self.cli("encrypt", "--key", KEY, str(shared_src), str(outside / "shared.enc"), principal=PRODUCER)
        shared_src.unlink()
        link = OUT / "artifacts" / "shared-models"
        link.symlink_to(outside)
        say(self.cli("inventory", str(OUT / "artifacts"), principal=CONSUMER, expect=8))
        link.unlink()
        shutil.rmtree(outside)
        say("link removed: the envelope behind it is the user's to move into a root")

        step("Encrypt never drops files silently: a FIFO in a dataset fails it; --skip-unsupported names it")
        run_dir = OUT / "run-with-pipe"
        run_dir.mkdir()
        (run_dir / "weights.bin").write_bytes(os.urandom(4096))
        os.mkfifo(run_dir / "events.pipe")
        dst = str(OUT / "scratch" / "run.enc")
        say(self.cli("encrypt", "--key", KEY, str(run_dir), dst, principal=PRODUCER, expect=16))
        say(self.cli("encrypt", "--skip-unsupported", "--key", KEY, str(run_dir), dst, principal=PRODUCER))
        shutil.rmtree(run_dir)
        shutil.rmtree(OUT / "scratch")

        step("kmsflow_shred, 31 days later: prove v1 unreferenced, then disable it (reversible)")
        self.advance(31)
        shred = {
            "spec_path": str(spec),
            "dry_run": False,
            "confirm": "ai-crypto-key",
            "keys": ["ai-crypto-key"],
        }
        self.dag("kmsflow_shred", shred, show=("shred",))
        self.versions(KEY)
        step("kmsflow_shred after the 7-day soak: prove again, then destroy (30-day grace)")
        self.advance(8)
        self.dag("kmsflow_shred", shred, show=("shred",))
        step("kmsflow_shred after the grace period: confirm DESTROYED")
        self.advance(31)
        self.dag("kmsflow_shred", shred, show=("shred",))
        self.versions(KEY)

        step("kmsflow_rotate_rewrap mode=reencrypt: a data key may have leaked: new data keys and ciphertext")
        before = self.envelope_ids()
        self.dag(
            "kmsflow_rotate_rewrap",
            {
                "spec_path": str(spec),
                "key": "ai-crypto-key",
                "mode": "reencrypt",
                "reason": "suspected data-key leak in a crash dump (demo incident INC-42)",
            },
            show=("publish",),
        )
        after = self.envelope_ids()
        changed = sum(1 for url, eid in after.items() if url in before and before[url] != eid)
        say(f"{changed} envelope(s) of ai-crypto-key now have a new data key (new envelope id)")

        step("Every artifact still decrypts (verify authenticates every byte, writes nothing)")
        for url in self.envelopes():
            self.cli("verify", url, principal=ACME_CONSUMER if "/tenants/acme/" in url else CONSUMER)
            say(f"ok  {Path(url).relative_to(OUT)}")

        step("gs:// artifacts (a GCS emulator enforcing preconditions): encrypt, never clobber, decrypt")
        self.start_gcs()
        model = OUT / "gcs-src" / "model.bin"
        model.parent.mkdir()
        model.write_bytes(os.urandom(3 << 20))
        url = f"gs://{GCS_BUCKET}/models/model.bin.enc"
        self.cli("encrypt", "--key", KEY, str(model), url, principal=PRODUCER)
        say(self.cli("encrypt", "--key", KEY, str(model), url, principal=PRODUCER, expect=4))
        found = json.loads(self.cli("inventory", f"gs://{GCS_BUCKET}", "--json", principal=CONSUMER))
        say(f"gs://{GCS_BUCKET}: {found['envelope_count']} envelope(s), scan complete: {found['complete']}")
        self.cli("decrypt", url, str(OUT / "gcs-src" / "model.out"), principal=CONSUMER)
        same = (OUT / "gcs-src" / "model.out").read_bytes() == model.read_bytes()
        if not same:
            raise SystemExit(f"demo: {url} did not decrypt to the model")
        say(f"consumer decrypted {url}: identical to the model")
        shutil.rmtree(model.parent)

        step("kmsflow_erase: crypto-erase tenant acme (typed confirmation), with a proof report")
        self.dag(
            "kmsflow_erase",
            {
                "spec_path": str(spec),
                "key": "tenant-acme-key",
                "confirm_tenant": "acme",
                "confirm_key": "tenant-acme-key",
                "reason": "tenant offboarding (demo)",
            },
            show=("erase",),
        )
        say(
            self.cli(
                "decrypt",
                str(OUT / "tenants" / "acme" / "embeddings.enc"),
                str(OUT / "acme.bin"),
                principal=ACME_CONSUMER,
                expect=11,
            )
        )

        step("kmsflow audit: every state change, who, when, why, with evidence")
        say(self.cli("audit", principal=CONSUMER))
        print("\ndemo: all steps passed", flush=True)

    def serve(self) -> None:
        """Keep Airflow and the emulator up for a person to look around, until Ctrl-C."""
        assert self.airflow is not None
        url = f"http://127.0.0.1:{self.airflow.env['AIRFLOW__API__PORT']}"
        passwords = json.loads((OUT / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
        step("Airflow stays up (--serve): the DAG runs above, and Browse -> KMS keys (Key Lifecycle page)")
        say(f"{url}/  login: admin / {passwords['admin']}")
        say(f"{url}/plugin/kmsflow  the Key Lifecycle page;  Ctrl-C stops Airflow and the emulator")
        while self.airflow.running():
            time.sleep(5)
        raise SystemExit(f"demo: airflow standalone exited; see {OUT / 'airflow' / 'standalone.log'}")


def main() -> int:
    # Stopped from outside (CI timeout, Ctrl-C): still stop Airflow and the emulator.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    # Ctrl-C ends --serve even when started from a non-interactive shell's background job, which
    # starts it with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    serve = "--serve" in sys.argv[1:]
    unknown = [a for a in sys.argv[1:] if a != "--serve"]
    if unknown:
        raise SystemExit(f"usage: demo.sh [--serve] (unknown: {' '.join(unknown)})")
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    demo = Demo()
    try:
        demo.run()
        if serve:
            demo.serve()
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
