"""Encrypt a secret held by Airflow (Variable / Connection / secrets backend) under a KMS key.

The plaintext must never be part of DAG code or task arguments: those end up in the serialized DAG,
in rendered-template records and in the UI. So the operator only accepts a *reference* to where
Airflow keeps the secret — ``variable:NAME`` or ``connection:CONN_ID[#FIELD]`` — which Airflow
resolves through its secrets backends (environment, metastore, Vault, Secret Manager, ...) at run
time. ``source`` is deliberately not templated (a rendered template would be stored in the metadata
database), and a malformed reference is reported without echoing it, in case it *is* a pasted
secret. The plaintext is masked in logs the moment it is read, and only base64 ciphertext, the exact
CryptoKeyVersion and names reach XCom.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airflow.sdk import Connection, Context, Variable
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.log import mask_secret

from kmsflow.airflow.operators.base import KmsBaseOperator, airflow_errors

_SOURCE = re.compile(
    r"^(?:variable:(?P<variable>[A-Za-z0-9_.\-]+)"
    r"|connection:(?P<conn>[A-Za-z0-9_.\-]+)(?:#(?P<field>[A-Za-z0-9_.\-]+))?)$"
)
_CONN_ATTRS = ("password", "login", "host", "schema", "extra")


@dataclass(frozen=True)
class SecretSource:
    """A parsed ``source`` reference: a Variable, or a Connection field (default its password)."""

    kind: str
    name: str
    field: str | None = None

    @classmethod
    def parse(cls, source: str) -> SecretSource:
        match = _SOURCE.match(source.strip()) if isinstance(source, str) else None
        if not match:
            raise AirflowFailException(
                "source must be a reference 'variable:NAME' or 'connection:CONN_ID[#FIELD]' "
                "(FIELD: password (default), login, host, schema, extra, or an extra key); "
                "the value given is not shown because it may be a secret"
            )
        if match["variable"]:
            return cls("variable", match["variable"])
        return cls("connection", match["conn"], match["field"] or "password")

    def __str__(self) -> str:
        if self.kind == "variable":
            return f"variable:{self.name}"
        return f"connection:{self.name}#{self.field}"

    def read(self) -> str:
        """Resolve the reference through Airflow's secrets backends."""
        if self.kind == "variable":
            value: Any = Variable.get(self.name)
        else:
            conn = Connection.get(self.name)
            field = self.field or "password"
            if field in _CONN_ATTRS:
                value = getattr(conn, field)
            else:
                extras = conn.extra_dejson
                if field not in extras:
                    raise AirflowFailException(f"connection {self.name!r} has no extra field {field!r}")
                value = extras[field]
        if value is None or value == "":
            raise AirflowFailException(f"{self}: the secret is empty")
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


class EncryptSecretOperator(KmsBaseOperator):
    """Encrypt a secret that Airflow already holds under ``key_name``; push only the ciphertext.

    :param key_name: the CryptoKey (its primary is used) or a specific CryptoKeyVersion.
    :param source: ``variable:NAME`` or ``connection:CONN_ID[#FIELD]`` — never the secret itself.
    :param aad: additional authenticated data the decryptor must present (not secret, e.g. a purpose
        string binding the ciphertext to its use).

    XCom (the seed's secret ciphertext): ``{"key", "key_version", "ciphertext" (base64), "aad",
    "source"}``.
    """

    template_fields: Sequence[str] = ("key_name", "aad")

    def __init__(self, *, key_name: str, source: str, aad: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = SecretSource.parse(source)
        self.key_name = key_name
        self.aad = aad

    def execute(self, context: Context) -> dict[str, Any]:
        self.console_resource = self.key_name
        plaintext = self.source.read()
        mask_secret(plaintext)
        with airflow_errors():
            wrapped = self.hook.encrypt(self.key_name, plaintext.encode(), self.aad.encode())
        del plaintext
        self.log.info("Encrypted %s under %s", self.source, wrapped.key_version)
        return {
            "key": self.key_name,
            "key_version": wrapped.key_version,
            "ciphertext": base64.b64encode(wrapped.ciphertext).decode("ascii"),
            "aad": self.aad,
            "source": str(self.source),
        }
