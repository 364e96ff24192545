"""Build KMS clients for real Cloud KMS or the kmsflow emulator.

:func:`new_kms_client` gives ``google-cloud-kms``'s ``KeyManagementServiceClient`` (every call:
provisioning, IAM, lifecycle); :func:`new_data_client` gives the lean
:class:`~kmsflow.kms.dataplane.KmsDataClient` (Encrypt, Decrypt and the asymmetric calls only,
without importing ``google-cloud-kms``). Both reach the same endpoint with the same credentials.

``KMS_EMULATOR_HOST=host:port`` switches every kmsflow component to the emulator: plaintext gRPC,
anonymous credentials. The caller's IAM identity then travels in the ``x-kmsflow-principal`` gRPC
metadata (from ``principal=`` or ``KMSFLOW_PRINCIPAL``), which the emulator checks when it enforces
IAM. Against real Cloud KMS the principal is whoever the credentials say, and the metadata is not sent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.auth.exceptions import DefaultCredentialsError

from kmsflow.kms import logsafe
from kmsflow.kms.dataplane import KmsDataClient
from kmsflow.kms.errors import credentials_error

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud import kms_v1

# Before any client exists: DEBUG logs of google-cloud-kms must never carry KMS payloads.
logsafe.install()

EMULATOR_HOST_ENV = "KMS_EMULATOR_HOST"
PRINCIPAL_ENV = "KMSFLOW_PRINCIPAL"
PRINCIPAL_METADATA_KEY = "x-kmsflow-principal"

KMS_HOST = "cloudkms.googleapis.com"
KMS_SCOPES = ("https://www.googleapis.com/auth/cloud-platform", "https://www.googleapis.com/auth/cloudkms")
"""Cloud KMS's host and OAuth scopes, as ``google-cloud-kms``'s transports name them."""


def emulator_host() -> str | None:
    """The ``host:port`` of the KMS emulator named by ``KMS_EMULATOR_HOST``, or None."""
    value = os.environ.get(EMULATOR_HOST_ENV, "").strip()
    return value or None


class _PrincipalInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds the emulator's caller-identity metadata to every unary call."""

    def __init__(self, principal: str) -> None:
        self._principal = principal

    def intercept_unary_unary(
        self,
        continuation: Callable[[Any, Any], Any],
        client_call_details: Any,
        request: Any,
    ) -> Any:
        metadata = list(client_call_details.metadata or [])
        metadata.append((PRINCIPAL_METADATA_KEY, self._principal))
        details = client_call_details._replace(metadata=metadata)
        return continuation(details, request)


def emulator_channel(endpoint: str, principal: str | None = None) -> grpc.Channel:
    """A plaintext channel to the emulator, stamping ``principal`` on every call when given."""
    channel = grpc.insecure_channel(endpoint)
    if principal:
        channel = grpc.intercept_channel(channel, _PrincipalInterceptor(principal))
    return channel


def new_kms_client(
    *,
    endpoint: str | None = None,
    credentials: Credentials | None = None,
    principal: str | None = None,
) -> kms_v1.KeyManagementServiceClient:
    """Return a KMS client.

    ``endpoint`` (or ``KMS_EMULATOR_HOST``) selects the emulator; otherwise the client talks to real
    Cloud KMS with ``credentials`` (or Application Default Credentials when None).
    Raises :class:`~kmsflow.kms.errors.KmsCredentialsError` when there are no usable ADC: google-auth's
    own error names neither the emulator nor kmsflow's error classes (the CLI's exit codes).
    """
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import kms_v1
    from google.cloud.kms_v1.services.key_management_service.transports import (
        KeyManagementServiceGrpcTransport,
    )

    endpoint = endpoint or emulator_host()
    if endpoint is None:
        try:
            return kms_v1.KeyManagementServiceClient(credentials=credentials)
        except DefaultCredentialsError as exc:
            raise credentials_error(str(exc)) from exc
    transport = KeyManagementServiceGrpcTransport(
        host=endpoint,  # the client's api_endpoint: what per-endpoint caches key on
        channel=emulator_channel(endpoint, _principal(principal)),
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    return kms_v1.KeyManagementServiceClient(
        transport=transport,
        client_options=ClientOptions(api_endpoint=endpoint),
    )


def new_data_client(
    *,
    endpoint: str | None = None,
    credentials: Credentials | None = None,
    principal: str | None = None,
) -> KmsDataClient:
    """Return the lean data-plane client, chosen as :func:`new_kms_client` chooses its endpoint.

    Against Cloud KMS the channel is what ``google-cloud-kms``'s gRPC transport builds
    (``google.api_core.grpc_helpers.create_channel``: TLS, ``credentials`` or ADC with the KMS
    scopes, no message size cap); impersonated credentials (an Airflow connection's) go in as
    ``credentials``. Raises :class:`~kmsflow.kms.errors.KmsCredentialsError` without usable ADC.
    """
    endpoint = endpoint or emulator_host()
    if endpoint is not None:
        return KmsDataClient(emulator_channel(endpoint, _principal(principal)))
    from google.api_core import grpc_helpers

    try:
        channel = grpc_helpers.create_channel(
            f"{KMS_HOST}:443",
            credentials=credentials,
            default_scopes=KMS_SCOPES,
            default_host=KMS_HOST,
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
    except DefaultCredentialsError as exc:
        raise credentials_error(str(exc)) from exc
    return KmsDataClient(channel)


def _principal(principal: str | None) -> str | None:
    """The emulator caller: ``principal``, else ``KMSFLOW_PRINCIPAL``, else none."""
    return principal or os.environ.get(PRINCIPAL_ENV) or None
