"""The lean KMS data path: Encrypt, Decrypt and the asymmetric calls without ``google-cloud-kms``.

Why: ``import google.cloud.kms_v1`` costs 4 to 6 times a process that imports gRPC and Tink (the package
imports every service, async clients, REST transports, ``google.auth.aio``, aiohttp), and a
command making one Encrypt or Decrypt paid that for code it never ran. :class:`KmsDataClient`
sends the same messages over the same kind of channel and fails the same way:

* messages: Google's own (``googleapis`` ``google/cloud/kms/v1``), generated into
  :mod:`kmsflow.kms._proto` by ``scripts/gen_kms_protos.sh`` under the package
  ``kmsflow.kms.dataplane.v1`` (``google-cloud-kms`` owns ``google.cloud.kms.v1.*`` in protobuf's
  default pool). The wire format knows field numbers only, so the bytes are those
  ``google-cloud-kms`` sends; ``tests/kms/test_lean_drift.py`` holds every field to its messages.
* channel: made by ``kmsflow.kms.client.new_data_client`` as ``new_kms_client`` makes it
  (emulator: plaintext, ``x-kmsflow-principal``; Cloud KMS: ``google.api_core.grpc_helpers``
  with the credentials given, else ADC), or shared with a ``google-cloud-kms`` client
  (:meth:`KmsDataClient.over`), credentials and interceptors included.
* per call: the routing header ``x-goog-request-params: name=...`` as GAPIC sends it.
* errors: a ``grpc.RpcError`` becomes ``google.api_core.exceptions.from_grpc_error(...)``, what
  GAPIC raises, so ``kmsflow.kms.errors.translate`` and the retry predicate serve both paths.
* retries: ``retry=`` takes a ``google.api_core`` ``Retry`` as GAPIC does (each attempt then has
  GAPIC's 60 s timeout); without one, :class:`kmsflow.kms.backoff.Backoff` under the ambient
  deadline, the same schedule without importing ``google.api_core.retry``.

Responses are the raw protobuf messages (``kms_dataplane_pb2``): CRC32C checks belong to the caller
(:mod:`kmsflow.kms.crypto`), which runs the same checks whichever client answered.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

import grpc
from google.protobuf.message import Message

from kmsflow.kms._proto import kms_dataplane_pb2 as pb
from kmsflow.kms.backoff import ATTEMPT_TIMEOUT, Backoff

if TYPE_CHECKING:
    from google.cloud import kms_v1

SERVICE = "google.cloud.kms.v1.KeyManagementService"
"""The gRPC service the calls go to: Cloud KMS's own name, whatever the messages' package."""

RetryDecorator = Callable[[Callable[[], Any]], Callable[[], Any]]
"""What GAPIC's ``retry=`` is (a ``google.api_core.retry.Retry``): wraps a call in retries."""

# RPC name -> (request class, response class); every name a generated call exists for.
METHODS: dict[str, tuple[type[Message], type[Message]]] = {
    "Encrypt": (pb.EncryptRequest, pb.EncryptResponse),
    "Decrypt": (pb.DecryptRequest, pb.DecryptResponse),
    "AsymmetricSign": (pb.AsymmetricSignRequest, pb.AsymmetricSignResponse),
    "AsymmetricDecrypt": (pb.AsymmetricDecryptRequest, pb.AsymmetricDecryptResponse),
    "Decapsulate": (pb.DecapsulateRequest, pb.DecapsulateResponse),
    "GetPublicKey": (pb.GetPublicKeyRequest, pb.PublicKey),
}


def routing_metadata(name: str) -> tuple[tuple[str, str], ...]:
    """GAPIC's routing header for a request on the resource ``name`` (Cloud KMS routes by it)."""
    return (("x-goog-request-params", urlencode({"name": name}, safe="/")),)


