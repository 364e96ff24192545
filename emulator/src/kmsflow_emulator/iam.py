"""IAM for the emulator: predefined Cloud KMS roles, and who may do what on which resource.

Policies attach to key rings and crypto keys; a crypto key (and its versions) inherits the key
ring's bindings, as in Cloud KMS. Location-level actions (creating or listing key rings, random
bytes) have no policy here, so only the ``--owner`` principal may do them when IAM is enforced.

The crypto roles carry the ``cloudkms.cryptoKeyVersions.*`` permissions the RPCs check:
``useToSign`` (AsymmetricSign, MacSign), ``useToVerify`` (MacVerify), ``viewPublicKey``
(GetPublicKey), ``useToDecrypt`` (Decrypt, AsymmetricDecrypt), ``useToDecapsulate`` (Decapsulate).
``roles/cloudkms.decapsulator`` holds ``useToDecapsulate`` and ``viewPublicKey`` (a consumer of
post-quantum envelopes needs nothing else); ``cryptoOperator`` holds every ``useTo*`` and
``viewPublicKey``. Import jobs have no policy of their own here: ``cloudkms.importJobs.*`` is
checked on their key ring (``importer`` holds ``useToImport``; ImportCryptoKeyVersion also needs
``cryptoKeyVersions.create`` on the key, or ``update`` to re-import into an existing version).
"""

from __future__ import annotations

from collections.abc import Iterable

_READ = {
    "cloudkms.keyRings.get",
    "cloudkms.keyRings.list",
    "cloudkms.cryptoKeys.get",
    "cloudkms.cryptoKeys.list",
    "cloudkms.cryptoKeyVersions.get",
    "cloudkms.cryptoKeyVersions.list",
    "cloudkms.locations.get",
    "cloudkms.locations.list",
    "cloudkms.importJobs.get",
    "cloudkms.importJobs.list",
}
_LOCATIONS = {"cloudkms.locations.get", "cloudkms.locations.list"}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "roles/cloudkms.admin": frozenset(
        _READ
        | {
            "cloudkms.keyRings.create",
            "cloudkms.keyRings.getIamPolicy",
            "cloudkms.keyRings.setIamPolicy",
            "cloudkms.cryptoKeys.create",
            "cloudkms.cryptoKeys.update",
            "cloudkms.cryptoKeys.getIamPolicy",
            "cloudkms.cryptoKeys.setIamPolicy",
            "cloudkms.cryptoKeyVersions.create",
            "cloudkms.cryptoKeyVersions.update",
            "cloudkms.cryptoKeyVersions.destroy",
            "cloudkms.cryptoKeyVersions.restore",
            "cloudkms.cryptoKeyVersions.delete",
            "cloudkms.cryptoKeyVersions.trustedImportExport",
            "cloudkms.cryptoKeys.delete",
            "cloudkms.importJobs.create",
        }
    ),
    "roles/cloudkms.importer": frozenset(
        _LOCATIONS
        | {"cloudkms.importJobs.get", "cloudkms.importJobs.list", "cloudkms.importJobs.useToImport"}
    ),
    "roles/cloudkms.cryptoKeyEncrypter": frozenset(_LOCATIONS | {"cloudkms.cryptoKeyVersions.useToEncrypt"}),
    "roles/cloudkms.cryptoKeyDecrypter": frozenset(_LOCATIONS | {"cloudkms.cryptoKeyVersions.useToDecrypt"}),
    "roles/cloudkms.cryptoKeyEncrypterDecrypter": frozenset(
        _LOCATIONS | {"cloudkms.cryptoKeyVersions.useToEncrypt", "cloudkms.cryptoKeyVersions.useToDecrypt"}
    ),
    "roles/cloudkms.viewer": frozenset(_READ),
    "roles/cloudkms.publicKeyViewer": frozenset(_LOCATIONS | {"cloudkms.cryptoKeyVersions.viewPublicKey"}),
    "roles/cloudkms.signer": frozenset(_LOCATIONS | {"cloudkms.cryptoKeyVersions.useToSign"}),
    "roles/cloudkms.signerVerifier": frozenset(
        _LOCATIONS
        | {
            "cloudkms.cryptoKeyVersions.useToSign",
            "cloudkms.cryptoKeyVersions.useToVerify",
            "cloudkms.cryptoKeyVersions.viewPublicKey",
        }
    ),
    "roles/cloudkms.decapsulator": frozenset(
        _LOCATIONS
        | {"cloudkms.cryptoKeyVersions.useToDecapsulate", "cloudkms.cryptoKeyVersions.viewPublicKey"}
    ),
    "roles/cloudkms.cryptoOperator": frozenset(
        _LOCATIONS
        | {
            "cloudkms.cryptoKeyVersions.useToEncrypt",
            "cloudkms.cryptoKeyVersions.useToDecrypt",
            "cloudkms.cryptoKeyVersions.useToSign",
            "cloudkms.cryptoKeyVersions.useToVerify",
            "cloudkms.cryptoKeyVersions.viewPublicKey",
            "cloudkms.cryptoKeyVersions.useToDecapsulate",
        }
    ),
}

ALL_PERMISSIONS: frozenset[str] = frozenset().union(*ROLE_PERMISSIONS.values()) | {
    "cloudkms.locations.generateRandomBytes",
    "cloudkms.retiredResources.get",
    "cloudkms.retiredResources.list",
    "cloudkms.operations.get",
}


def member_matches(member: str, principal: str | None) -> bool:
    if member == "allUsers":
        return True
    if principal is None:
        return False
    return member == "allAuthenticatedUsers" or member == principal


def granted(principal: str | None, bindings: Iterable[tuple[str, list[str]]]) -> set[str]:
    """Every permission that ``bindings`` (role, members) give ``principal``."""
    permissions: set[str] = set()
    for role, members in bindings:
        if any(member_matches(m, principal) for m in members):
            permissions |= ROLE_PERMISSIONS.get(role, frozenset())
    return permissions


def check_role(role: str) -> str | None:
    """An error message if ``role`` is not one the emulator knows, else None."""
    if role in ROLE_PERMISSIONS:
        return None
    known = ", ".join(sorted(ROLE_PERMISSIONS))
    return f"Role {role} is not supported by the kmsflow emulator (supported: {known})."
