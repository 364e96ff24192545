"""OpenLineage for the artifact operators: what was read, what was written, under which key version.

Optional: ``apache-airflow-providers-openlineage`` is not a dependency of the provider. Without it
:func:`artifact_lineage` returns None (Airflow never calls the operators' method then anyway), and
nothing here is imported by the operators until OpenLineage asks.

Datasets follow the OpenLineage naming the Airflow providers use for the same URIs: a local path is
namespace ``file``, name the absolute path; ``gs://bucket/key`` is namespace ``gs://bucket``, name
``key``. The run facet ``kmsflow_envelope`` names the envelope id and the exact CryptoKeyVersion
that wraps its data key, read from the envelope record (no KMS call) — never key material: neither
the data key nor the wrapped keyset.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from kmsflow.envelope import Envelope, EnvelopeError

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

FACET = "kmsflow_envelope"
"""The run facet's name in an OpenLineage event."""
SCHEMA_URL = "https://kmsflow.invalid/docs/AIRFLOW.md#openlineage"
"""The facet's ``_schemaURL``: the fields are documented in docs/AIRFLOW.md ("OpenLineage")."""


def dataset_name(url: str) -> tuple[str, str]:
    """(namespace, name) of an artifact URL (:func:`kmsflow.airflow.operators.artifacts.artifact_url`)."""
    if url.startswith("gs://"):
        bucket, _, key = url[len("gs://") :].partition("/")
        return f"gs://{bucket}", key or "/"
    if "://" in url:
        protocol, _, rest = url.partition("://")
        authority, _, path = rest.partition("/")
        return f"{protocol}://{authority}", path or "/"
    return "file", url


def artifact_lineage(
    action: Literal["encrypt", "decrypt"], src_url: str, dst_url: str
) -> OperatorLineage[Any, Any] | None:
    """Input ``src_url``, output ``dst_url`` and the envelope's run facet (None without OpenLineage).

    The envelope is the destination of an encrypt and the source of a decrypt; an envelope whose
    record can no longer be read (moved or removed since the task ended) gets the datasets only.
    """
    try:
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        return None
    envelope_url = dst_url if action == "encrypt" else src_url
    facets: dict[str, Any] = {}
    try:
        record = Envelope.open(envelope_url).record
    except (EnvelopeError, OSError):
        pass
    else:
        facets[FACET] = envelope_facet()(
            action=action,
            envelopeId=record.envelope_id,
            envelopeKind=record.kind,
            cryptoKey=record.key.crypto_key,
            cryptoKeyVersion=record.key.crypto_key_version,
            fileCount=len(record.files),
        )
    return OperatorLineage(
        inputs=[Dataset(*dataset_name(src_url))],
        outputs=[Dataset(*dataset_name(dst_url))],
        run_facets=facets,
    )


@cache
def envelope_facet() -> Any:
    """The ``KmsflowEnvelopeRunFacet`` class, defined on first use (it subclasses OpenLineage's
    ``RunFacet``, which exists only where the OpenLineage client is installed)."""
    from attr import define
    from openlineage.client.generated.base import RunFacet

    @define
    class KmsflowEnvelopeRunFacet(RunFacet):  # type: ignore[misc]
        """The envelope a kmsflow artifact task wrote or read, and the key version wrapping it."""

        action: str
        envelopeId: str  # noqa: N815 - OpenLineage facets spell fields in camelCase
        envelopeKind: str  # noqa: N815
        cryptoKey: str  # noqa: N815
        cryptoKeyVersion: str  # noqa: N815
        fileCount: int  # noqa: N815

        @staticmethod
        def _get_schema() -> str:
            return SCHEMA_URL

    return KmsflowEnvelopeRunFacet
