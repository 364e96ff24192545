"""Envelope-encrypt and decrypt ML artifacts (files or dataset directories) from Airflow tasks.

Thin on purpose: the format, streaming, atomic publication and authentication all live in the
Airflow-free :mod:`kmsflow.envelope`, so a task and ``kmsflow encrypt``/``decrypt`` produce and read
exactly the same envelopes. What this module adds is the Airflow side:

* **paths**: ``src``/``dst`` may be local paths, ``file://``/``gs://`` URLs or ``airflow.sdk``
  ``ObjectStoragePath`` objects; :func:`artifact_url` turns each into the URL the envelope library
  resolves (GCS access is the library's own: ADC, or ``STORAGE_EMULATOR_HOST`` — an
  ``ObjectStoragePath``'s ``conn_id`` is *not* used, see the docstring there);
* **identity**: the KMS client comes from ``KmsHook(kmsflow_conn_id).get_conn()``; with the emulator
  the connection's ``principal`` is the caller, so a producer connection that may only encrypt and a
  consumer connection that may only decrypt are enforced by IAM, not by this code;
* **mapping**: ``dst_dir=`` derives each destination from its source's name, so
  ``.partial(key_name=..., dst_dir=...).expand(src=[...])`` works (``.expand(src=..., dst=...)``
  would map over the *cross product*; use ``.expand_kwargs([{"src": ..., "dst": ...}, ...])`` for
  explicit pairs);
* **lineage**: the destination is an ``Asset`` outlet (default for a literal ``dst``) and the asset
  event's ``extra`` names the envelope id, the CryptoKey and the exact CryptoKeyVersion — the facts
  rotation and shredding later depend on; ``AssetAlias`` outlets get an event for an ``Asset`` of
  the concrete destination, which is how templated or mapped destinations are recorded;
* **kill**: Airflow 3's task runner answers SIGTERM (task timeout on the supervisor's side, a run
  marked failed, a pod shutting down) by calling ``on_kill`` from its signal handler, in the main
  thread, and then *returns*: ``execute`` would go on until the supervisor's SIGKILL a few seconds
  later, and SIGKILL leaves whatever was staged. So ``on_kill`` removes the partial output at once
  (the stagings of the running ``execute``, :func:`kmsflow.envelope.staging.abort_scope`) and,
  called in the main thread while one was live, raises ``AirflowTaskTerminated`` so that
  ``execute`` unwinds now; from another thread, the aborted staging refuses its next step
  (``StagingAbortedError`` → ``AirflowTaskTerminated``) and publishes nothing;
* **errors**: :func:`artifact_errors` sorts failures into "retrying cannot help"
  (``AirflowFailException``: tampered, permission, key version unavailable, destination exists,
  missing source, invalid record) and "retry later" (``AirflowException``: storage I/O, KMS
  unavailable past the deadline).

Invariant 4: XCom values, asset-event extras and log lines carry URLs, ids, key names, counts and
sizes only — never plaintext, never the data key, never the wrapped keyset (the record's base64
``wrapped_keyset`` is not secret without KMS access, but it is key material and has no use there).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from airflow.sdk import Asset, AssetAlias, Context, ObjectStoragePath
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowTaskTerminated
from google.api_core.retry import Retry
from google.cloud import kms_v1

from kmsflow.airflow.operators.base import KmsBaseOperator, airflow_errors
from kmsflow.envelope import (
    Envelope,
    EnvelopeError,
    EnvelopeIOError,
    EnvelopeRecord,
    StagingAbortedError,
    encrypt,
    verify_signature,
)
from kmsflow.envelope.signature import signing_key
from kmsflow.envelope.staging import AbortScope, abort_scope
from kmsflow.envelope.walk import Obstacle
from kmsflow.kms.errors import KmsPermissionError
from kmsflow.kms.public_key import names_a_key

ArtifactPath = str | ObjectStoragePath | os.PathLike[str]
"""What operators accept as ``src``/``dst``/``dst_dir``."""

DEFAULT_SUFFIX = ".enc"
_LOCAL_PROTOCOLS = ("", "file", "local")
_ROLE_HINT = {
    "encrypt": "roles/cloudkms.cryptoKeyEncrypter (and, to sign, roles/cloudkms.signer and "
    "roles/cloudkms.publicKeyViewer on the signing key)",
    "decrypt": "roles/cloudkms.cryptoKeyDecrypter (and, to check a signer given by key name, "
    "roles/cloudkms.publicKeyViewer on it)",
}


# -- paths ---------------------------------------------------------------------------------------


def artifact_url(path: ArtifactPath) -> str:
    """The local path or URL that :func:`kmsflow.envelope.resolve` understands for ``path``.

    Local paths (and ``file://`` URLs) become absolute paths — relative ones are relative to the
    worker's working directory, so DAGs should pass absolute paths. ``gs://``/``gcs://`` become
    ``gs://bucket/key``; other fsspec URLs pass through unchanged.

    An ``ObjectStoragePath`` is reduced to protocol + path: its ``conn_id`` is dropped on purpose,
    because the envelope library configures GCS in exactly one place (ADC, or the GCS emulator from
    ``STORAGE_EMULATOR_HOST``) so that the CLI, the library and the operators read and write the same
    way. ``str(ObjectStoragePath)`` is never used: it embeds ``conn_id@`` in the URL.
    """
    if isinstance(path, ObjectStoragePath):
        protocol = str(path.protocol or "").lower()
        if protocol in _LOCAL_PROTOCOLS:
            return os.path.abspath(path.path)
        if protocol in ("gs", "gcs"):
            return f"gs://{path.path}"
        return f"{protocol}://{path.path}"
    if isinstance(path, os.PathLike):
        return os.path.abspath(os.fspath(path))
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"an artifact path must be a non-empty path or URL, got {path!r}")
    text = path.strip()
    if "://" not in text:
        return os.path.abspath(text)
    protocol, _, rest = text.partition("://")
    protocol = protocol.lower()
    if protocol in _LOCAL_PROTOCOLS:
        return os.path.abspath(rest)
    if protocol == "gcs":
        return f"gs://{rest}"
    return f"{protocol}://{rest}"


def asset_uri(url: str) -> str:
    """The Asset URI of an artifact URL: ``file:///abs/path`` for local paths, else the URL."""
    return url if "://" in url else "file://" + os.path.abspath(url)


def _basename(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1] if "://" in url else os.path.basename(url.rstrip(os.sep))


def _join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name if "://" in directory else os.path.join(directory, name)


def _is_literal(value: Any) -> bool:
    """True when ``value`` is known at parse time (not a Jinja template, not an XComArg)."""
    if isinstance(value, (ObjectStoragePath, os.PathLike)):
        return True
    return isinstance(value, str) and "{{" not in value and "{%" not in value


# -- errors --------------------------------------------------------------------------------------


@contextmanager
def artifact_errors(action: Literal["encrypt", "decrypt"]) -> Iterator[None]:
    """Map envelope and KMS failures of ``action`` to Airflow's retry semantics.

    * ``EnvelopeIOError`` (disk full, network, object-store hiccup) → ``AirflowException``: the
      task's ``retries`` may succeed, and a failed attempt left nothing at the destination.
    * every other ``EnvelopeError`` (tampered/altered envelope, destination exists, source or record
      missing, invalid record, a signature that does not verify or is missing) →
      ``AirflowFailException``: the same input gives the same answer (an unusable public key
      file too, through :func:`~kmsflow.airflow.errors.airflow_errors`).
    * KMS permission denied → ``AirflowFailException`` naming the role the connection's identity
      lacks; other KMS errors as :func:`~kmsflow.airflow.errors.airflow_errors` (transient
      past the deadline → retryable, everything else → fail).
    """
    with airflow_errors():
        try:
            yield
        except KmsPermissionError as exc:
            raise KmsPermissionError(
                f"KMS permission denied ({action}): {exc}. The connection's identity needs "
                f"{_ROLE_HINT[action]} on the key; producers may only encrypt, consumers only decrypt."
            ) from exc
        except StagingAbortedError as exc:  # on_kill removed the partial output meanwhile
            raise AirflowTaskTerminated(f"{action} killed: {exc}") from exc
        except EnvelopeIOError as exc:
            raise AirflowException(f"{action} failed on storage I/O (retryable): {exc}") from exc
        except EnvelopeError as exc:
            raise AirflowFailException(f"{action} refused: {exc}") from exc


# -- progress ------------------------------------------------------------------------------------


class LogProgress:
    """Logs byte progress at most every ``interval`` seconds (large checkpoints take minutes)."""

    def __init__(self, log: Any, interval: float = 30.0) -> None:
        self._log = log
        self._interval = interval
        self._total = 0
        self._done = 0
        self._last = 0.0
        self._what = ""

    def start(self, total: int, description: str) -> None:
        self._total, self._done, self._what = total, 0, description
        self._last = time.monotonic()
        self._log.info("%s: %d bytes", description, total)

    def advance(self, n: int) -> None:
        self._done += n
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            pct = 100.0 * self._done / self._total if self._total else 100.0
            self._log.info("%s: %d/%d bytes (%.0f%%)", self._what, self._done, self._total, pct)


# -- functions shared by the operators and by @task code -------------------------------------------


def encrypt_artifact(
    client: kms_v1.KeyManagementServiceClient | None,
    key_name: str | None,
    src: ArtifactPath,
    dst: ArtifactPath,
    *,
    log: Any = None,
    retry: Retry | None = None,
    skip_unsupported: bool = False,
    sign_with: str | None = None,
    recipient: str | None = None,
) -> dict[str, Any]:
    """Encrypt ``src`` (file or directory) into a new envelope at ``dst``; a small XCom-safe summary.

    Errors are already mapped to Airflow exceptions (:func:`artifact_errors`). Pass
    ``retry=hook.retry()`` so the KMS call honours the connection's ``deadline`` (None: 60 s).
    A source directory holding what cannot go in as a file (a link to a directory, a FIFO, an
    unreadable directory) fails the task, unless ``skip_unsupported``: then each entry left out is
    logged as a warning and listed under ``omitted`` (relative path and why). ``sign_with`` (a
    signing CryptoKey or CryptoKeyVersion) also signs the envelope; the summary then names the
    version that signed as ``signed_by``.

    With ``recipient`` (instead of ``key_name``) the data key is wrapped locally for a public key:
    a public key file (``client`` may be None: no KMS call) or a recipient key or version name (its
    current version; the public key comes from the local cache or one GetPublicKey).
    """
    src_url, dst_url = artifact_url(src), artifact_url(dst)
    omitted: list[Obstacle] | None = [] if skip_unsupported else None
    progress = LogProgress(log) if log else None
    with artifact_errors("encrypt"):
        if sign_with and client is None:
            raise AirflowFailException("sign_with needs a KMS connection: the signing key lives in KMS")
        # The version is resolved here to report it; encrypt finds its public key cached.
        signed_by = signing_key(client, sign_with).version_name if client is not None and sign_with else None
        if recipient is not None:
            from kmsflow.envelope.encrypt import encrypt_for
            from kmsflow.kms import public_key
            from kmsflow.kms.public_key_cache import PublicKeyCache

            cache = PublicKeyCache.for_client(client) if client is not None else None
            public = public_key.load(recipient, client, cache=cache)
            record = encrypt_for(
                public,
                src_url,
                dst_url,
                progress=progress,
                omitted=omitted,
                client=client,
                sign_with=signed_by,
                retry=retry,
            )
        else:
            assert client is not None and key_name is not None
            record = encrypt(
                client,
                key_name,
                src_url,
                dst_url,
                progress=progress,
                retry=retry,
                omitted=omitted,
                sign_with=signed_by,
            )
    left_out = [{"path": o.rel, "kind": str(o.kind)} for o in omitted or []]
    for entry in left_out:
        if log is not None:
            log.warning("Left out of %s: %s (%s)", dst_url, entry["path"], entry["kind"])
    result = {"src": src_url, **summary(record, dst_url), "plaintext_bytes": record.plaintext_size}
    if signed_by is not None:
        result["signed_by"] = signed_by
    return {**result, "omitted": left_out} if skip_unsupported else result


def decrypt_artifact(
    client: kms_v1.KeyManagementServiceClient,
    src: ArtifactPath,
    dst: ArtifactPath,
    *,
    log: Any = None,
    retry: Retry | None = None,
    signer: str | None = None,
) -> dict[str, Any]:
    """Decrypt the envelope at ``src`` to ``dst`` (nothing appears unless every byte authenticated).

    ``retry`` as for :func:`encrypt_artifact`. ``signer`` (a public key file, a signing
    CryptoKeyVersion, or a CryptoKey: any of its versions) must have signed the envelope, key
    commitment included, before anything is decrypted; the summary then names ``signed_by``.
    """
    src_url, dst_url = artifact_url(src), artifact_url(dst)
    with artifact_errors("decrypt"):
        envelope = Envelope.open(src_url)
        statement = None
        if signer is not None:
            key = envelope.unlock(client, retry=retry)
            statement = verify_signature(envelope, signer, client=client, key=key)
        envelope.decrypt(client, dst_url, progress=LogProgress(log) if log else None, retry=retry)
    result = {"src": src_url, **summary(envelope.record, dst_url)}
    if statement is not None:
        result["signed_by"] = statement.signer.crypto_key_version
    return result


def summary(record: EnvelopeRecord, dst_url: str) -> dict[str, Any]:
    """What may be said about an envelope in XCom, logs and asset events: names, ids, counts."""
    return {
        "dst": dst_url,
        "kind": record.kind,
        "envelope_id": record.envelope_id,
        "crypto_key": record.key.crypto_key,
        "key_version": record.key.crypto_key_version,
        "file_count": len(record.files),
    }


# -- operators -----------------------------------------------------------------------------------


class _ArtifactOperator(KmsBaseOperator):
    """Shared plumbing: destinations (``dst`` or ``dst_dir``), default outlet, asset events."""

    template_fields: Sequence[str] = ("src", "dst", "dst_dir", "kmsflow_conn_id")
    ui_color = "#e3f2d9"

    def __init__(
        self,
        *,
        src: ArtifactPath,
        dst: ArtifactPath | None = None,
        dst_dir: ArtifactPath | None = None,
        suffix: str = DEFAULT_SUFFIX,
        outlets: Any = None,
        **kwargs: Any,
    ) -> None:
        if (dst is None) == (dst_dir is None):
            raise ValueError(f"{type(self).__name__}: give exactly one of dst= and dst_dir=")
        # Unmapping a mapped task calls __init__ again at run time with concrete values; an Asset
        # invented then was never registered by the DAG processor, so only declare it at parse time.
        from_mapped = bool(getattr(self, "_BaseOperator__from_mapped", False))
        if outlets is None:
            outlets = (
                [Asset(uri=asset_uri(artifact_url(dst)))]
                if dst is not None and _is_literal(dst) and not from_mapped
                else []
            )
        super().__init__(outlets=outlets, **kwargs)
        self.src = src
        self.dst = dst
        self.dst_dir = dst_dir
        self.suffix = suffix

    def destination(self, src_url: str) -> str:
        """The rendered ``dst``, or ``dst_dir`` + a name derived from the source."""
        if self.dst is not None:
            return artifact_url(self.dst)
        assert self.dst_dir is not None
        return _join(artifact_url(self.dst_dir), self.derived_name(_basename(src_url)))

    def derived_name(self, source_name: str) -> str:
        raise NotImplementedError

    def emit_asset_events(self, context: Context, dst_url: str, extra: dict[str, Any]) -> None:
        """Attach ``extra`` to the event of every Asset outlet; AssetAliases get the destination."""
        events = context["outlet_events"]
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                events[outlet].extra = {**events[outlet].extra, **extra}
            elif isinstance(outlet, AssetAlias):
                events[outlet].add(Asset(uri=asset_uri(dst_url)), extra=dict(extra))

    @contextmanager
    def killable_outputs(self) -> Iterator[None]:
        """Make the outputs staged in this block abortable by :meth:`on_kill`."""
        with abort_scope() as scope:
            self._live_outputs: AbortScope | None = scope
            try:
                yield
            finally:
                self._live_outputs = None

    def on_kill(self) -> None:
        """Remove the partial output of the running ``execute`` (see the module docstring: the task
        runner calls this from its SIGTERM handler, in the main thread, then lets ``execute`` go
        on); in the main thread, then also stop ``execute`` by raising ``AirflowTaskTerminated``."""
        scope = getattr(self, "_live_outputs", None)
        if scope is None or not scope.abort():
            return
        self.log.warning("Killed: the partial output of %s was removed", self.task_id)
        if threading.current_thread() is threading.main_thread():
            raise AirflowTaskTerminated(f"{self.task_id}: killed; its partial output was removed")

    def client(self) -> kms_v1.KeyManagementServiceClient:
        with airflow_errors():
            return self.hook.get_conn()

    lineage_action: Literal["encrypt", "decrypt"]

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage, when its provider is installed: the source and the destination as datasets,
        the envelope's id and exact CryptoKeyVersion as the run facet ``kmsflow_envelope``
        (:mod:`kmsflow.airflow.lineage`; no key material)."""
        from kmsflow.airflow.lineage import artifact_lineage

        src_url = artifact_url(self.src)
        return artifact_lineage(self.lineage_action, src_url, self.destination(src_url))

    def kms_retry(self) -> Retry:
        """The connection's (or ``deadline=``'s) retry policy for the envelope's one KMS call.

        Without it the envelope library would retry an unavailable KMS for its own 60 s default,
        whatever deadline the connection sets. An invalid ``deadline`` fails the task.
        """
        with airflow_errors():
            return self.hook.retry()


class EncryptArtifactOperator(_ArtifactOperator):
    """Envelope-encrypt a file or a dataset directory under a Cloud KMS key (one KMS call).

    :param key_name: CryptoKey (its primary version wraps) or a specific CryptoKeyVersion. Templated.
        Exactly one of ``key_name`` and ``recipient`` must be non-empty once rendered, so a DAG
        param can choose between them (the other templated to ``""``).
    :param recipient: instead of ``key_name``: wrap locally for a public key (a recipient
        envelope, docs/FORMAT.md §12): a public key file from ``kmsflow pubkey export`` (no KMS
        call; no connection used unless ``sign_with`` is set too) or an
        ASYMMETRIC_DECRYPT/KEY_ENCAPSULATION key or version name. Templated.
    :param src: file or directory: local path, ``file://``/``gs://`` URL or ``ObjectStoragePath``.
        Templated.
    :param dst: the new envelope (must not exist; nothing is ever overwritten). Templated.
    :param dst_dir: instead of ``dst``: the envelope is ``dst_dir/<source name><suffix>`` — what makes
        ``.partial(dst_dir=...).expand(src=[...])`` work. Templated.
    :param suffix: appended to the source name with ``dst_dir`` (default ``.enc``).
    :param outlets: default ``[Asset(<dst>)]`` when ``dst`` is a literal; pass your own Assets or an
        ``AssetAlias`` (templated / mapped destinations). Every Asset outlet's event gets
        ``extra = {envelope_id, crypto_key, key_version, kind, file_count, dst}``.
    :param kmsflow_conn_id: the producer's connection (needs ``roles/cloudkms.cryptoKeyEncrypter``).
        Templated, so a DAG param can choose the identity.
    :param skip_unsupported: leave out of a dataset what cannot go in as a file (links to
        directories, FIFOs, sockets, devices, broken links, unreadable directories), logging each;
        by default they fail the task, since deleting the source afterwards would lose them.
    :param sign_with: also sign the envelope with this ``ASYMMETRIC_SIGN`` CryptoKeyVersion, or
        CryptoKey (its newest enabled version; listing them needs ``roles/cloudkms.viewer`` too)
        (docs/FORMAT.md §10); the connection's identity needs ``roles/cloudkms.signer`` and
        ``roles/cloudkms.publicKeyViewer`` on it. Templated.

    XCom: ``{src, dst, kind, envelope_id, crypto_key, key_version, file_count, plaintext_bytes}``,
    plus ``signed_by`` (the signing version) with ``sign_with``, and ``omitted`` (``[{path, kind}]``)
    with ``skip_unsupported``.
    """

    template_fields: Sequence[str] = (
        *_ArtifactOperator.template_fields,
        "key_name",
        "recipient",
        "sign_with",
    )
    lineage_action = "encrypt"

    def __init__(
        self,
        *,
        key_name: str | None = None,
        recipient: str | None = None,
        skip_unsupported: bool = False,
        sign_with: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if key_name is None and recipient is None:
            raise ValueError("EncryptArtifactOperator needs exactly one of key_name and recipient")
        self.key_name = key_name
        self.recipient = recipient
        self.skip_unsupported = skip_unsupported
        self.sign_with = sign_with

    def derived_name(self, source_name: str) -> str:
        return source_name + self.suffix

    def execute(self, context: Context) -> dict[str, Any]:
        # Both may be given when templates choose between them (a DAG param): one must render empty.
        key_name, recipient = self.key_name or None, self.recipient or None
        if (key_name is None) == (recipient is None):
            raise AirflowFailException(
                "EncryptArtifactOperator needs exactly one of key_name and recipient "
                f"(rendered: key_name={key_name!r}, recipient={recipient!r})"
            )
        self.console_resource = key_name or recipient
        src_url = artifact_url(self.src)
        dst_url = self.destination(src_url)
        # A public key file needs no connection, unless the envelope is also signed (in KMS).
        by_file = recipient is not None and not names_a_key(recipient) and not self.sign_with
        try:
            with self.killable_outputs():
                result = encrypt_artifact(
                    None if by_file else self.client(),
                    key_name,
                    src_url,
                    dst_url,
                    log=self.log,
                    retry=None if by_file else self.kms_retry(),
                    skip_unsupported=self.skip_unsupported,
                    sign_with=self.sign_with or None,
                    recipient=recipient,
                )
        finally:
            if not by_file:
                self.hook.close()
        self.console_resource = result["crypto_key"]
        self.log.info(
            "Encrypted %s -> %s: %s envelope %s, %d file(s), %d bytes, wrapped by %s",
            src_url,
            dst_url,
            result["kind"],
            result["envelope_id"],
            result["file_count"],
            result["plaintext_bytes"],
            result["key_version"],
        )
        if "signed_by" in result:
            self.log.info("Signed envelope %s with %s", result["envelope_id"], result["signed_by"])
        self.emit_asset_events(context, dst_url, _event_extra(result))
        return result


class DecryptArtifactOperator(_ArtifactOperator):
    """Decrypt an envelope (one KMS call); the output appears only once every byte authenticated.

    :param src: the envelope (what encrypt was given as ``dst``; its record path works too).
        Templated.
    :param dst: where the plaintext goes (must not exist). Templated.
    :param dst_dir: instead of ``dst``: ``dst_dir/<envelope name without suffix>``. Templated.
    :param suffix: stripped from the envelope name with ``dst_dir`` (default ``.enc``).
    :param outlets: as for :class:`EncryptArtifactOperator` (default: an Asset for a literal ``dst``).
    :param kmsflow_conn_id: the consumer's connection (needs ``roles/cloudkms.cryptoKeyDecrypter``).
    :param signer: require the envelope's signature by this public key file, signing
        CryptoKeyVersion, or CryptoKey (any of its versions), checked with the key commitment
        before anything is decrypted (docs/FORMAT.md §10). Templated.

    A tampered envelope, a missing or foreign signature, a missing permission or a
    disabled/destroyed key version fails the task at once (no retry can fix them). XCom: ``{src,
    dst, kind, envelope_id, crypto_key, key_version, file_count}``, plus ``signed_by`` with
    ``signer``.
    """

    template_fields: Sequence[str] = (*_ArtifactOperator.template_fields, "signer")
    lineage_action = "decrypt"

    def __init__(self, *, signer: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.signer = signer

    def derived_name(self, source_name: str) -> str:
        if self.suffix and source_name.endswith(self.suffix) and len(source_name) > len(self.suffix):
            return source_name[: -len(self.suffix)]
        return source_name

    def execute(self, context: Context) -> dict[str, Any]:
        src_url = artifact_url(self.src)
        dst_url = self.destination(src_url)
        with artifact_errors("decrypt"):  # the record is read without KMS: name the key in the link
            self.console_resource = Envelope.open(src_url).record.key.crypto_key
        try:
            with self.killable_outputs():
                result = decrypt_artifact(
                    self.client(),
                    src_url,
                    dst_url,
                    log=self.log,
                    retry=self.kms_retry(),
                    signer=self.signer or None,
                )
        finally:
            self.hook.close()
        self.log.info(
            "Decrypted %s envelope %s (%d file(s), wrapped by %s) -> %s",
            result["kind"],
            result["envelope_id"],
            result["file_count"],
            result["key_version"],
            dst_url,
        )
        self.emit_asset_events(context, dst_url, _event_extra(result))
        return result


def _event_extra(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("envelope_id", "crypto_key", "key_version", "kind", "file_count", "dst")
    return {k: result[k] for k in keys}
