"""``EncryptedXComBackend``: every XCom value a kmsflow envelope, only its reference in the database.

Enable with ``[core] xcom_backend = kmsflow.airflow.xcom.EncryptedXComBackend`` and configure
``[kmsflow]`` (or the environment)::

    xcom_key      KMSFLOW_XCOM_KEY      CryptoKey whose primary wraps each value's data key
    xcom_path     KMSFLOW_XCOM_PATH     where the envelopes go: a local directory or gs://bucket/prefix
    xcom_conn_id  KMSFLOW_XCOM_CONN_ID  the kmsflow connection (default ``kmsflow_default``)
    xcom_read_plain KMSFLOW_XCOM_READ_PLAIN  read values written before the backend (default true)

A push serialises the value with Airflow's serde, frames it with its *context* (dag id, run id,
task id, map index, XCom key) and writes it as an ordinary file envelope (one fresh data key, one
KMS Encrypt) under ``xcom_path/dag_id=…/run_id=…/task_id=…/map_index=…/key=…/<random>.xcom``.
The database row holds only an :class:`XComReference` (URL, envelope id, CryptoKey and version,
size, context): that is what the metadata database, the REST API and the UI show.

Why every value is an object, with no "small values inline" threshold: an inline ciphertext names
a key version that only a scan of the ``xcom`` table could see, and ``kmsflow_shred`` proves
"zero references" by scanning the spec's roots. With ``xcom_path`` a root of the key, inventory
finds these envelopes, ``kmsflow_rotate_rewrap`` re-wraps them and the shred proof counts them like
any other; nothing needs the metadata database (docs/AIRFLOW.md, "Encrypted XCom").

The context is bound inside the authenticated plaintext (Tink streaming AEAD, whose own AAD binds
the envelope id): a reader checks it against the reference, and against what it asked for when it
went through ``get_one``/``get_all`` (``xcom_pull``, task arguments), so an envelope copied over
another value, or a reference copied to another row, task or run, fails with
:class:`XComMismatchError` instead of handing another task's value over. A modified byte fails
authentication (``TamperedError`` → ``AirflowFailException``).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Any, TypedDict
from urllib.parse import quote

from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.exceptions import AirflowFailException
from google.api_core.retry import Retry
from google.cloud import kms_v1

from kmsflow.airflow.errors import airflow_errors
from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.operators.artifacts import artifact_errors, artifact_url
from kmsflow.envelope.encrypt import encrypt_bytes
from kmsflow.envelope.envelope import Envelope
from kmsflow.envelope.layout import SIDECAR_SUFFIX
from kmsflow.envelope.storage import resolve

log = logging.getLogger(__name__)

SECTION = "kmsflow"
REFERENCE_VERSION = 1
"""The ``kmsflow_xcom`` field of a reference: its format version."""
FRAME_MAGIC = b"kmsflow-xcom/v1\n"
"""First bytes of every value's plaintext, before the JSON ``{"context": …, "value": …}``."""
OBJECT_SUFFIX = ".xcom"


class XComContext(TypedDict):
    """Which XCom a value is: bound into its authenticated plaintext and named in its reference."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    key: str


_CONTEXT_FIELDS = ("dag_id", "run_id", "task_id", "map_index", "key")


class XComReference(TypedDict):
    """What the metadata database holds for one value (the "envelope header" the UI shows)."""

    kmsflow_xcom: int
    url: str
    envelope_id: str
    crypto_key: str
    crypto_key_version: str
    """The version that wrapped the data key at push time; a later rewrap moves the record on
    (``kmsflow inspect <url>`` shows the current one)."""
    size: int
    context: XComContext


class XComMismatchError(AirflowFailException):
    """An encrypted value is not the XCom it is read as: copied from another task, run or key."""


class XComConfigError(AirflowFailException):
    """``[kmsflow] xcom_*`` is missing or unusable."""


@dataclass(frozen=True)
class _Settings:
    key: str
    path: str
    conn_id: str
    read_plain: bool


def _setting(name: str, env: str) -> str:
    from airflow.sdk.configuration import conf

    return str(conf.get(SECTION, name, fallback="") or os.environ.get(env, "")).strip()


def settings() -> _Settings:
    """The backend's configuration, read each call (cheap; tests and deployments may change it)."""
    key = _setting("xcom_key", "KMSFLOW_XCOM_KEY")
    path = _setting("xcom_path", "KMSFLOW_XCOM_PATH")
    if not key or not path:
        raise XComConfigError(
            "EncryptedXComBackend needs [kmsflow] xcom_key (a CryptoKey, env KMSFLOW_XCOM_KEY) and "
            "xcom_path (a local directory or gs:// prefix listed as a root of that key in the spec, "
            "env KMSFLOW_XCOM_PATH)"
        )
    plain = _setting("xcom_read_plain", "KMSFLOW_XCOM_READ_PLAIN").lower() or "true"
    if plain not in ("true", "false"):
        raise XComConfigError(f"[kmsflow] xcom_read_plain must be true or false, got {plain!r}")
    conn_id = _setting("xcom_conn_id", "KMSFLOW_XCOM_CONN_ID") or KmsHook.default_conn_name
    return _Settings(
        key=key, path=artifact_url(path).rstrip("/"), conn_id=conn_id, read_plain=plain == "true"
    )


