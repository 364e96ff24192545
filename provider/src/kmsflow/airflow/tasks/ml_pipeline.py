"""The steps of the ``kmsflow_ml_pipeline`` DAG, as plain functions.

``dags/kmsflow_ml_pipeline.py`` wires them around ``EncryptArtifactOperator``. numpy and
scikit-learn are imported inside :func:`train` and :func:`score` only: the DAG processor parses the
DAG file often and must not pay for them.

Plaintext exists only in the run's staging directory (:func:`prepare_run`, removed by
:func:`cleanup_staging`) and inside :func:`score`'s temporary directory; XCom carries paths,
envelope ids and metrics (:mod:`kmsflow.airflow.tasks.payloads`).
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

from airflow.sdk.exceptions import AirflowFailException

from kmsflow.airflow.errors import airflow_errors
from kmsflow.airflow.operators.artifacts import decrypt_artifact
from kmsflow.airflow.tasks.common import hook_scope
from kmsflow.airflow.tasks.payloads import ArtifactPayload, LeastPrivilege, Prepared, ScorePayload
from kmsflow.envelope import encrypt, verify
from kmsflow.kms.errors import KmsPermissionError

ARTIFACT_ROOT_ENV = "KMSFLOW_ARTIFACT_ROOT"
STAGING_ENV = "KMSFLOW_STAGING_DIR"
DEFAULT_KEY = "projects/kmsflow-demo/locations/us-central1/keyRings/ai-key-ring/cryptoKeys/ai-crypto-key"
SHARDS = 4
HOLDOUT = SHARDS - 1  # the last shard is never trained on
ROWS_PER_SHARD = 500
SEED = 42
log = logging.getLogger(__name__)


def resolve_output_root(value: str, repo_root: Path) -> str:
    """A URL as is; a local path absolute, relative ones against the repository root (not the cwd)."""
    if "://" in value:
        return value.rstrip("/")
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (repo_root / path).resolve())


def staging_root() -> Path:
    """Where per-run plaintext staging directories are made (``$KMSFLOW_STAGING_DIR`` or temp)."""
    return Path(os.environ.get(STAGING_ENV) or tempfile.gettempdir())


def _join(root: str, name: str) -> str:
    return f"{root}/{name}" if "://" in root else str(Path(root) / name)


def _safe(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._") or "run"


def prepare_run(output_root: str, run_id: str, repo_root: Path) -> Prepared:
    """A private (0700) plaintext staging dir and this run's (empty) output location."""
    root = staging_root()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"kmsflow-ml-{_safe(run_id)[:40]}-", dir=root))  # 0700
    output = _join(resolve_output_root(output_root, repo_root), _safe(run_id))
    if "://" not in output:
        Path(output).mkdir(parents=True, exist_ok=True)
    log.info("Staging plaintext in %s; envelopes go to %s", staging, output)
    return {
        "staging": str(staging),
        "output": output,
        "dataset_src": str(staging / "dataset"),
        "dataset_dst": _join(output, "dataset.enc"),
    }


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


def cleanup_staging(staging: str) -> None:
    """Remove every plaintext byte staged for this run, whatever happened upstream."""
    path = Path(staging)
    if path.exists():
        shutil.rmtree(path, onerror=_force_remove)
    if path.exists():
        raise AirflowFailException(f"{path}: plaintext staging could not be removed")
    log.info("Removed plaintext staging %s", path)


def _force_remove(func: Any, path: str, _exc: Any) -> None:
    """rmtree's error handler: make read-only entries writable and retry once."""
    os.chmod(path, stat.S_IRWXU)
    func(path)


RECIPIENT_FILE = "recipient.pub"
"""The public key file :func:`recipient_public_key` leaves in the run's staging directory."""


def recipient_public_key(recipient: str, *, staging: str, producer_conn_id: str) -> str:
    """The public key file the producer encrypts with, or "" when the run uses a symmetric key.

    ``recipient`` is a public key file (checked, then used as it is: no KMS call) or a recipient
    CryptoKey/CryptoKeyVersion, whose public key is fetched as ``kmsflow pubkey export`` does (its
    current version; always from KMS, never a local cache) with the producer's connection
    (``publicKeyViewer``, and ``viewer`` for a key name) and written to the run's staging directory.
    Either way the encrypt tasks get a file: they hold nothing else of the recipient key.
    """
    from kmsflow.kms import public_key

    if not recipient:
        return ""
    with airflow_errors():
        if not public_key.names_a_key(recipient):
            public_key.read_file(recipient)
            return recipient
        with hook_scope(producer_conn_id) as hook:
            public = public_key.load(recipient, hook.get_conn())
    path = Path(staging) / RECIPIENT_FILE
    path.write_bytes(public.to_file_bytes())
    log.info("Exported the %s public key of %s to %s", public.algorithm, public.version_name, path)
    return str(path)


