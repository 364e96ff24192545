"""List a root once with the storage's own recursive listing: relative path -> size (and CRC32C).

One recursive listing per root (``os.scandir`` recursion locally, ``fs.find(detail=True)`` on
fsspec / GCS) gives every object and its size in a few requests, so the scan never stats files one
by one and never opens data files. On GCS the listing also carries each object's CRC32C, in the
same spelling envelope records use, so a corrupted or replaced ciphertext object is caught from
the listing alone, at no extra cost. Errors are returned, not raised: a directory that cannot be
listed makes the scan incomplete, it must not abort the scan of everything else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from kmsflow.envelope.storage import Location


class RootUnreachableError(Exception):
    """The root itself is missing or its listing failed; the message says which and why."""


@dataclass
class Listing:
    """Every regular file under a root (``/``-separated relative path -> size in bytes)."""

    files: dict[str, int] = field(default_factory=dict)
    crc32c: dict[str, str] = field(default_factory=dict)  # where the store lists one (GCS: base64)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (url, detail) of unlistable dirs


def list_root(root: Location) -> Listing:
    """List ``root`` recursively; raise :class:`RootUnreachableError` if the root cannot be listed."""
    if root.is_local:
        return _list_local(root.path)
    return _list_fsspec(root)


def _list_local(top: str) -> Listing:
    if not os.path.isdir(top):
        reason = "not a directory" if os.path.lexists(top) else "no such directory"
        raise RootUnreachableError(f"{reason}")
    listing = Listing()
    stack = [("", top)]
    while stack:
        prefix, path = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError as exc:
            if path == top:
                raise RootUnreachableError(f"cannot list ({exc.strerror or exc})") from None
            listing.errors.append((path, f"cannot list ({exc.strerror or exc})"))
            continue
        for entry in entries:
            rel = prefix + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((rel + "/", entry.path))
                elif entry.is_file():  # follows symlinks to files, as the envelope reader does
                    listing.files[rel] = entry.stat().st_size
            except OSError as exc:
                listing.errors.append((entry.path, f"cannot stat ({exc.strerror or exc})"))
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