class KmsDataClient:
    """Cloud KMS data-plane calls over one gRPC channel; a context manager closing what it owns.

    Each method takes the request as its message or as a mapping of its fields (as GAPIC does) and
    returns the response message; ``retry`` as described in the module docstring.
    """

    def __init__(self, channel: grpc.Channel, *, owns_channel: bool = True) -> None:
        self._channel = channel
        self._owns_channel = owns_channel
        self._rpcs = {
            method: channel.unary_unary(
                f"/{SERVICE}/{method}",
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )
            for method, (request, response) in METHODS.items()
        }

    @classmethod
    def over(cls, client: kms_v1.KeyManagementServiceClient) -> KmsDataClient:
        """Data-plane calls over the channel of a ``google-cloud-kms`` gRPC client (an Airflow
        hook's, with its connection's credentials and impersonation): not closed by this one."""
        return cls(client.transport.grpc_channel, owns_channel=False)  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> KmsDataClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def encrypt(
        self, request: pb.EncryptRequest | Mapping[str, Any], *, retry: RetryDecorator | None = None
    ) -> pb.EncryptResponse:
        return cast(pb.EncryptResponse, self._call("Encrypt", request, retry))

    def decrypt(
        self, request: pb.DecryptRequest | Mapping[str, Any], *, retry: RetryDecorator | None = None
    ) -> pb.DecryptResponse:
        return cast(pb.DecryptResponse, self._call("Decrypt", request, retry))

    def asymmetric_sign(
        self, request: pb.AsymmetricSignRequest | Mapping[str, Any], *, retry: RetryDecorator | None = None
    ) -> pb.AsymmetricSignResponse:
        return cast(pb.AsymmetricSignResponse, self._call("AsymmetricSign", request, retry))

    def asymmetric_decrypt(
        self, request: pb.AsymmetricDecryptRequest | Mapping[str, Any], *, retry: RetryDecorator | None = None
    ) -> pb.AsymmetricDecryptResponse:
        return cast(pb.AsymmetricDecryptResponse, self._call("AsymmetricDecrypt", request, retry))

    def decapsulate(
        self, request: pb.DecapsulateRequest | Mapping[str, Any], *, retry: RetryDecorator | None = None
    ) -> pb.DecapsulateResponse:
        return cast(pb.DecapsulateResponse, self._call("Decapsulate", request, retry))

    def get_public_key(
        self, request: pb.GetPublicKeyRequest | Mapping[str, Any], *, retry: RetryDecorator | None = None
    ) -> pb.PublicKey:
        return cast(pb.PublicKey, self._call("GetPublicKey", request, retry))

    def _call(
        self, method: str, request: Message | Mapping[str, Any], retry: RetryDecorator | None
    ) -> Message:
        request_type, _ = METHODS[method]
        message: Any = request_type(**request) if isinstance(request, Mapping) else request
        rpc = self._rpcs[method]
        metadata = routing_metadata(message.name)

        def attempt(timeout: float) -> Message:
            try:
                response: Message = rpc(message, timeout=timeout, metadata=metadata)
            except grpc.RpcError as exc:
                from google.api_core import exceptions as gexc

                raise gexc.from_grpc_error(exc) from exc  # type: ignore[no-untyped-call]
            return response

        if retry is None:
            return Backoff.default().run(attempt)
        result: Message = retry(lambda: attempt(ATTEMPT_TIMEOUT))()
        return result


_OVER: weakref.WeakKeyDictionary[Any, KmsDataClient] = weakref.WeakKeyDictionary()


def data_client(client: KmsDataClient | kms_v1.KeyManagementServiceClient) -> KmsDataClient:
    """``client`` if it is lean, else the lean client over its channel (:meth:`KmsDataClient.over`),
    made once per ``google-cloud-kms`` client and kept as long as that client lives.

    Why: callers holding a ``google-cloud-kms`` client (an Airflow hook's, rewrap's) get the lean
    calls' lower CPU per call on the same channel and credentials without changing what they hold.
    Two threads meeting a new client at once may each build one; either is as good.
    """
    if isinstance(client, KmsDataClient):
        return client
    lean = _OVER.get(client)
    if lean is None:
        lean = _OVER.setdefault(client, KmsDataClient.over(client))
    return lean
