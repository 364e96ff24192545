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
   ``kmsflow-ml-artifacts``) whose extra names the envelope id and the exact key version. With the
   ``signing_key`` param (an ``ASYMMETRIC_SIGN`` CryptoKeyVersion; the producer needs
   ``roles/cloudkms.signer`` and ``publicKeyViewer`` on it) each envelope is also signed. With the
   ``recipient`` param (an ML-KEM / RSA-OAEP key, or a public key file) the producer holds only
   that key's public key file (**recipient_public_key** exports it into staging, as
   ``kmsflow pubkey export`` does) and wraps locally for it: no KMS call and no role on the key
   but ``publicKeyViewer``; its connection then only signs;
4. **cleanup_staging** (teardown): removes the plaintext staging directory — also when training or
   encryption failed, as long as prepare ran;
5. **check_least_privilege**: the producer must be *refused* decrypting (verify writes nothing) and
   the consumer refused encrypting (not for a recipient: its public key encrypts); either
   succeeding fails the run: over-broad grants are a finding;
6. **score** (consumer): decrypts the three envelopes into a temporary directory, loads the model,
   re-scores it on the decrypted shards and requires exactly the metrics recorded at training time.
   With ``signing_key`` it first requires each envelope's signature by that version
   (``kmsflow decrypt --signer``; the consumer needs ``publicKeyViewer`` on it), so a model
   encrypted by anyone else who can encrypt under the key is refused before it is unpickled.
   The temporary plaintext is removed when the task ends, successfully or not.

Plaintext exists only in the staging directory (removed by the teardown) and inside ``score``'s
temporary directory; the output root receives envelopes only. Staging must be visible to the
train, encrypt and cleanup tasks: true for LocalExecutor / ``dag.test()`` / one Celery worker;
with several workers point ``KMSFLOW_STAGING_DIR`` at a volume they share (and that is not backed
up — it holds plaintext briefly).

The model is stored with ``pickle`` (skops is not installed here). Unpickling runs code, so it is
acceptable only because ``score`` unpickles bytes that just authenticated as an envelope under the
key, i.e. written by a holder of ``cryptoKeyEncrypter`` (the producer): the trust boundary is that
role — or, with ``signing_key``, the holder of the signing key. Prefer skops/ONNX for models
crossing teams.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from airflow.sdk import AssetAlias, Param, dag, setup, task, teardown

from kmsflow.airflow.operators.artifacts import EncryptArtifactOperator
from kmsflow.airflow.tasks import ml_pipeline as steps
from kmsflow.airflow.tasks.payloads import ArtifactPayload, LeastPrivilege, MlParams, Prepared, ScorePayload

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = AssetAlias("kmsflow-ml-artifacts")
KEY_UNLESS_RECIPIENT = "{{ '' if params.recipient else params.key_name }}"
"""The encrypt tasks' ``key_name``: empty when a recipient's public key file wraps instead."""
log = logging.getLogger(__name__)