def check_least_privilege(
    envelope: ArtifactPayload,
    *,
    producer_conn_id: str,
    consumer_conn_id: str,
    key_name: str,
    recipient: bool = False,
) -> LeastPrivilege:
    """The producer may not decrypt, the consumer may not encrypt (enforced by KMS IAM).

    For a ``recipient`` envelope only the first applies: anyone holding the public key can
    encrypt, so the producer's refusal to unwrap (Decapsulate / AsymmetricDecrypt) is the check.
    """
    with hook_scope(producer_conn_id) as producer:
        try:
            verify(producer.get_conn(), envelope["dst"])  # authenticates only: writes nothing
        except KmsPermissionError as exc:
            log.info("Producer refused decrypt, as it must be: %s", exc)
        else:
            raise AirflowFailException(
                f"{producer_conn_id} could decrypt {envelope['dst']}: grant producers "
                "roles/cloudkms.cryptoKeyEncrypter only, or for a recipient key publicKeyViewer "
                "(least privilege)"
            )
    if recipient:
        return {"producer_decrypt": "refused", "consumer_encrypt": "not applicable: public key"}

    with hook_scope(consumer_conn_id) as consumer:
        try:
            with tempfile.TemporaryDirectory(prefix="kmsflow-lp-") as tmp:
                probe = Path(tmp) / "probe"
                probe.write_bytes(b"not a secret")
                encrypt(consumer.get_conn(), key_name, str(probe), str(Path(tmp) / "probe.enc"))
        except KmsPermissionError as exc:
            log.info("Consumer refused encrypt, as it must be: %s", exc)
        else:
            raise AirflowFailException(
                f"{consumer_conn_id} could encrypt under {key_name}: grant "
                "consumers roles/cloudkms.cryptoKeyDecrypter only (least privilege)"
            )
    return {"producer_decrypt": "refused", "consumer_encrypt": "refused"}


def score(
    dataset: ArtifactPayload,
    files: Iterable[ArtifactPayload],
    *,
    consumer_conn_id: str,
    signer: str | None = None,
) -> ScorePayload:
    """As the consumer: decrypt to a temp dir, load the model, re-score, compare with metrics.

    With ``signer`` (``kmsflow decrypt --signer`` semantics: a public key file, a signing
    CryptoKeyVersion or CryptoKey) every envelope must carry its signature, checked before a byte
    is decrypted."""
    import pickle

    import numpy as np

    envelopes = {Path(f["dst"]).name: f for f in files}
    with (
        hook_scope(consumer_conn_id) as hook,
        tempfile.TemporaryDirectory(prefix="kmsflow-score-", dir=staging_root()) as tmp,
    ):
        plain = Path(tmp)
        client, retry = hook.get_conn(), hook.retry()  # the connection's deadline
        for src, dst in (
            (dataset["dst"], plain / "dataset"),
            (envelopes["model.pkl.enc"]["dst"], plain / "model.pkl"),
            (envelopes["metrics.json.enc"]["dst"], plain / "metrics.json"),
        ):
            decrypt_artifact(client, src, dst, log=log, retry=retry, signer=signer)
        metrics = json.loads((plain / "metrics.json").read_text())
        # authenticated above as written by a cryptoKeyEncrypter holder (see the DAG's doc)
        model = pickle.loads((plain / "model.pkl").read_bytes())
        x = [np.load(plain / "dataset" / f"features-{i:03d}.npy", allow_pickle=False) for i in range(SHARDS)]
        y = [np.load(plain / "dataset" / f"labels-{i:03d}.npy", allow_pickle=False) for i in range(SHARDS)]
        holdout = int(metrics["holdout_shard"])
        scores = {
            "train_accuracy": float(model.score(np.concatenate(x[:holdout]), np.concatenate(y[:holdout]))),
            "holdout_accuracy": float(model.score(x[holdout], y[holdout])),
        }
    for name, value in scores.items():
        if abs(value - float(metrics[name])) > 1e-12:
            raise AirflowFailException(
                f"{name} {value:.6f} of the decrypted model differs from the recorded {metrics[name]:.6f}"
            )
    log.info("Decrypted model reproduces its metrics: %s", scores)
    return {
        "train_accuracy": scores["train_accuracy"],
        "holdout_accuracy": scores["holdout_accuracy"],
        "matches_training_metrics": True,
        "envelopes": sorted([dataset["envelope_id"], *(f["envelope_id"] for f in envelopes.values())]),
    }
