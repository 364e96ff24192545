"""List a root once with the storage's own recursive listing: relative path -> size (and CRC32C).

One recursive listing per root (``os.scandir`` recursion locally, ``fs.find(detail=True)`` on
fsspec / GCS) gives every object and its size in a few requests, so the scan never stats files one
by one and never opens data files. On GCS the listing also carries each object's CRC32C, in the
same spelling envelope records use, so a corrupted or replaced ciphertext object is caught from
the listing alone, at no extra cost. Problems are returned, not raised: a directory that cannot be
listed makes the scan incomplete, it must not abort the scan of everything else.

Locally the walk (:func:`kmsflow.envelope.walk.walk`) reports what it will not count or enter,
and this module turns each into a blocking finding: a directory it cannot list, a FIFO, socket or
device, a dangling or looping symbolic link, and a symbolic link to a directory outside every root
of the scan. A link to a directory inside a root is not followed: that directory is listed where it
really is, so each envelope is counted once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from kmsflow.envelope.storage import Location
from kmsflow.envelope.walk import ObstacleKind, inside, walk
from kmsflow.inventory.model import Finding, FindingKind


class RootUnreachableError(Exception):
    """The root itself is missing or its listing failed; the message says which and why."""


@dataclass
class Listing:
    """Every regular file under a root (``/``-separated relative path -> size in bytes), and what
    the listing could not account for (blocking findings: unlistable directories, special files,
    broken links, links leading out of every root of the scan)."""

    files: dict[str, int] = field(default_factory=dict)
    crc32c: dict[str, str] = field(default_factory=dict)  # where the store lists one (GCS: base64)
    findings: list[Finding] = field(default_factory=list)


def list_root(root: Location, local_roots: Sequence[str] = ()) -> Listing:
    """List ``root`` recursively; raise :class:`RootUnreachableError` if the root cannot be listed.

    ``local_roots`` are the real paths of every local root of the scan: a symbolic link to a
    directory inside one of them is not followed (that directory is scanned where it really is),
    a link to anywhere else is a blocking finding.
    """
    if root.is_local:
        return _list_local(root.path, local_roots)
    return _list_fsspec(root)


_FINDINGS = {
    ObstacleKind.BROKEN_LINK: FindingKind.BROKEN_SYMLINK,
    ObstacleKind.SPECIAL_FILE: FindingKind.SPECIAL_FILE,
    ObstacleKind.UNLISTABLE: FindingKind.UNREACHABLE_ROOT,
}


def _list_local(top: str, local_roots: Sequence[str]) -> Listing:
    if not os.path.isdir(top):
        reason = "not a directory" if os.path.lexists(top) else "no such directory"
        raise RootUnreachableError(f"{reason}")
    try:
        tree = walk(top)
    except OSError as exc:
        raise RootUnreachableError(f"cannot list ({exc.strerror or exc})") from None
    listing = Listing(files=tree.files)
    for obstacle in tree.obstacles:
        if obstacle.kind is ObstacleKind.REVISITED:
            continue  # its content was listed where the walk first entered it
        if obstacle.kind is ObstacleKind.DIRECTORY_LINK:
            if any(inside(obstacle.target, r) for r in local_roots):
                continue  # scanned where it really is
            detail = (
                f"{obstacle.detail}, outside every root of this scan: envelopes there are reachable "
                "but not scanned (add the target as a root, or replace the link by the data)"
            )
            listing.findings.append(Finding(FindingKind.SYMLINK_OUTSIDE_ROOTS, obstacle.path, detail))
            continue
        listing.findings.append(Finding(_FINDINGS[obstacle.kind], obstacle.path, obstacle.detail))
    return listing


def _list_fsspec(root: Location) -> Listing:
    fs = root.fs
    assert fs is not None
    top = root.path.rstrip("/")
    try:
        fs.invalidate_cache(top)  # gcsfs caches listings; a scan must see the store as it is now
        found = fs.find(top, detail=True)
    except Exception as exc:  # any storage/network error: the root is unreachable, not the scan
        raise RootUnreachableError(f"cannot list ({exc.__class__.__name__}: {exc})") from None
    listing = Listing()
    for name, info in found.items():
        name = str(name)
        if name.endswith("/") or info.get("type", "file") != "file":
            continue  # directory placeholder objects
        rel = name[len(top) + 1 :] if name.startswith(top + "/") else ""
        if rel:
            listing.files[rel] = int(info.get("size") or 0)
            if info.get("crc32c"):
                listing.crc32c[rel] = str(info["crc32c"])
    if not listing.files:
        try:
            exists = bool(fs.exists(top))
        except Exception as exc:
            raise RootUnreachableError(f"cannot list ({exc.__class__.__name__}: {exc})") from None
        if not exists:
            # On object stores an empty prefix and a missing one look the same; a misspelled root
            # must block shredding, so treat "nothing there" as unreachable unless it is a bucket.
            raise RootUnreachableError("no such bucket or prefix (nothing listed)")
    return listing
