"""Run a command with a pseudo-terminal as its stdout and stderr, as a person at a shell would:
the CLI shows progress bars and summaries only on a terminal."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from collections.abc import Mapping, Sequence

_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours, cursor moves, line clears


def run_on_terminal(argv: Sequence[str], env: Mapping[str, str], timeout: float = 120) -> tuple[int, str]:
    """The exit code and everything the command wrote to the terminal, escape codes removed."""
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(list(argv), env=dict(env), stdout=follower, stderr=follower, timeout=timeout)
    finally:
        os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # EIO once the child side is closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return result.returncode, _ESCAPE.sub("", shown.decode("utf-8", "replace"))
