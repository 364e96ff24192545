"""IAM on key rings and crypto keys: additive grants, authoritative role sets, drift reports.

Every write is a read-modify-write carrying the policy's etag, so a concurrent change is never
silently overwritten: KMS answers ABORTED on a stale etag and we re-read, re-apply our change and
try again (a bounded number of times, with jittered exponential backoff). When the change is already
in effect no SetIamPolicy call is made at all, which keeps repeated runs free of writes and of
audit-log noise.

Roles: ``KMS_ROLES`` lists the predefined Cloud KMS roles kmsflow manages. Least privilege: producers
(pipelines that only write encrypted artifacts) get ``ENCRYPTER_ROLE``; consumers (services that only
read them) get ``DECRYPTER_ROLE``; neither needs ``roles/cloudkms.cryptoKeyEncrypterDecrypter``.
Signers of artifacts get ``SIGNER_ROLE`` and ``PUBLIC_KEY_VIEWER_ROLE`` on a signing key, verifiers
``PUBLIC_KEY_VIEWER_ROLE`` only.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from google.api_core import exceptions as gexc
from google.cloud import kms_v1
from google.iam.v1 import policy_pb2

from kmsflow.kms.crypto import default_retry
from kmsflow.kms.errors import KmsConflictError, translate
from kmsflow.shown import shown

ADMIN_ROLE = "roles/cloudkms.admin"
ENCRYPTER_ROLE = "roles/cloudkms.cryptoKeyEncrypter"
DECRYPTER_ROLE = "roles/cloudkms.cryptoKeyDecrypter"
ENCRYPTER_DECRYPTER_ROLE = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
VIEWER_ROLE = "roles/cloudkms.viewer"

PRODUCER_ROLE = ENCRYPTER_ROLE
"""Least privilege for a producer: it can wrap data keys, never unwrap them."""
CONSUMER_ROLE = DECRYPTER_ROLE
"""Least privilege for a consumer: it can unwrap data keys, never create new ciphertexts."""
SIGNER_ROLE = "roles/cloudkms.signer"
"""Signing with an ``ASYMMETRIC_SIGN`` key (kmsflow's signers also get :data:`PUBLIC_KEY_VIEWER_ROLE`:
every signature is checked with the public key before it is written)."""
PUBLIC_KEY_VIEWER_ROLE = "roles/cloudkms.publicKeyViewer"
"""Reading a version's public key: all a verifier of signatures needs (none with a public key file)."""
DECAPSULATOR_ROLE = "roles/cloudkms.decapsulator"
"""Decapsulating with a ``KEY_ENCAPSULATION`` key: the consumers of post-quantum recipient envelopes."""

KMS_ROLES: frozenset[str] = frozenset(
    {
        ADMIN_ROLE,
        ENCRYPTER_ROLE,
        DECRYPTER_ROLE,
        ENCRYPTER_DECRYPTER_ROLE,
        VIEWER_ROLE,
        "roles/cloudkms.cryptoOperator",
        "roles/cloudkms.importer",
        PUBLIC_KEY_VIEWER_ROLE,
        SIGNER_ROLE,
        "roles/cloudkms.signerVerifier",
        "roles/cloudkms.decapsulator",
    }
)
"""The predefined Cloud KMS roles kmsflow knows (and the emulator enforces): the symmetric ones it
provisions, and those of asymmetric, post-quantum, MAC and import keys."""

MEMBER_PREFIXES = ("user:", "serviceAccount:", "group:", "domain:")
_EMAIL = re.compile(r"^[^@\s:]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$")

DEFAULT_ATTEMPTS = 5

Policy: TypeAlias = policy_pb2.Policy  # google.iam.v1.policy_pb2.Policy (no type stubs ship)


def member_problem(member: str) -> str | None:
    """Why ``member`` is not an IAM member kmsflow accepts, or None if it is fine.

    ``allUsers``/``allAuthenticatedUsers`` are refused on purpose: a public KMS key defeats E2EE.
    """
    if member in ("allUsers", "allAuthenticatedUsers"):
        return f"{member} is refused: a KMS key must never be public"
    prefix, sep, rest = member.partition(":")
    if not sep or f"{prefix}:" not in MEMBER_PREFIXES:
        prefixes = ", ".join(p + "..." for p in MEMBER_PREFIXES)
        return f"{shown(member)} is not an IAM member: want one of {prefixes}"
    if prefix == "domain":
        return None if _DOMAIN.match(rest) else f"{shown(member)}: {shown(rest)} is not a domain name"
    return None if _EMAIL.match(rest) else f"{shown(member)}: {shown(rest)} is not an email address"


def role_problem(role: str) -> str | None:
    """Why ``role`` is not a Cloud KMS role kmsflow manages, or None."""
    if role in KMS_ROLES:
        return None
    return f"unknown role {shown(role)} (known: {', '.join(sorted(KMS_ROLES))})"


@dataclass(frozen=True)
class Drift:
    """How one role's live members differ from the wanted ones."""

    role: str
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"role": self.role, "missing": list(self.missing), "unexpected": list(self.unexpected)}


# ----------------------------------------------------------------------------- policy helpers


def role_members(policy: Policy) -> dict[str, set[str]]:
    """``{role: members}`` of the policy's unconditional bindings (one role's bindings merged).

    Conditional bindings are someone else's deliberate design; kmsflow neither counts nor edits them.
    """
    out: dict[str, set[str]] = {}
    for binding in policy.bindings:
        if binding.HasField("condition"):
            continue
        out.setdefault(binding.role, set()).update(binding.members)
    return out


