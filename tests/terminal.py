"""Run a command with a pseudo-terminal as its stdout and stderr, as a person at a shell would:
the CLI shows progress bars and summaries only on a terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Mapping, Sequence

_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours, cursor moves, line clears


def run_on_terminal(argv: Sequence[str], env: Mapping[str, str], timeout: float = 120) -> tuple[int, str]:
    """The exit code and everything the command wrote to the terminal, escape codes removed.

    The terminal is read while the command runs: a pty holds only a few KiB, so a command with more
    to say (a bar redrawn ten times a second) would otherwise block on it until the timeout.
    """
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(list(argv), env=dict(env), stdout=follower, stderr=follower)
    finally:
        os.close(follower)  # the command's copies stay open; the leader reads EOF/EIO once it exits
    deadline = time.monotonic() + timeout
    shown = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                raise subprocess.TimeoutExpired(list(argv), timeout)
            if not select.select([leader], [], [], left)[0]:
                continue
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:  # EIO once the command's side is closed
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    return proc.wait(timeout=max(deadline - time.monotonic(), 1)), _ESCAPE.sub(
        "", shown.decode("utf-8", "replace")
    )