@dag(
    dag_id="kmsflow_ml_pipeline",
    schedule=None,
    catchup=False,
    tags=["kmsflow", "ml", "envelope"],
    doc_md=__doc__,
    params={
        "output_root": Param(
            os.environ.get(steps.ARTIFACT_ROOT_ENV) or "demo-output/artifacts",
            type="string",
            title="Output root",
            description="Where envelopes are written (<root>/<run_id>/...): local path or gs://. "
            "Relative paths are resolved against the repository root. Default: $KMSFLOW_ARTIFACT_ROOT, "
            "else demo-output/artifacts (a root of ai-crypto-key in the seed spec, so rotation and "
            "shredding see these envelopes).",
        ),
        "key_name": Param(
            steps.DEFAULT_KEY, type="string", title="CryptoKey", description="Full CryptoKey name."
        ),
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
        "signing_key": Param(
            "",
            type="string",
            title="Signing key version",
            description="ASYMMETRIC_SIGN CryptoKeyVersion the producer signs every envelope with and the "
            "consumer requires the signature of; empty: envelopes are not signed.",
        ),
        "recipient": Param(
            "",
            type="string",
            title="Recipient key or public key file",
            description="Encrypt for a public key instead of CryptoKey: a KEY_ENCAPSULATION (ML-KEM) or "
            "ASYMMETRIC_DECRYPT (RSA-OAEP) CryptoKey or version, whose public key file the producer "
            "exports first (publicKeyViewer), or a file from `kmsflow pubkey export`. The producer "
            "then holds only that file (plus the signing key, if any); the consumer needs the "
            "decapsulate/decrypt role. Empty: the CryptoKey above wraps, in KMS.",
        ),
    },
)
def kmsflow_ml_pipeline() -> None:
    @setup
    @task(multiple_outputs=True)
    def prepare(params: MlParams | None = None, run_id: str | None = None) -> Prepared:
        """A private plaintext staging dir and this run's (empty) output location."""
        assert params is not None and run_id is not None
        return steps.prepare_run(params["output_root"], run_id, REPO_ROOT)

    @task
    def train(staging: str) -> list[str]:
        """Dataset shards, a trained model and its metrics, in staging; returns the file paths."""
        return steps.train(staging)

    @teardown
    @task
    def cleanup_staging(staging: str) -> None:
        """Remove every plaintext byte staged for this run, whatever happened upstream."""
        steps.cleanup_staging(staging)

    @task
    def recipient_public_key(staging: str, params: MlParams | None = None) -> str:
        """The recipient's public key file for the producer ("" without a recipient)."""
        assert params is not None
        return steps.recipient_public_key(
            params["recipient"], staging=staging, producer_conn_id=params["producer_conn_id"]
        )

    @task
    def check_least_privilege(envelope: ArtifactPayload, params: MlParams | None = None) -> LeastPrivilege:
        """The producer may not decrypt, the consumer may not encrypt (enforced by KMS IAM)."""
        assert params is not None
        return steps.check_least_privilege(
            envelope,
            producer_conn_id=params["producer_conn_id"],
            consumer_conn_id=params["consumer_conn_id"],
            key_name=params["key_name"],
            recipient=bool(params["recipient"]),
        )

    @task
    def score(
        dataset: ArtifactPayload, files: Iterable[ArtifactPayload], params: MlParams | None = None
    ) -> ScorePayload:
        """As the consumer: decrypt to a temp dir, load the model, re-score, compare with metrics."""
        assert params is not None
        return steps.score(
            dataset, files, consumer_conn_id=params["consumer_conn_id"], signer=params["signing_key"] or None
        )

    prepared = prepare()
    files = train(prepared["staging"])
    public_key_file = recipient_public_key(prepared["staging"])
    encrypt_dataset = EncryptArtifactOperator(
        task_id="encrypt_dataset",
        key_name=KEY_UNLESS_RECIPIENT,
        recipient=public_key_file,
        sign_with="{{ params.signing_key }}",
        kmsflow_conn_id="{{ params.producer_conn_id }}",
        src=prepared["dataset_src"],
        dst=prepared["dataset_dst"],
        outlets=[ARTIFACTS],
    )
    encrypt_files = EncryptArtifactOperator.partial(
        task_id="encrypt_files",
        key_name=KEY_UNLESS_RECIPIENT,
        recipient=public_key_file,
        sign_with="{{ params.signing_key }}",
        kmsflow_conn_id="{{ params.producer_conn_id }}",
        dst_dir=prepared["output"],
        outlets=[ARTIFACTS],
    ).expand(src=files)
    files >> encrypt_dataset
    cleaned = cleanup_staging(prepared["staging"])
    [encrypt_dataset, encrypt_files] >> cleaned
    check_least_privilege(encrypt_dataset.output)
    score(encrypt_dataset.output, encrypt_files.output)


kmsflow_ml_pipeline()