def diff_policy(policy: Policy, wanted: Mapping[str, Iterable[str]]) -> list[Drift]:
    """The drift of each role in ``wanted`` (sorted by role); roles not listed are not compared."""
    live = role_members(policy)
    drifts: list[Drift] = []
    for role in sorted(wanted):
        want = set(wanted[role])
        have = live.get(role, set())
        if want != have:
            drifts.append(Drift(role, tuple(sorted(want - have)), tuple(sorted(have - want))))
    return drifts


def _replace_roles(policy: Policy, roles: Mapping[str, set[str]]) -> Policy:
    """A copy of ``policy`` (same etag and version) with ``roles`` set exactly; empty roles dropped."""
    out = policy_pb2.Policy()
    out.CopyFrom(policy)
    del out.bindings[:]
    out.bindings.extend(b for b in policy.bindings if b.HasField("condition"))
    live = role_members(policy)
    live.update(roles)
    for role in sorted(live):
        if live[role]:
            out.bindings.add(role=role, members=sorted(live[role]))
    return out


def get_policy(client: kms_v1.KeyManagementServiceClient, resource: str) -> Policy:
    """The IAM policy (with etag) of a key ring or crypto key."""
    try:
        return client.get_iam_policy(request={"resource": resource}, retry=default_retry())
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"get IAM policy of {resource}") from exc


def _set_policy(client: kms_v1.KeyManagementServiceClient, resource: str, policy: Policy) -> Policy:
    try:
        return client.set_iam_policy(request={"resource": resource, "policy": policy}, retry=default_retry())
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"set IAM policy of {resource}") from exc


def _backoff(attempt: int) -> float:
    return float(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))


def modify_policy(
    client: kms_v1.KeyManagementServiceClient,
    resource: str,
    change: Callable[[Policy], Mapping[str, set[str]]],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    before_write: Callable[[], None] | None = None,
) -> list[Drift]:
    """Read-modify-write ``resource``'s policy; returns the drift that was corrected (maybe none).

    ``change`` maps the freshly read policy to the exact members wanted for the roles it names. If
    that already holds, nothing is written. A stale etag (ABORTED) restarts from the read, up to
    ``attempts`` times in all, then ``KmsConflictError``. ``before_write`` runs between the read
    and the write: a seam for audit hooks and for tests that simulate a concurrent writer.
    """
    for attempt in range(attempts):
        policy = get_policy(client, resource)
        wanted = change(policy)
        drifts = diff_policy(policy, wanted)
        if not drifts:
            return []
        if before_write is not None:
            before_write()
        try:
            _set_policy(client, resource, _replace_roles(policy, dict(wanted)))
            return drifts
        except KmsConflictError:
            if attempt + 1 >= attempts:
                raise
            time.sleep(_backoff(attempt))
    raise KmsConflictError(f"set IAM policy of {resource}: no attempts allowed ({attempts})")


def _members(members: Iterable[str] | str) -> set[str]:
    """Members as a set; a lone string is one member (not its characters)."""
    return {members} if isinstance(members, str) else set(members)


def grant(
    client: kms_v1.KeyManagementServiceClient,
    resource: str,
    role: str,
    members: Iterable[str] | str,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    before_write: Callable[[], None] | None = None,
) -> bool:
    """Add ``members`` to ``role`` on ``resource``; True if the policy changed (False: no write)."""
    add = _members(members)

    def change(policy: Policy) -> dict[str, set[str]]:
        return {role: role_members(policy).get(role, set()) | add}

    return bool(modify_policy(client, resource, change, attempts=attempts, before_write=before_write))


def revoke(
    client: kms_v1.KeyManagementServiceClient,
    resource: str,
    role: str,
    members: Iterable[str] | str,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    before_write: Callable[[], None] | None = None,
) -> bool:
    """Remove ``members`` from ``role`` on ``resource``; True if the policy changed."""
    remove = _members(members)

    def change(policy: Policy) -> dict[str, set[str]]:
        return {role: role_members(policy).get(role, set()) - remove}

    return bool(modify_policy(client, resource, change, attempts=attempts, before_write=before_write))


def set_role_members(
    client: kms_v1.KeyManagementServiceClient,
    resource: str,
    roles: Mapping[str, Iterable[str]],
    authoritative_roles: Iterable[str] | None = None,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    before_write: Callable[[], None] | None = None,
) -> list[Drift]:
    """Make each listed role's members exactly as given; other roles are left untouched.

    ``authoritative_roles`` (default: the keys of ``roles``) are the roles this call owns; one that
    is listed there but absent from ``roles`` ends with no members. Returns the drift it corrected.
    """
    owned = set(roles) | set(authoritative_roles or ())
    wanted = {role: set(roles.get(role, ())) for role in owned}
    return modify_policy(client, resource, lambda _: wanted, attempts=attempts, before_write=before_write)


def drift(
    client: kms_v1.KeyManagementServiceClient, resource: str, wanted: Mapping[str, Iterable[str]]
) -> list[Drift]:
    """How ``resource``'s live policy differs from ``wanted`` for the roles it lists (read only)."""
    return diff_policy(get_policy(client, resource), wanted)


__all__ = [
    "ADMIN_ROLE",
    "CONSUMER_ROLE",
    "DECAPSULATOR_ROLE",
    "DECRYPTER_ROLE",
    "ENCRYPTER_DECRYPTER_ROLE",
    "ENCRYPTER_ROLE",
    "KMS_ROLES",
    "MEMBER_PREFIXES",
    "PRODUCER_ROLE",
    "VIEWER_ROLE",
    "Drift",
    "diff_policy",
    "drift",
    "get_policy",
    "grant",
    "member_problem",
    "modify_policy",
    "revoke",
    "role_members",
    "role_problem",
    "set_role_members",
]
