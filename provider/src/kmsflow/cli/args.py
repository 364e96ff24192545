"""What every subcommand's parser shares: one-line usage errors, ``-q``, and seconds arguments."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from kmsflow.cli.exits import EXIT_USAGE


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line too."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_USAGE)


def common() -> argparse.ArgumentParser:
    """Options every subcommand accepts after its name too (``kmsflow encrypt -q ...``)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar or summary"
    )
    return parent


def seconds(text: str) -> float:
    """argparse type of every flag in seconds: a finite, non-negative number (``nan``, ``inf`` and
    negatives are usage errors, exit 2; see ``kmsflow.lifecycle.seconds``)."""
    from kmsflow.lifecycle.seconds import check_seconds  # its package loads the KMS client

    try:
        return check_seconds(float(text), "SECONDS")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"want a finite, non-negative number of seconds, not {text!r}"
        ) from None
