"""Walk a local directory tree and say what it holds that is not a plain directory or regular file.

Encrypt (what goes into a dataset) and the inventory (what a root holds) must both see *every*
entry under a directory: a walk that silently steps over a symbolic link to a directory, a
directory it cannot list, a dangling link or a FIFO is how a dataset loses files without an error
and how a live envelope hides from the proof that a key version is unused. So this walk reports
each such entry as an :class:`Obstacle` and lets the caller decide; it never follows a symbolic
link to a directory itself (the caller knows which directories a link may lead into).

Symbolic links to regular files are files (their size is the target's): a reader opening the path
gets the target's bytes. Each directory is entered once, by device and inode, so bind mounts that
loop back onto an ancestor end instead of recursing forever.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from enum import StrEnum


class ObstacleKind(StrEnum):
    """Why an entry is neither a regular file the walk counts nor a directory it enters."""

    DIRECTORY_LINK = "directory_link"
    """A symbolic link to a directory (``target`` is its resolved real path)."""
    BROKEN_LINK = "broken_link"
    """A symbolic link whose target is missing, unreachable or a loop."""
    SPECIAL_FILE = "special_file"
    """A FIFO, socket or device: not data that can be read to its end."""
    UNLISTABLE = "unlistable"
    """A directory that cannot be listed, or an entry that cannot be examined (permissions, I/O)."""
    REVISITED = "revisited"
    """A directory already entered under another path (a bind mount looping back)."""


@dataclass(frozen=True)
class Obstacle:
    """One entry the walk did not count as a file nor enter as a directory."""

    rel: str  # "/"-separated path relative to the top ("" for the top itself)
    path: str  # the local path
    kind: ObstacleKind
    detail: str
    target: str = ""  # DIRECTORY_LINK: the real path the link leads to


@dataclass
class Tree:
    """Every regular file under a directory (relative path -> size) and every obstacle met."""

    files: dict[str, int] = field(default_factory=dict)
    obstacles: list[Obstacle] = field(default_factory=list)


def walk(top: str) -> Tree:
    """Walk the local directory ``top`` (which must be a directory; ``OSError`` if it cannot be
    listed at all). Files and obstacles come in no particular order."""
    tree = Tree()
    top_stat = os.stat(top)
    seen = {(top_stat.st_dev, top_stat.st_ino)}
    stack = [("", top)]
    first = True
    while stack:
        prefix, path = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError as exc:
            if first:
                raise
            tree.obstacles.append(
                Obstacle(prefix.rstrip("/"), path, ObstacleKind.UNLISTABLE, f"cannot list ({_why(exc)})")
            )
            continue
        first = False
        for entry in entries:
            rel = prefix + entry.name
            found = _classify(entry, rel)
            if isinstance(found, Obstacle):
                tree.obstacles.append(found)
            elif stat.S_ISREG(found.st_mode):
                tree.files[rel] = found.st_size
            elif (found.st_dev, found.st_ino) in seen:
                tree.obstacles.append(
                    Obstacle(rel, entry.path, ObstacleKind.REVISITED, "directory already walked")
                )
            else:
                seen.add((found.st_dev, found.st_ino))
                stack.append((rel + "/", entry.path))
    return tree


def _classify(entry: os.DirEntry[str], rel: str) -> Obstacle | os.stat_result:
    """The entry's status if it is a directory (not a link) or a regular file (a link to one
    included: the target's status); otherwise the :class:`Obstacle` it is."""
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError as exc:
        return Obstacle(rel, entry.path, ObstacleKind.UNLISTABLE, f"cannot examine ({_why(exc)})")
    if stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(entry.path)
        except OSError as exc:
            return Obstacle(
                rel, entry.path, ObstacleKind.BROKEN_LINK, f"symbolic link leads nowhere ({_why(exc)})"
            )
        if stat.S_ISDIR(st.st_mode):
            target = os.path.realpath(entry.path)
            return Obstacle(
                rel, entry.path, ObstacleKind.DIRECTORY_LINK, f"symbolic link to {target}", target
            )
    if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
        return st
    return Obstacle(
        rel, entry.path, ObstacleKind.SPECIAL_FILE, f"{_file_type(st.st_mode)}, not a regular file"
    )


def _file_type(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _why(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def inside(path: str, directory: str) -> bool:
    """True if the real path ``path`` is ``directory`` or below it (both already resolved)."""
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)