@cache
def _kms(conn_id: str) -> tuple[kms_v1.KeyManagementServiceClient, Retry]:
    """One client per connection per process: a task process pushes and pulls through one channel
    instead of opening one per value (Airflow 3 runs each task in its own process)."""
    hook = KmsHook(conn_id)
    with airflow_errors():
        return hook.get_conn(), hook.retry()


def context_dir(root: str, context: XComContext) -> str:
    """The directory of one XCom's envelopes: every component quoted and prefixed, so no dag id,
    run id or key can climb out of ``root`` or spell one of the format's reserved names."""
    fields: dict[str, Any] = dict(context)
    parts = [f"{name}={quote(str(fields[name]), safe='')}" for name in _CONTEXT_FIELDS]
    return "/".join([root, *parts])


def _frame(context: XComContext, value: Any) -> bytes:
    body = json.dumps({"context": context, "value": value}, separators=(",", ":"), ensure_ascii=False)
    return FRAME_MAGIC + body.encode("utf-8")


def _unframe(data: bytes, url: str) -> tuple[dict[str, Any], Any]:
    if not data.startswith(FRAME_MAGIC):
        raise XComMismatchError(f"{url}: an envelope, but not an XCom value (no {FRAME_MAGIC!r} frame)")
    try:
        body = json.loads(data[len(FRAME_MAGIC) :])
        return body["context"], body["value"]
    except (ValueError, KeyError, TypeError):
        raise XComMismatchError(f"{url}: an envelope, but its frame is not an XCom value") from None


_expected: ContextVar[dict[str, Any] | None] = ContextVar("kmsflow_xcom_expected", default=None)


