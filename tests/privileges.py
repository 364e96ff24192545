"""Make file modes bind this test process, root included.

The suite runs as root in CI, and root reads a mode-000 directory through CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH. :func:`modes_enforced` drops both from the calling thread's *effective* set
(they stay permitted, so they come back afterwards); threads started inside the block inherit the
reduced set, which covers the scan's reader pool. For a non-root user it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_DAC_CAPS = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _capset(update: int | None) -> int:
    """Set this thread's effective capabilities (low word) to ``update``; return the old ones."""
    libc = ctypes.CDLL(None, use_errno=True)
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    old = int(data[0].effective)
    if update is not None:
        data[0].effective = update
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")
    return old


@contextlib.contextmanager
def modes_enforced() -> Iterator[None]:
    """Inside the block, this thread (and threads it starts) obey file modes even as root."""
    if os.geteuid() != 0:
        yield
        return
    saved = _capset(None)
    _capset(saved & ~_DAC_CAPS)
    try:
        yield
    finally:
        _capset(saved)


@contextlib.contextmanager
def unreadable(directory: str | os.PathLike[str]) -> Iterator[None]:
    """``directory`` cannot be listed by this process inside the block (mode 000, modes enforced)."""
    mode = os.stat(directory).st_mode & 0o7777
    os.chmod(directory, 0)
    try:
        with modes_enforced():
            yield
    finally:
        os.chmod(directory, mode)
