"""Rotate a key by hand and record it: the audited form of ``kms.resources.rotate``.

KMS's own scheduled rotations are not kmsflow actions (KMS's Cloud Audit Logs record them); a
rotation kmsflow makes (DAG, CLI) is, so it goes through here and lands in the audit log.
"""

from __future__ import annotations

from google.cloud import kms_v1

from kmsflow.audit import AuditLog, record_rotation
from kmsflow.kms import asymmetric, resources
from kmsflow.kms.resources import CryptoKeyVersion


def rotate(
    client: kms_v1.KeyManagementServiceClient,
    key_name: str,
    *,
    audit: AuditLog,
    reason: str,
    run_id: str | None = None,
) -> CryptoKeyVersion:
    """Create a new primary version of ``key_name`` and append a ``rotate`` event; returns it.

    Older versions stay ENABLED (every artifact still decrypts); re-wrap and shred retire them.
    A recipient key (no primary) gets a new version, current once KMS has generated it
    (``kms.asymmetric``); "previous" is then the version that was current.
    """
    key = resources.get_key(client, key_name)
    if key.purpose in asymmetric.RECIPIENT_PURPOSES:
        try:
            previous: str | None = asymmetric.current_version(client, key_name).name
        except asymmetric.NoCurrentVersionError:
            previous = None
        version = asymmetric.add_version(client, key_name)
    else:
        previous = key.primary.name or None
        version = resources.rotate(client, key_name)
    record_rotation(audit, key_name, version.name, reason=reason, previous_primary=previous, run=run_id)
    return version
