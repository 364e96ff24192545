"""OpenLineage facets of the artifact operators: datasets in the file / gs namespaces, the run facet
naming the envelope id and the exact CryptoKeyVersion, no key material, and the provider working
without OpenLineage installed."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.execution_time.context import OutletEventAccessors
from openlineage.client.serde import Serde

from kmsflow.airflow import lineage
from kmsflow.airflow.operators import DecryptArtifactOperator, EncryptArtifactOperator
from kmsflow.envelope import SIDECAR_SUFFIX
from kmsflow.kms import resources

MARKER = b"LINEAGE-PLAINTEXT-91c2"


def run(op: Any) -> Any:
    result = op.execute(context={"outlet_events": OutletEventAccessors()})
    return result, op.get_openlineage_facets_on_complete(task_instance=None)


def event_json(facets: Any) -> str:
    """How the facets leave the process: OpenLineage's own serialisation."""
    return json.dumps(
        {
            "inputs": [Serde.to_dict(d) for d in facets.inputs],
            "outputs": [Serde.to_dict(d) for d in facets.outputs],
            "run": {k: Serde.to_dict(v) for k, v in facets.run_facets.items()},
        }
    )


def test_encrypt_and_decrypt_report_datasets_and_key_version(
    kms_conn: str, key: str, tmp_path: Path, hook: Any
) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(MARKER * 100)
    enc, dec = tmp_path / "model.bin.enc", tmp_path / "model.out"

    result, facets = run(EncryptArtifactOperator(task_id="e", key_name=key, src=str(src), dst=str(enc)))
    assert [(d.namespace, d.name) for d in facets.inputs] == [("file", str(src))]
    assert [(d.namespace, d.name) for d in facets.outputs] == [("file", str(enc))]
    facet = facets.run_facets[lineage.FACET]
    assert facet.action == "encrypt" and facet.envelopeKind == "file" and facet.fileCount == 1
    assert facet.envelopeId == result["envelope_id"]
    assert facet.cryptoKey == key and facet.cryptoKeyVersion == f"{key}/cryptoKeyVersions/1"

    wrapped = json.loads(Path(f"{enc}{SIDECAR_SUFFIX}").read_text())["key"]["wrapped_keyset"]
    text = event_json(facets)
    assert lineage.FACET in text and result["envelope_id"] in text
    assert wrapped[:24] not in text and base64.b64decode(wrapped).hex()[:32] not in text
    assert MARKER.decode() not in text

    # After a rotation and rewrap the decrypt's facet names the version that wraps it now.
    resources.rotate(hook.get_conn(), key)
    from kmsflow.lifecycle import rewrap

    assert rewrap(hook.get_conn(), [str(enc)]).rewrapped == 1
    _, facets = run(DecryptArtifactOperator(task_id="d", src=str(enc), dst=str(dec)))
    assert [(d.namespace, d.name) for d in facets.inputs] == [("file", str(enc))]
    assert [(d.namespace, d.name) for d in facets.outputs] == [("file", str(dec))]
    facet = facets.run_facets[lineage.FACET]
    assert facet.action == "decrypt" and facet.envelopeId == result["envelope_id"]
    assert facet.cryptoKeyVersion == f"{key}/cryptoKeyVersions/2"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("gs://bucket/runs/1/model.enc", ("gs://bucket", "runs/1/model.enc")),
        ("gs://bucket", ("gs://bucket", "/")),
        ("/data/a b/model.enc", ("file", "/data/a b/model.enc")),
        ("s3://b/k", ("s3://b", "k")),
    ],
)
def test_dataset_names(url: str, expected: tuple[str, str]) -> None:
    assert lineage.dataset_name(url) == expected


def test_envelope_gone_gives_datasets_only(tmp_path: Path) -> None:
    facets = lineage.artifact_lineage("decrypt", str(tmp_path / "gone.enc"), str(tmp_path / "out"))
    assert facets is not None and facets.run_facets == {} and len(facets.inputs) == 1


def test_without_openlineage_the_method_returns_none(tmp_path: Path) -> None:
    """A fresh interpreter where OpenLineage cannot be imported (``sys.modules`` entries of None):
    the lineage method answers None instead of raising."""
    code = f"""
import sys
from kmsflow.airflow.operators import EncryptArtifactOperator
paths = dict(src={str(tmp_path / "a")!r}, dst={str(tmp_path / "b")!r})
op = EncryptArtifactOperator(task_id="e", key_name="k", **paths)
for name in [m for m in sys.modules if m.startswith(("openlineage", "airflow.providers.openlineage"))]:
    del sys.modules[name]
for name in ("openlineage", "airflow.providers.openlineage", "airflow.providers.common.compat.openlineage"):
    sys.modules[name] = None
assert op.get_openlineage_facets_on_complete(None) is None
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
