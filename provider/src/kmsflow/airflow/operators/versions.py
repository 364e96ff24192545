"""Key version lifecycle: rotate, set primary, enable, disable, destroy, restore.

Guards live in the core (``kmsflow.kms.resources``): disabling or destroying the primary version is
refused with ``KmsGuardError`` before any KMS write, which these operators turn into a task failure
without retries. State changes already in effect are successes without a write, so every operator
but ``RotateKeyOperator`` (each run is a new version, by nature) is safe to re-run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context
from google.cloud import kms_v1

from kmsflow.airflow.operators.base import AUDIT_FIELDS, KmsBaseOperator, airflow_errors
from kmsflow.audit.actions import Action
from kmsflow.kms.crypto import key_of


def version_summary(version: kms_v1.CryptoKeyVersion) -> dict[str, Any]:
    """Name and state of a version: what XCom may carry (never material)."""
    return {"name": version.name, "state": version.state.name}


class RotateKeyOperator(KmsBaseOperator):
    """Create a new version of ``key_name`` and make it primary.

    Older versions stay ENABLED, so artifacts wrapped under them still decrypt until re-wrapped.
    XCom: ``{"key", "name", "state"}`` of the new primary.
    """

    template_fields: Sequence[str] = ("key_name", *AUDIT_FIELDS)

    def __init__(self, *, key_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key_name = key_name

    def execute(self, context: Context) -> dict[str, Any]:
        self.console_resource = self.key_name
        with airflow_errors():
            version = self.hook.rotate(self.key_name)
        self.log.info("Rotated %s: new primary %s", self.key_name, version.name)
        self.audit(context, Action.ROTATE, self.key_name, {"primary": version.name})
        return {"key": self.key_name, **version_summary(version)}


class SetPrimaryVersionOperator(KmsBaseOperator):
    """Make a version (by id, or full version name) the primary of ``key_name``.

    XCom: ``{"key", "name", "state"}`` of the primary.
    """

    template_fields: Sequence[str] = ("key_name", "version_id", *AUDIT_FIELDS)

    def __init__(self, *, key_name: str, version_id: str | int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key_name = key_name
        self.version_id = version_id

    def execute(self, context: Context) -> dict[str, Any]:
        self.console_resource = self.key_name
        version_id = str(self.version_id)
        with airflow_errors():
            if "/cryptoKeyVersions/" in version_id:
                if key_of(version_id) != self.key_name:
                    raise ValueError(f"version {version_id} does not belong to {self.key_name}")
                version_id = version_id.rsplit("/", 1)[1]
            version = self.hook.set_primary(self.key_name, version_id)
        self.log.info("Primary of %s is now %s", self.key_name, version.name)
        self.audit(context, "set-primary", self.key_name, {"primary": version.name})
        return {"key": self.key_name, **version_summary(version)}


class _VersionStateOperator(KmsBaseOperator):
    """One state change on ``version_name``; subclasses name the hook method."""

    template_fields: Sequence[str] = ("version_name", *AUDIT_FIELDS)
    action: str = ""

    def __init__(self, *, version_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version_name = version_name

    def change(self) -> kms_v1.CryptoKeyVersion:
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        self.console_resource = self.version_name
        with airflow_errors():
            key_of(self.version_name)  # a clear error for a key (not version) name
            self.check()
            before = self.hook.get_crypto_key_version(self.version_name).state.name
            version = self.change()
        after = version.state.name
        if before == after:
            self.log.info("%s %s: already %s, nothing written", self.action, version.name, after)
        else:
            self.log.info("%s %s: %s -> %s", self.action, version.name, before, after)
            self.audit(context, self.action.lower(), version.name, {"before": before, "after": after})
        return version_summary(version)

    def check(self) -> None:
        """Refuse before any KMS call (subclasses add preconditions)."""


class EnableKeyVersionOperator(_VersionStateOperator):
    """Enable a DISABLED version. XCom: ``{"name", "state"}``."""

    action = "Enable"

    def change(self) -> kms_v1.CryptoKeyVersion:
        return self.hook.enable_version(self.version_name)


class DisableKeyVersionOperator(_VersionStateOperator):
    """Disable a version; the primary is refused (invariant 3). XCom: ``{"name", "state"}``."""

    action = "Disable"

    def change(self) -> kms_v1.CryptoKeyVersion:
        return self.hook.disable_version(self.version_name)


class DestroyKeyVersionOperator(_VersionStateOperator):
    """Schedule a version's destruction; the primary is refused. XCom: ``{"name", "state"}``.

    Requires ``confirm=True``: unlike the ``kmsflow_shred`` DAG, this operator cannot prove that no
    envelope is still wrapped under the version (invariant 2), so the DAG author must state it. It
    only schedules: KMS keeps the material for the key's destroy-scheduled duration, and
    ``RestoreKeyVersionOperator`` can undo it until then.
    """

    action = "Destroy"

    def __init__(self, *, version_name: str, confirm: bool = False, **kwargs: Any) -> None:
        super().__init__(version_name=version_name, **kwargs)
        self.confirm = confirm

    def check(self) -> None:
        if not self.confirm:
            raise ValueError(
                f"refusing to destroy {self.version_name} without confirm=True: this operator does not "
                "scan for envelopes still wrapped under the version (invariant 2). Use the kmsflow_shred "
                "DAG, or pass confirm=True once references are proven gone."
            )

    def change(self) -> kms_v1.CryptoKeyVersion:
        return self.hook.destroy_version(self.version_name)


class RestoreKeyVersionOperator(_VersionStateOperator):
    """Cancel a scheduled destruction (DISABLED afterwards, or ENABLED with ``enable=True``).

    A DESTROYED version cannot be restored: the task fails. XCom: ``{"name", "state"}``.
    """

    action = "Restore"

    def __init__(self, *, version_name: str, enable: bool = False, **kwargs: Any) -> None:
        super().__init__(version_name=version_name, **kwargs)
        self.enable = enable

    def change(self) -> kms_v1.CryptoKeyVersion:
        return self.hook.restore_version(self.version_name, enable=self.enable)
