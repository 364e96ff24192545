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
    return spawn_server(
        "kmsflow_emulator.cli", "serve", "--port", "0", *args, listening=LISTENING, stderr=stderr
    )


def spawn_server(
    module: str, *args: str, listening: str, stderr: int | IO[str] | None = subprocess.DEVNULL
) -> tuple[subprocess.Popen[str], str]:
    """Run ``python -m module *args``, a server that prints ``listening`` + ``HOST:PORT`` once it
    accepts requests; return the process and that ``host:port`` (the KMS and the GCS emulator)."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(listening):
        process.kill()
        process.wait()
        raise RuntimeError(f"{module} did not start: {line.strip()!r}")
    return process, line[len(listening) :].strip()
