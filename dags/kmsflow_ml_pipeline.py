"""kmsflow_ml_pipeline: train a small model and ship dataset, model and metrics only as envelopes.

Trigger it by hand. Two identities, as in ``examples/specs/seed.yaml``: the **producer** connection
(``kmsflow_producer``, e.g. ``serviceAccount:ml-pipeline@...``, ``cryptoKeyEncrypter`` only) writes
envelopes; the **consumer** connection (``kmsflow_consumer``, e.g. ``serviceAccount:inference@...``,
``cryptoKeyDecrypter`` only) reads them. IAM (or the emulator's IAM) enforces the split.

1. **prepare** (setup): a private per-run staging directory for plaintext (mode 0700, under
   ``$KMSFLOW_STAGING_DIR``, else the system temp dir) and the run's output directory
   ``<output_root>/<run_id>``;
2. **train**: a synthetic dataset (scikit-learn ``make_classification``) written as 4 shards of
   ``.npy`` features/labels, a ``LogisticRegression`` trained on shards 0-2, its metrics on the
   training shards and the held-out shard 3; model (pickle) and ``metrics.json`` beside it;
3. **encrypt_dataset** (the whole shard directory = ONE envelope, one KMS call) and
   **encrypt_files** (``EncryptArtifactOperator.partial(...).expand(src=[model, metrics])``: one file
   envelope each), all as the producer. Every envelope is an asset event (alias
   ``kmsflow-ml-artifacts``) whose extra names the envelope id and the exact key version;
4. **cleanup_staging** (teardown): removes the plaintext staging directory — also when training or
   encryption failed, as long as prepare ran;
5. **check_least_privilege**: the producer must be *refused* decrypting (verify writes nothing) and
   the consumer refused encrypting; either succeeding fails the run: over-broad grants are a finding;
6. **score** (consumer): decrypts the three envelopes into a temporary directory, loads the model,
   re-scores it on the decrypted shards and requires exactly the metrics recorded at training time.
   The temporary plaintext is removed when the task ends, successfully or not.

Plaintext exists only in the staging directory (removed by the teardown) and inside ``score``'s
temporary directory; the output root receives envelopes only. Staging must be visible to the
train, encrypt and cleanup tasks: true for LocalExecutor / ``dag.test()`` / one Celery worker;
with several workers point ``KMSFLOW_STAGING_DIR`` at a volume they share (and that is not backed
up — it holds plaintext briefly).

The model is stored with ``pickle`` (skops is not installed here). Unpickling runs code, so it is
acceptable only because ``score`` unpickles bytes that just authenticated as an envelope under the
key, i.e. written by a holder of ``cryptoKeyEncrypter`` (the producer): the trust boundary is that
role. Prefer skops/ONNX for models crossing teams.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from airflow.sdk import AssetAlias, Param, dag, setup, task, teardown
from airflow.sdk.exceptions import AirflowFailException

from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.operators.artifacts import EncryptArtifactOperator, decrypt_artifact
from kmsflow.envelope import encrypt, verify
from kmsflow.kms.errors import KmsPermissionError

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACT_ROOT_ENV = "KMSFLOW_ARTIFACT_ROOT"
STAGING_ENV = "KMSFLOW_STAGING_DIR"
DEFAULT_KEY = "projects/kmsflow-demo/locations/us-central1/keyRings/ai-key-ring/cryptoKeys/ai-crypto-key"
ARTIFACTS = AssetAlias("kmsflow-ml-artifacts")
SHARDS = 4
HOLDOUT = SHARDS - 1  # the last shard is never trained on
ROWS_PER_SHARD = 500
SEED = 42
log = logging.getLogger(__name__)


def resolve_output_root(value: str) -> str:
    """A URL as is; a local path absolute, relative ones against the repository root (not the cwd)."""
    if "://" in value:
        return value.rstrip("/")
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (REPO_ROOT / path).resolve())


def staging_root() -> Path:
    """Where per-run plaintext staging directories are made (``$KMSFLOW_STAGING_DIR`` or temp)."""
    return Path(os.environ.get(STAGING_ENV) or tempfile.gettempdir())


def _join(root: str, name: str) -> str:
    return f"{root}/{name}" if "://" in root else str(Path(root) / name)


def _safe(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._") or "run"


@dag(
    dag_id="kmsflow_ml_pipeline",
    schedule=None,
    catchup=False,
    tags=["kmsflow", "ml", "envelope"],
    doc_md=__doc__,
    params={
        "output_root": Param(
            os.environ.get(ARTIFACT_ROOT_ENV) or "demo-output/artifacts",
            type="string",
            title="Output root",
            description="Where envelopes are written (<root>/<run_id>/...): local path or gs://. "
            "Relative paths are resolved against the repository root. Default: $KMSFLOW_ARTIFACT_ROOT, "
            "else demo-output/artifacts (a root of ai-crypto-key in the seed spec, so rotation and "
            "shredding see these envelopes).",
        ),
        "key_name": Param(DEFAULT_KEY, type="string", title="CryptoKey", description="Full CryptoKey name."),
        "producer_conn_id": Param(
            "kmsflow_producer",
            type="string",
            title="Producer connection",
            description="kmsflow connection of the identity that encrypts (cryptoKeyEncrypter only).",
        ),
        "consumer_conn_id": Param(
            "kmsflow_consumer",
            type="string",
            title="Consumer connection",
            description="kmsflow connection of the identity that decrypts (cryptoKeyDecrypter only).",
        ),
    },
)
def kmsflow_ml_pipeline() -> None:
    @setup
    @task(multiple_outputs=True)
    def prepare(params: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, str]:
        """A private plaintext staging dir and this run's (empty) output location."""
        assert params is not None and run_id is not None
        root = staging_root()
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"kmsflow-ml-{_safe(run_id)[:40]}-", dir=root))  # 0700
        output = _join(resolve_output_root(params["output_root"]), _safe(run_id))
        if "://" not in output:
            Path(output).mkdir(parents=True, exist_ok=True)
        log.info("Staging plaintext in %s; envelopes go to %s", staging, output)
        return {
            "staging": str(staging),
            "output": output,
            "dataset_src": str(staging / "dataset"),
            "dataset_dst": _join(output, "dataset.enc"),
        }

    @task
    def train(staging: str) -> list[str]:
        """Dataset shards, a trained model and its metrics, in staging; returns the file paths."""
        import pickle

        import numpy as np
        import sklearn
        from sklearn.datasets import make_classification
        from sklearn.linear_model import LogisticRegression

        x, y = make_classification(
            n_samples=SHARDS * ROWS_PER_SHARD, n_features=20, n_informative=8, random_state=SEED
        )
        dataset = Path(staging) / "dataset"
        dataset.mkdir()
        for i in range(SHARDS):
            rows = slice(i * ROWS_PER_SHARD, (i + 1) * ROWS_PER_SHARD)
            np.save(dataset / f"features-{i:03d}.npy", x[rows], allow_pickle=False)
            np.save(dataset / f"labels-{i:03d}.npy", y[rows], allow_pickle=False)
        cut = HOLDOUT * ROWS_PER_SHARD
        model = LogisticRegression(max_iter=1000).fit(x[:cut], y[:cut])
        metrics = {
            "model": "sklearn.linear_model.LogisticRegression",
            "sklearn_version": sklearn.__version__,
            "shards": SHARDS,
            "holdout_shard": HOLDOUT,
            "train_accuracy": float(model.score(x[:cut], y[:cut])),
            "holdout_accuracy": float(model.score(x[cut:], y[cut:])),
        }
        model_path, metrics_path = Path(staging) / "model.pkl", Path(staging) / "metrics.json"
        model_path.write_bytes(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
        metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True))
        log.info(
            "Trained on %d rows: train accuracy %.4f, holdout accuracy %.4f",
            cut,
            metrics["train_accuracy"],
            metrics["holdout_accuracy"],
        )
        return [str(model_path), str(metrics_path)]

    @teardown
    @task
    def cleanup_staging(staging: str) -> None:
        """Remove every plaintext byte staged for this run, whatever happened upstream."""
        path = Path(staging)
        if path.exists():
            shutil.rmtree(path, onerror=_force_remove)
        if path.exists():
            raise AirflowFailException(f"{path}: plaintext staging could not be removed")
        log.info("Removed plaintext staging %s", path)

    @task
    def check_least_privilege(
        envelope: dict[str, Any], params: dict[str, Any] | None = None
    ) -> dict[str, str]:
        """The producer may not decrypt, the consumer may not encrypt (enforced by KMS IAM)."""
        assert params is not None
        producer = KmsHook(kmsflow_conn_id=params["producer_conn_id"])
        try:
            verify(producer.get_conn(), envelope["dst"])  # authenticates only: writes nothing
        except KmsPermissionError as exc:
            log.info("Producer refused decrypt, as it must be: %s", exc)
        else:
            raise AirflowFailException(
                f"{params['producer_conn_id']} could decrypt {envelope['dst']}: grant producers "
                "roles/cloudkms.cryptoKeyEncrypter only (least privilege)"
            )
        finally:
            producer.close()

        consumer = KmsHook(kmsflow_conn_id=params["consumer_conn_id"])
        try:
            with tempfile.TemporaryDirectory(prefix="kmsflow-lp-") as tmp:
                probe = Path(tmp) / "probe"
                probe.write_bytes(b"not a secret")
                encrypt(consumer.get_conn(), params["key_name"], str(probe), str(Path(tmp) / "probe.enc"))
        except KmsPermissionError as exc:
            log.info("Consumer refused encrypt, as it must be: %s", exc)
        else:
            raise AirflowFailException(
                f"{params['consumer_conn_id']} could encrypt under {params['key_name']}: grant "
                "consumers roles/cloudkms.cryptoKeyDecrypter only (least privilege)"
            )
        finally:
            consumer.close()
        return {"producer_decrypt": "refused", "consumer_encrypt": "refused"}

    @task
    def score(
        dataset: dict[str, Any], files: Iterable[dict[str, Any]], params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """As the consumer: decrypt to a temp dir, load the model, re-score, compare with metrics."""
        import pickle

        import numpy as np

        assert params is not None
        envelopes = {Path(f["dst"]).name: f for f in files}
        hook = KmsHook(kmsflow_conn_id=params["consumer_conn_id"])
        try:
            with tempfile.TemporaryDirectory(prefix="kmsflow-score-", dir=staging_root()) as tmp:
                plain = Path(tmp)
                client, retry = hook.get_conn(), hook.retry()  # the connection's deadline
                for src, dst in (
                    (dataset["dst"], plain / "dataset"),
                    (envelopes["model.pkl.enc"]["dst"], plain / "model.pkl"),
                    (envelopes["metrics.json.enc"]["dst"], plain / "metrics.json"),
                ):
                    decrypt_artifact(client, src, dst, log=log, retry=retry)
                metrics = json.loads((plain / "metrics.json").read_text())
                # authenticated above as written by a cryptoKeyEncrypter holder (see module doc)
                model = pickle.loads((plain / "model.pkl").read_bytes())
                x = [
                    np.load(plain / "dataset" / f"features-{i:03d}.npy", allow_pickle=False)
                    for i in range(SHARDS)
                ]
                y = [
                    np.load(plain / "dataset" / f"labels-{i:03d}.npy", allow_pickle=False)
                    for i in range(SHARDS)
                ]
                holdout = int(metrics["holdout_shard"])
                scores = {
                    "train_accuracy": float(
                        model.score(np.concatenate(x[:holdout]), np.concatenate(y[:holdout]))
                    ),
                    "holdout_accuracy": float(model.score(x[holdout], y[holdout])),
                }
        finally:
            hook.close()
        for name, value in scores.items():
            if abs(value - float(metrics[name])) > 1e-12:
                raise AirflowFailException(
                    f"{name} {value:.6f} of the decrypted model differs from the recorded {metrics[name]:.6f}"
                )
        log.info("Decrypted model reproduces its metrics: %s", scores)
        return {
            **scores,
            "matches_training_metrics": True,
            "envelopes": sorted([dataset["envelope_id"], *(f["envelope_id"] for f in envelopes.values())]),
        }

    prepared = prepare()
    files = train(prepared["staging"])
    encrypt_dataset = EncryptArtifactOperator(
        task_id="encrypt_dataset",
        key_name="{{ params.key_name }}",
        kmsflow_conn_id="{{ params.producer_conn_id }}",
        src=prepared["dataset_src"],
        dst=prepared["dataset_dst"],
        outlets=[ARTIFACTS],
    )
    encrypt_files = EncryptArtifactOperator.partial(
        task_id="encrypt_files",
        key_name="{{ params.key_name }}",
        kmsflow_conn_id="{{ params.producer_conn_id }}",
        dst_dir=prepared["output"],
        outlets=[ARTIFACTS],
    ).expand(src=files)
    files >> encrypt_dataset
    cleaned = cleanup_staging(prepared["staging"])
    [encrypt_dataset, encrypt_files] >> cleaned
    check_least_privilege(encrypt_dataset.output)
    score(encrypt_dataset.output, encrypt_files.output)


def _force_remove(func: Any, path: str, _exc: Any) -> None:
    """rmtree's error handler: make read-only entries writable and retry once."""
    os.chmod(path, stat.S_IRWXU)
    func(path)


kmsflow_ml_pipeline()
