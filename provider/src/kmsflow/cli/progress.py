"""Feedback for a person at a terminal, on stderr: the rich progress bar and one-line summaries.

Both appear only when stderr is a terminal and ``-q`` was not given: pipes, CI and Airflow see
nothing on success (scripts read the exit code)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kmsflow.display import printable

if TYPE_CHECKING:
    from kmsflow.envelope.progress import Progress


def show_progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def note(args: argparse.Namespace, message: str) -> None:
    """A human summary line on stderr, on a terminal only (scripts read the exit code)."""
    if show_progress(args):
        sys.stderr.write(printable(message) + "\n")


@contextmanager
def progress_bar(enabled: bool, *, unit: str = "bytes") -> Iterator[Progress | None]:
    """A rich progress bar on stderr when ``enabled``; nothing otherwise. ``unit`` "bytes" shows
    sizes and speed; anything else (rewrap's envelopes) shows done/total."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    counts: list[ProgressColumn] = (
        [DownloadColumn(), TransferSpeedColumn()]
        if unit == "bytes"
        else [MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn()]
    )
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *counts,
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )

    class _Bar:
        task: Any = None

        def start(self, total: int, description: str) -> None:
            self.task = bar.add_task(escape(printable(description)), total=total)  # names: not markup

        def advance(self, n: int) -> None:
            bar.advance(self.task, n)

    with bar:
        yield _Bar()
