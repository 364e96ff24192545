"""Airflow hooks for Cloud KMS: ``KmsHook`` (sync, workers) and ``KmsAsyncHook`` (triggerer).

Credentials are ``GoogleBaseHook``'s (service-account key path or JSON, credential configuration
file, ADC, ``impersonation_chain``, quota project), so a ``kmsflow`` connection accepts exactly the
fields a ``google_cloud_platform`` connection does, plus a few of our own in its extras:

``endpoint``
    ``host:port`` of a kmsflow emulator. When set (or, failing that, when ``KMS_EMULATOR_HOST`` is
    set) the hook speaks plaintext gRPC with anonymous credentials — the contract every kmsflow
    component honours. An explicit connection endpoint wins over the ambient variable because it is
    the more specific configuration.
``principal``
    The IAM member the emulator sees as the caller (``x-kmsflow-principal``), else
    ``KMSFLOW_PRINCIPAL``. Ignored against real Cloud KMS, where the credentials are the principal.
``audit_log``
    Audit log location (local path or ``gs://``) receiving one ``kmsflow.audit`` event per
    state-changing action of the operators using this connection; operators may override it.
``deadline``
    Total seconds transient errors (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) are retried
    with jittered exponential backoff; the hook argument ``deadline=`` overrides it.

The KMS work itself lives in the Airflow-free core (``kmsflow.kms``); these methods only bind it to
a connection, so the CLI, the DAGs and the operators behave identically.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

import grpc
from airflow.providers.google.common.consts import CLIENT_INFO
from airflow.providers.google.common.hooks.base_google import GoogleBaseHook
from airflow.sdk import BaseHook, Connection
from airflow.sdk.exceptions import AirflowNotFoundException
from google.api_core import exceptions as gexc
from google.api_core import retry_async
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import (
    KeyManagementServiceGrpcAsyncIOTransport,
)

from kmsflow.audit import resolve_actor
from kmsflow.kms import crypto, iam, resources
from kmsflow.kms.backoff import is_transient, retry_deadline
from kmsflow.kms.client import PRINCIPAL_ENV, PRINCIPAL_METADATA_KEY, emulator_host, new_kms_client
from kmsflow.kms.crypto import Wrapped
from kmsflow.kms.errors import translate

DEFAULT_DEADLINE = 60.0
LIST_PAGE_SIZE = 1000
"""Keys per ListCryptoKeys page (Cloud KMS's maximum): a key ring of up to 1000 keys is one call."""


_T = TypeVar("_T")
_P = ParamSpec("_P")


def _as_float(value: Any, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"kmsflow connection: 'deadline' must be a number of seconds, got {value!r}"
        ) from exc
    if number <= 0:
        raise ValueError(f"kmsflow connection: 'deadline' must be positive, got {value!r}")
    return number


def within_deadline(method: Callable[Concatenate[KmsHook, _P], _T]) -> Callable[Concatenate[KmsHook, _P], _T]:
    """Run a hook method, or a task function whose first argument is the hook, under the
    connection's retry deadline (:meth:`KmsHook.deadline_scope`): the resource, IAM, spec and
    lifecycle functions it calls pick it up from there (lifecycle thread pools carry it along,
    see :mod:`kmsflow.pools`)."""

    @functools.wraps(method)
    def wrapper(self: KmsHook, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        with self.deadline_scope():
            return method(self, *args, **kwargs)

    return wrapper


class KmsHook(GoogleBaseHook):
    """Cloud KMS (or the kmsflow emulator) through a ``kmsflow`` connection.

    :param kmsflow_conn_id: the ``kmsflow`` connection (default ``kmsflow_default``).
    :param impersonation_chain: service account(s) to impersonate, as in every Google hook.
    :param deadline: total retry deadline in seconds for transient errors; defaults to the
        connection's ``deadline`` extra, else 60.
    """

    conn_name_attr = "kmsflow_conn_id"
    default_conn_name = "kmsflow_default"
    conn_type = "kmsflow"
    hook_name = "Cloud KMS (kmsflow)"
    test_timeout = 5.0
    """Seconds :meth:`test_connection` waits for an emulator to answer."""

    def __init__(
        self,
        kmsflow_conn_id: str = default_conn_name,
        impersonation_chain: str | Sequence[str] | None = None,
        *,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.kmsflow_conn_id = kmsflow_conn_id
        super().__init__(gcp_conn_id=kmsflow_conn_id, impersonation_chain=impersonation_chain, **kwargs)
        self._deadline_arg = deadline
        self._client: kms_v1.KeyManagementServiceClient | None = None

    @classmethod
    def get_connection(cls, conn_id: str) -> Connection:
        """The connection; with an emulator configured, a missing *default* connection is an empty one.

        That keeps ``KMS_EMULATOR_HOST=... airflow dags test ...`` working without first creating a
        connection, as the contract promises; a missing non-default connection is still an error.
        """
        try:
            return super().get_connection(conn_id)
        except AirflowNotFoundException:
            if conn_id == cls.default_conn_name and emulator_host():
                return Connection(conn_id=conn_id, conn_type=cls.conn_type)
            raise

    # -- settings ------------------------------------------------------------------------------

    def _get_field(self, f: str, default: Any = None) -> Any:
        """A connection extra by its plain name, else by the ``extra__kmsflow__`` prefixed name.

        Older UIs and some secrets backends store form fields prefixed with the connection type;
        ``GoogleBaseHook`` only knows its own ``extra__google_cloud_platform__`` prefix.
        """
        extras = getattr(self, "extras", None) or {}
        if extras.get(f) in (None, ""):
            prefixed = extras.get(f"extra__{self.conn_type}__{f}")
            if prefixed not in (None, ""):
                return prefixed
        return super()._get_field(f, default)

    @property
    def endpoint(self) -> str | None:
        """The emulator endpoint, or None for real Cloud KMS."""
        value = str(self._get_field("endpoint") or "").strip()
        return value or emulator_host()

    @property
    def principal(self) -> str | None:
        """The emulator caller identity (connection extra ``principal``, else ``KMSFLOW_PRINCIPAL``)."""
        value = self._get_field("principal") or os.environ.get(PRINCIPAL_ENV)
        return str(value) if value else None

    @property
    def deadline(self) -> float:
        """Seconds transient KMS errors are retried in total before the call fails."""
        if self._deadline_arg is not None:
            return _as_float(self._deadline_arg, DEFAULT_DEADLINE)
        return _as_float(self._get_field("deadline"), DEFAULT_DEADLINE)

    def retry(self) -> Retry:
        """The retry policy for one KMS call under :attr:`deadline`.

        Calls that go through the Airflow-free core (``kmsflow.envelope``, ``kmsflow.kms``) take it as
        ``retry=`` so the connection's deadline applies to them, not the core's 60 s default.
        """
        return crypto.default_retry(self.deadline)

    def deadline_scope(self) -> AbstractContextManager[None]:
        """A block in which every kmsflow KMS call made on this thread retries under :attr:`deadline`
        (resource, IAM and key-spec functions do not take ``retry=``: see ``backoff.retry_deadline``)."""
        return retry_deadline(self.deadline)

    @property
    def audit_log(self) -> str | None:
        """Where state changes made through this connection are recorded (extra ``audit_log``)."""
        value = str(self._get_field("audit_log") or "").strip()
        return value or None

    def actor(self) -> str:
        """The identity audit events name: the emulator principal, else the credentials' account."""
        if self.endpoint:
            return resolve_actor(self.principal)
        return resolve_actor(None, credentials=self.get_credentials())

    @property
    def project(self) -> str | None:
        """The connection's ``project`` extra (None when unset); never triggers credential lookup."""
        value = self._get_field("project")
        return str(value) if value else None

    # -- client --------------------------------------------------------------------------------

    def get_conn(self) -> kms_v1.KeyManagementServiceClient:
        """A cached ``KeyManagementServiceClient`` for the emulator or for real Cloud KMS."""
        if self._client is None:
            endpoint = self.endpoint
            if endpoint:
                self._client = new_kms_client(endpoint=endpoint, principal=self.principal)
            else:
                self._client = kms_v1.KeyManagementServiceClient(
                    credentials=self.get_credentials(),
                    client_info=CLIENT_INFO,
                    client_options=self.get_client_options(),
                )
        return self._client

    def close(self) -> None:
        """Close the client's channel (a no-op if no client was made)."""
        if self._client is not None:
            self._client.transport.close()  # type: ignore[no-untyped-call]
            self._client = None

    def test_connection(self) -> tuple[bool, str]:
        """The UI's "Test" button: an emulator must answer on its endpoint; else GoogleBaseHook's check."""
        endpoint = self.endpoint
        if not endpoint:
            status, message = super().test_connection()  # type: ignore[no-untyped-call]
            return bool(status), str(message)
        channel = grpc.insecure_channel(endpoint)
        try:
            grpc.channel_ready_future(channel).result(timeout=self.test_timeout)
            return True, f"kmsflow emulator reachable at {endpoint}"
        except grpc.FutureTimeoutError:
            return False, f"no kmsflow emulator answering at {endpoint} within {self.test_timeout:g}s"
        finally:
            channel.close()

    # -- crypto (CRC32C verified, retried under ``deadline``) ------------------------------------

    def encrypt(self, key_name: str, plaintext: bytes, aad: bytes = b"") -> Wrapped:
        """Encrypt under ``key_name``; the result names the exact CryptoKeyVersion used."""
        return crypto.encrypt(self.get_conn(), key_name, plaintext, aad, retry=self.retry())

    def decrypt(self, key_name: str, ciphertext: bytes, aad: bytes = b"") -> bytes:
        """Decrypt a ciphertext made by any version of the CryptoKey ``key_name``."""
        return crypto.decrypt(self.get_conn(), key_name, ciphertext, aad, retry=self.retry())

    # -- resources -----------------------------------------------------------------------------

    @within_deadline
    def ensure_key_ring(self, location: str, key_ring_id: str) -> tuple[kms_v1.KeyRing, bool]:
        """Create the key ring unless it exists; returns it and whether it was created."""
        return resources.ensure_key_ring(self.get_conn(), location, key_ring_id)

    @within_deadline
    def ensure_crypto_key(
        self,
        key_ring: str,
        key_id: str,
        *,
        purpose: str,
        algorithm: str,
        protection_level: str,
        rotation_period: timedelta | None = None,
        next_rotation_time: datetime | None = None,
        destroy_scheduled_duration: timedelta | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> tuple[kms_v1.CryptoKey, list[str]]:
        """Create or converge a CryptoKey; returns it and the list of changes made (empty: none)."""
        return resources.ensure_crypto_key(
            self.get_conn(),
            key_ring,
            key_id,
            purpose=purpose,
            algorithm=algorithm,
            protection_level=protection_level,
            rotation_period=rotation_period,
            next_rotation_time=next_rotation_time,
            destroy_scheduled_duration=destroy_scheduled_duration,
            labels=dict(labels) if labels is not None else None,
        )

    @within_deadline
    def get_key(self, key_name: str) -> kms_v1.CryptoKey:
        """The CryptoKey (with its primary version)."""
        return resources.get_key(self.get_conn(), key_name)

    def get_crypto_key_version(self, version_name: str) -> kms_v1.CryptoKeyVersion:
        """One CryptoKeyVersion, for sensors in poke mode."""
        client = self.get_conn()
        try:
            return client.get_crypto_key_version(name=version_name, retry=self.retry())
        except gexc.GoogleAPIError as exc:
            raise translate(exc, f"get {version_name}") from exc

    @within_deadline
    def list_versions(
        self, key_name: str, states: Iterable[str] | None = None
    ) -> list[kms_v1.CryptoKeyVersion]:
        """Versions of ``key_name``, optionally only those in ``states`` (e.g. ``["ENABLED"]``)."""
        return list(resources.list_versions(self.get_conn(), key_name, states=states))

    @within_deadline
    def rotate(self, key_name: str) -> kms_v1.CryptoKeyVersion:
        """Create a new version and make it primary."""
        return resources.rotate(self.get_conn(), key_name)

    @within_deadline
    def set_primary(self, key_name: str, version_id: str) -> kms_v1.CryptoKeyVersion:
        """Make ``version_id`` (ENABLED) the primary of ``key_name``; returns the new primary."""
        return resources.set_primary(self.get_conn(), key_name, version_id)

    @within_deadline
    def enable_version(self, version_name: str) -> kms_v1.CryptoKeyVersion:
        """Enable a DISABLED version."""
        return resources.enable_version(self.get_conn(), version_name)

    @within_deadline
    def disable_version(self, version_name: str) -> kms_v1.CryptoKeyVersion:
        """Disable a version; refuses the primary (``KmsGuardError``)."""
        return resources.disable_version(self.get_conn(), version_name)

    @within_deadline
    def destroy_version(self, version_name: str) -> kms_v1.CryptoKeyVersion:
        """Schedule destruction of a version; refuses the primary (``KmsGuardError``)."""
        return resources.destroy_version(self.get_conn(), version_name)

    @within_deadline
    def restore_version(self, version_name: str, *, enable: bool = False) -> kms_v1.CryptoKeyVersion:
        """Cancel a scheduled destruction: the version comes back DISABLED (ENABLED if ``enable``)."""
        return resources.restore_version(self.get_conn(), version_name, enable=enable)

    # -- IAM -----------------------------------------------------------------------------------

    @within_deadline
    def grant(self, resource: str, role: str, members: Iterable[str]) -> bool:
        """Add ``members`` to ``role`` on ``resource``; True when the policy changed."""
        return iam.grant(self.get_conn(), resource, role, list(members))

    @within_deadline
    def revoke(self, resource: str, role: str, members: Iterable[str]) -> bool:
        """Remove ``members`` from ``role`` on ``resource``; True when the policy changed."""
        return iam.revoke(self.get_conn(), resource, role, list(members))

    @within_deadline
    def set_role_members(
        self,
        resource: str,
        roles: Mapping[str, Iterable[str]],
        authoritative_roles: Iterable[str] | None = None,
    ) -> list[iam.Drift]:
        """Make the listed roles hold exactly the listed members (other roles untouched).

        Returns the drift that was corrected (empty: the policy already matched, nothing written).
        """
        return iam.set_role_members(
            self.get_conn(),
            resource,
            {role: list(members) for role, members in roles.items()},
            authoritative_roles,
        )

    @within_deadline
    def get_iam_policy(self, resource: str) -> iam.Policy:
        """The live IAM policy of a key ring or crypto key."""
        return iam.get_policy(self.get_conn(), resource)

    @within_deadline
    def iam_drift(self, resource: str, wanted: Mapping[str, Iterable[str]]) -> list[iam.Drift]:
        """How the listed roles on ``resource`` differ from ``wanted`` (empty: no drift; read only)."""
        return iam.drift(self.get_conn(), resource, {role: list(m) for role, m in wanted.items()})


class _AsyncPrincipalInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """grpc.aio twin of the core's interceptor: stamps the emulator caller identity on each call."""

    def __init__(self, principal: str) -> None:
        self._principal = principal

    async def intercept_unary_unary(
        self,
        continuation: Callable[[Any, Any], Any],
        client_call_details: Any,
        request: Any,
    ) -> Any:
        metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()))
        metadata.add(PRINCIPAL_METADATA_KEY, self._principal)
        details = grpc.aio.ClientCallDetails(
            method=client_call_details.method,
            timeout=client_call_details.timeout,
            metadata=metadata,
            credentials=client_call_details.credentials,
            wait_for_ready=client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


class KmsAsyncHook(BaseHook):
    """Async Cloud KMS access for triggers, configured by the same ``kmsflow`` connection.

    Connection and credential look-ups are blocking, so they run in a worker thread (the triggerer's
    event loop must never block); the gRPC calls themselves use ``KeyManagementServiceAsyncClient``.
    Use it as an async context manager, or call :meth:`close`, so the channel is released.
    """

    conn_name_attr = KmsHook.conn_name_attr
    default_conn_name = KmsHook.default_conn_name
    conn_type = KmsHook.conn_type
    hook_name = KmsHook.hook_name

    def __init__(
        self,
        kmsflow_conn_id: str = KmsHook.default_conn_name,
        impersonation_chain: str | Sequence[str] | None = None,
        *,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.kmsflow_conn_id = kmsflow_conn_id
        self.impersonation_chain = impersonation_chain
        self._deadline_arg = deadline
        self._sync_hook: KmsHook | None = None
        self._client: kms_v1.KeyManagementServiceAsyncClient | None = None

    async def get_sync_hook(self) -> KmsHook:
        """The sync hook (built in a thread: its constructor reads the connection)."""
        if self._sync_hook is None:
            self._sync_hook = await asyncio.to_thread(
                KmsHook,
                kmsflow_conn_id=self.kmsflow_conn_id,
                impersonation_chain=self.impersonation_chain,
                deadline=self._deadline_arg,
            )
        return self._sync_hook

    async def get_conn(self) -> kms_v1.KeyManagementServiceAsyncClient:
        """A cached async client; its channel belongs to the running event loop."""
        if self._client is None:
            sync_hook = await self.get_sync_hook()
            endpoint = sync_hook.endpoint
            if endpoint:
                principal = sync_hook.principal
                channel = grpc.aio.insecure_channel(
                    endpoint, interceptors=[_AsyncPrincipalInterceptor(principal)] if principal else None
                )
                transport = KeyManagementServiceGrpcAsyncIOTransport(
                    channel=channel,
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                )
                self._client = kms_v1.KeyManagementServiceAsyncClient(
                    transport=transport, client_options=ClientOptions(api_endpoint=endpoint)
                )
            else:
                credentials = await asyncio.to_thread(sync_hook.get_credentials)
                self._client = kms_v1.KeyManagementServiceAsyncClient(
                    credentials=credentials,
                    client_info=CLIENT_INFO,
                    client_options=sync_hook.get_client_options(),
                )
        return self._client

    async def _retry(self) -> retry_async.AsyncRetry:
        """Transient errors retried with jittered backoff under the hook's deadline."""
        sync_hook = await self.get_sync_hook()
        return retry_async.AsyncRetry(
            predicate=is_transient,
            initial=0.1,
            maximum=5.0,
            multiplier=2.0,
            timeout=sync_hook.deadline,
        )

    async def get_crypto_key_version(self, version_name: str) -> kms_v1.CryptoKeyVersion:
        """One CryptoKeyVersion, transient errors retried under the hook's deadline."""
        client = await self.get_conn()
        try:
            return await client.get_crypto_key_version(name=version_name, retry=await self._retry())
        except gexc.GoogleAPIError as exc:
            raise translate(exc, f"get {version_name}") from exc

    async def list_crypto_keys(self, key_ring: str) -> list[kms_v1.CryptoKey]:
        """Every CryptoKey of ``key_ring`` (each with its primary version): one ListCryptoKeys call
        per :data:`LIST_PAGE_SIZE` keys, each retried under the hook's deadline."""
        client = await self.get_conn()
        keys: list[kms_v1.CryptoKey] = []
        try:
            pager = await client.list_crypto_keys(
                request={"parent": key_ring, "page_size": LIST_PAGE_SIZE}, retry=await self._retry()
            )
            async for page in pager.pages:  # each further page: one call, same retry
                keys.extend(page.crypto_keys)
            return keys
        except gexc.GoogleAPIError as exc:
            raise translate(exc, f"list the keys of {key_ring}") from exc

    async def close(self) -> None:
        """Close the async channel, if one was opened."""
        if self._client is not None:
            await self._client.transport.close()  # type: ignore[no-untyped-call]
            self._client = None

    async def __aenter__(self) -> KmsAsyncHook:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