@contextmanager
def _expecting(**fields: Any) -> Iterator[None]:
    """While pulling: what the caller asked for (None fields are "any"), checked per value."""
    token = _expected.set({k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _expected.reset(token)


def as_reference(value: Any) -> XComReference | None:
    """``value`` (a stored XCom, decoded or as JSON text) if it is an encrypted value's reference."""
    if isinstance(value, str) and value.startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, dict) and value.get("kmsflow_xcom") == REFERENCE_VERSION:
        return value  # type: ignore[return-value]
    return None


class EncryptedXComBackend(BaseXCom):
    """Client-side envelope-encrypted XCom (module docstring): configure it, nothing else changes."""

    @staticmethod
    def serialize_value(  # type: ignore[override]
        value: Any,
        *,
        key: str | None = None,
        task_id: str | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
        map_index: int | None = None,
    ) -> XComReference:
        """Encrypt ``value`` into a new envelope under ``xcom_path``; return its reference."""
        if key is None or task_id is None or dag_id is None or run_id is None:
            raise XComConfigError("EncryptedXComBackend: an XCom needs its key, dag, run and task ids")
        config = settings()
        context = XComContext(
            dag_id=dag_id,
            run_id=run_id,
            task_id=task_id,
            map_index=-1 if map_index is None else map_index,
            key=key,
        )
        plaintext = _frame(context, BaseXCom.serialize_value(value))
        url = f"{context_dir(config.path, context)}/{uuid.uuid4().hex}{OBJECT_SUFFIX}"
        client, retry = _kms(config.conn_id)
        with artifact_errors("encrypt"):
            record = encrypt_bytes(client, config.key, plaintext, url, retry=retry)
        return XComReference(
            kmsflow_xcom=REFERENCE_VERSION,
            url=url,
            envelope_id=record.envelope_id,
            crypto_key=record.key.crypto_key,
            crypto_key_version=record.key.crypto_key_version,
            size=len(plaintext),
            context=context,
        )

    @staticmethod
    def deserialize_value(result: Any) -> Any:
        """The value of a reference (decrypted, its context checked), or a plain value as stored."""
        reference = as_reference(result.value)
        if reference is None:
            if not settings().read_plain:
                raise XComMismatchError(
                    "a plain (unencrypted) XCom value, and [kmsflow] xcom_read_plain is false"
                )
            return BaseXCom.deserialize_value(result)
        config = settings()
        url = _checked_url(reference, config.path)
        client, retry = _kms(config.conn_id)
        with artifact_errors("decrypt"):
            envelope = Envelope.open(url)
            if envelope.record.envelope_id != reference["envelope_id"]:
                raise XComMismatchError(
                    f"{url}: holds envelope {envelope.record.envelope_id}, the XCom reference names "
                    f"{reference['envelope_id']} (replaced by another value)"
                )
            context, value = _unframe(envelope.read_bytes(client, retry=retry), url)
        _check_context(context, reference, url)
        _warn_if_rendered_fields_kept()
        return BaseXCom.deserialize_value(_Stored(value))

    @classmethod
    def purge(cls, xcom: Any, *args: Any) -> None:
        """Delete the envelope a reference names, record first: a purge cut short leaves
        ciphertext no record names (a blocking ``data_without_record`` inventory finding until it
        is removed), never a record that names a key version without its data."""
        reference = as_reference(getattr(xcom, "value", None))
        if reference is None:
            return
        url = _checked_url(reference, settings().path)
        data = resolve(url)
        for target in (data.sibling(data.name + SIDECAR_SUFFIX), data):
            target.remove()

    # Pulls through these record what was asked for, so a reference copied to another row fails.

    @classmethod
    def get_one(
        cls,
        *,
        key: str,
        dag_id: str,
        task_id: str,
        run_id: str,
        map_index: int | None = None,
        include_prior_dates: bool = False,
    ) -> Any | None:
        asked_run = None if include_prior_dates else run_id
        with _expecting(dag_id=dag_id, run_id=asked_run, task_id=task_id, map_index=map_index, key=key):
            return super().get_one(
                key=key,
                dag_id=dag_id,
                task_id=task_id,
                run_id=run_id,
                map_index=map_index,
                include_prior_dates=include_prior_dates,
            )

    @classmethod
    async def aget_one(
        cls,
        *,
        key: str,
        dag_id: str,
        task_id: str,
        run_id: str,
        map_index: int | None = None,
        include_prior_dates: bool = False,
    ) -> Any | None:
        asked_run = None if include_prior_dates else run_id
        with _expecting(dag_id=dag_id, run_id=asked_run, task_id=task_id, map_index=map_index, key=key):
            return await super().aget_one(
                key=key,
                dag_id=dag_id,
                task_id=task_id,
                run_id=run_id,
                map_index=map_index,
                include_prior_dates=include_prior_dates,
            )

    @classmethod
    def get_all(
        cls, *, key: str, dag_id: str, task_id: str, run_id: str, include_prior_dates: bool = False
    ) -> Any:
        asked_run = None if include_prior_dates else run_id
        with _expecting(dag_id=dag_id, run_id=asked_run, task_id=task_id, key=key):
            return super().get_all(
                key=key,
                dag_id=dag_id,
                task_id=task_id,
                run_id=run_id,
                include_prior_dates=include_prior_dates,
            )

    @classmethod
    async def aget_all(
        cls, *, key: str, dag_id: str, task_id: str, run_id: str, include_prior_dates: bool = False
    ) -> Any:
        asked_run = None if include_prior_dates else run_id
        with _expecting(dag_id=dag_id, run_id=asked_run, task_id=task_id, key=key):
            return await super().aget_all(
                key=key,
                dag_id=dag_id,
                task_id=task_id,
                run_id=run_id,
                include_prior_dates=include_prior_dates,
            )


@cache
def _warn_if_rendered_fields_kept() -> None:
    """Once per process: Airflow stores each task's rendered template fields in the metadata
    database, and a TaskFlow task's arguments (``op_args``/``op_kwargs``) are rendered *with the
    pulled XCom values*; only ``[core] max_templated_field_length = 0`` keeps them out."""
    from airflow.sdk.configuration import conf

    if conf.getint("core", "max_templated_field_length", fallback=4096) > 0:
        log.warning(
            "EncryptedXComBackend: [core] max_templated_field_length > 0, so Airflow stores the "
            "rendered arguments of this task (which may hold the decrypted XCom values) in the "
            "metadata database; set it to 0 to keep them out (docs/AIRFLOW.md, Encrypted XCom)"
        )


@dataclass(frozen=True)
class _Stored:
    """The shape ``BaseXCom.deserialize_value`` reads (``.value``)."""

    value: Any


def _checked_url(reference: XComReference, root: str) -> str:
    """The reference's URL, refused unless it lies in its own context's directory under ``root``:
    a forged reference must not make the backend read or delete anything else."""
    url = str(reference.get("url", ""))
    try:
        home = context_dir(root, reference["context"]) + "/"
    except (KeyError, TypeError):
        raise XComMismatchError("an XCom reference without its context") from None
    name = url[len(home) :]
    if not url.startswith(home) or "/" in name or not name.endswith(OBJECT_SUFFIX):
        raise XComMismatchError(f"XCom reference {url!r} lies outside {home} (xcom_path)")
    return url


def _check_context(stored: dict[str, Any], reference: XComReference, url: str) -> None:
    """The authenticated context must be the reference's, and what the puller asked for."""
    if stored != reference["context"]:
        raise XComMismatchError(
            f"{url}: the value belongs to {_describe(stored)}, the XCom reference names "
            f"{_describe(reference['context'])} (copied from another XCom)"
        )
    asked = _expected.get() or {}
    wrong = {k: v for k, v in asked.items() if stored.get(k) != v}
    if wrong:
        raise XComMismatchError(
            f"{url}: the value belongs to {_describe(stored)}, not to the asked "
            + ", ".join(f"{k}={v!r}" for k, v in wrong.items())
            + " (a reference copied from another XCom)"
        )


def _describe(context: Any) -> str:
    if not isinstance(context, dict):
        return "an unknown XCom"
    return ", ".join(f"{k}={context.get(k)!r}" for k in _CONTEXT_FIELDS)
