"""Start ``kmsflow-emulator serve`` as a child process and learn its endpoint.

The server prints ``kmsflow-emulator listening on HOST:PORT`` once it accepts calls (``--port 0``
picks a free port), so the tests, the benchmarks and the demo read that line rather than polling a
port. A real process, not an in-process server: callers exercise the CLI, signals and restarts.
"""

from __future__ import annotations

import subprocess
import sys
from typing import IO

LISTENING = "kmsflow-emulator listening on "


def spawn(*args: str, stderr: int | IO[str] | None = subprocess.DEVNULL) -> tuple[subprocess.Popen[str], str]:
    """Run ``kmsflow-emulator serve --port 0 *args``; return the process and its ``host:port``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kmsflow.emulator.cli", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(LISTENING):
        process.kill()
        process.wait()
        raise RuntimeError(f"kmsflow-emulator did not start: {line.strip()!r}")
    return process, line[len(LISTENING) :].strip()
