"""Parsing and validation of Cloud KMS resource names.

Every id (project, location, key ring, crypto key) must match ``[a-zA-Z0-9_-]{1,63}`` as in Cloud
KMS; version ids are positive integers. Malformed names are INVALID_ARGUMENT, never NOT_FOUND.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kmsflow_emulator.errors import invalid

_ID = r"[a-zA-Z0-9_-]{1,63}"
ID_RE = re.compile(rf"^{_ID}$")
_PROJECT_RE = re.compile(rf"^projects/{_ID}$")
_LOCATION_RE = re.compile(rf"^projects/(?P<project>{_ID})/locations/(?P<location>{_ID})$")
_KEY_RING_RE = re.compile(rf"^(?P<parent>projects/{_ID}/locations/{_ID})/keyRings/(?P<id>{_ID})$")
_CRYPTO_KEY_RE = re.compile(
    rf"^(?P<parent>projects/{_ID}/locations/{_ID}/keyRings/{_ID})/cryptoKeys/(?P<id>{_ID})$"
)
_IMPORT_JOB_RE = re.compile(
    rf"^(?P<parent>projects/{_ID}/locations/{_ID}/keyRings/{_ID})/importJobs/(?P<id>{_ID})$"
)
_VERSION_RE = re.compile(
    rf"^(?P<parent>projects/{_ID}/locations/{_ID}/keyRings/{_ID}/cryptoKeys/{_ID})"
    r"/cryptoKeyVersions/(?P<id>[1-9][0-9]{0,17})$"
)


@dataclass(frozen=True)
class Parsed:
    """A resource name split into its parent's name and its own id."""

    parent: str
    id: str


def check_id(kind: str, value: str) -> str:
    if not ID_RE.match(value or ""):
        raise invalid(f"{kind} id {value!r} must match [a-zA-Z0-9_-]{{1,63}}.")
    return value


def project(name: str) -> str:
    if not _PROJECT_RE.match(name or ""):
        raise invalid(f"Malformed project name {name!r}: want projects/*.")
    return name


def location(name: str) -> str:
    if not _LOCATION_RE.match(name or ""):
        raise invalid(f"Malformed location name {name!r}: want projects/*/locations/*.")
    return name


def _parse(pattern: re.Pattern[str], name: str, want: str) -> Parsed:
    match = pattern.match(name or "")
    if match is None:
        raise invalid(f"Malformed resource name {name!r}: want {want}.")
    return Parsed(parent=match.group("parent"), id=match.group("id"))


def key_ring(name: str) -> Parsed:
    return _parse(_KEY_RING_RE, name, "projects/*/locations/*/keyRings/*")


def crypto_key(name: str) -> Parsed:
    return _parse(_CRYPTO_KEY_RE, name, "projects/*/locations/*/keyRings/*/cryptoKeys/*")


_RETIRED_RE = re.compile(rf"^(?P<parent>projects/{_ID}/locations/{_ID})/retiredResources/(?P<id>{_ID})$")
_OPERATION_RE = re.compile(rf"^(?P<parent>projects/{_ID}/locations/{_ID})/operations/(?P<id>{_ID})$")


def retired_resource(name: str) -> Parsed:
    return _parse(_RETIRED_RE, name, "projects/*/locations/*/retiredResources/*")


def operation(name: str) -> Parsed:
    return _parse(_OPERATION_RE, name, "projects/*/locations/*/operations/*")


def import_job(name: str) -> Parsed:
    return _parse(_IMPORT_JOB_RE, name, "projects/*/locations/*/keyRings/*/importJobs/*")


def version(name: str) -> Parsed:
    return _parse(
        _VERSION_RE,
        name,
        "projects/*/locations/*/keyRings/*/cryptoKeys/*/cryptoKeyVersions/*",
    )


def kind_of(name: str) -> str:
    """Which resource a name refers to: "keyRing", "cryptoKey" or "cryptoKeyVersion"."""
    if _VERSION_RE.match(name or ""):
        return "cryptoKeyVersion"
    if _CRYPTO_KEY_RE.match(name or ""):
        return "cryptoKey"
    if _KEY_RING_RE.match(name or ""):
        return "keyRing"
    raise invalid(f"Malformed resource name {name!r}.")
