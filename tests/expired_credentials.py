"""A KMS client whose credentials cannot be refreshed (an expired or revoked login), on a real TLS-like
gRPC channel, so that google-auth's token plugin fails exactly as it does against Cloud KMS: gRPC turns
the ``RefreshError`` into an UNAVAILABLE status, and no request ever reaches the server."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import grpc
from google.auth import credentials, exceptions
from google.auth.transport import grpc as auth_grpc
from google.auth.transport import requests as auth_requests
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import (
    KeyManagementServiceGrpcTransport,
)

REAUTH = "Reauthentication is needed. Please run `gcloud auth application-default login` to reauthenticate."


class _Expired(credentials.Credentials):  # type: ignore[misc]
    """Credentials whose every refresh fails, as an expired user login's does."""

    def refresh(self, request: Any) -> None:
        raise exceptions.RefreshError(REAUTH)


@contextmanager
def refresh_failing_client() -> Iterator[kms_v1.KeyManagementServiceClient]:
    """The client; call credentials need a secure channel, hence gRPC's local credentials."""
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    port = server.add_secure_port("localhost:0", grpc.local_server_credentials())
    server.start()
    plugin = auth_grpc.AuthMetadataPlugin(_Expired(), auth_requests.Request())
    channel = grpc.secure_channel(
        f"localhost:{port}",
        grpc.composite_channel_credentials(
            grpc.local_channel_credentials(), grpc.metadata_call_credentials(plugin)
        ),
    )
    try:
        yield kms_v1.KeyManagementServiceClient(transport=KeyManagementServiceGrpcTransport(channel=channel))
    finally:
        channel.close()
        server.stop(None)
