"""``kmsflow encrypt``, ``decrypt``, ``verify`` and ``inspect``: one envelope at a time.

The KMS client and the envelope library are imported by the handlers, not with this module, so
``kmsflow --help`` and argument errors stay fast."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kmsflow.cli.args import common
from kmsflow.cli.exits import EXIT_OK, EXIT_SOURCE_INCOMPLETE
from kmsflow.cli.progress import note, progress_bar, show_progress
from kmsflow.display import printable

if TYPE_CHECKING:
    from google.cloud.kms_v1 import KeyManagementServiceClient as KmsClient

    from kmsflow.envelope.progress import Progress
    from kmsflow.envelope.record import EnvelopeRecord
    from kmsflow.envelope.walk import Obstacle


@contextmanager
def _kms_with_progress(args: argparse.Namespace) -> Iterator[tuple[KmsClient, Progress | None]]:
    """A KMS client (imported here: gRPC is slow to load) and, on a terminal, a progress bar."""
    from kmsflow.kms.client import new_kms_client

    with new_kms_client() as client, progress_bar(show_progress(args)) as progress:
        yield client, progress


def _cmd_encrypt(args: argparse.Namespace) -> int:
    from kmsflow import envelope

    omitted: list[Obstacle] | None = [] if args.skip_unsupported else None
    if args.recipient is not None:
        record = _encrypt_for_recipient(args, omitted)
    else:
        with _kms_with_progress(args) as (client, progress):
            record = envelope.encrypt(
                client, args.key, args.src, args.dst, progress=progress, omitted=omitted
            )
    for left_out in omitted or []:  # always shown: the user must know what is not in the envelope
        sys.stderr.write(printable(f"kmsflow: skipped {left_out.rel}: {left_out.detail}") + "\n")
    note(args, f"encrypted {len(record.files)} file(s) into {args.dst} under {record.key.crypto_key_version}")
    return EXIT_OK


def _encrypt_for_recipient(args: argparse.Namespace, omitted: list[Obstacle] | None) -> EnvelopeRecord:
    """``encrypt --recipient``: a public key file needs no KMS client (nor credentials) at all; a
    key name costs one ListCryptoKeyVersions (its current version) and, unless cached, one
    GetPublicKey."""
    from kmsflow.envelope.encrypt import encrypt_for
    from kmsflow.kms import public_key

    if public_key.names_a_key(args.recipient):
        from kmsflow.kms.client import new_kms_client
        from kmsflow.kms.public_key_cache import PublicKeyCache

        with new_kms_client() as client:
            recipient = public_key.load(args.recipient, client, cache=PublicKeyCache())
    else:
        recipient = public_key.load(args.recipient)
    with progress_bar(show_progress(args)) as progress:
        return encrypt_for(recipient, args.src, args.dst, progress=progress, omitted=omitted)


def _cmd_decrypt(args: argparse.Namespace) -> int:
    from kmsflow import envelope

    with _kms_with_progress(args) as (client, progress):
        record = envelope.decrypt(client, args.src, args.dst, progress=progress)
    note(args, f"decrypted {len(record.files)} file(s) into {args.dst}")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from kmsflow import envelope

    with _kms_with_progress(args) as (client, progress):
        record = envelope.verify(client, args.src, progress=progress)
    note(args, f"ok: {len(record.files)} file(s), envelope {record.envelope_id} authenticated")
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    from kmsflow import envelope

    summary = envelope.inspect(args.src)
    if not args.files:
        summary.pop("files")
    sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return EXIT_OK


def add_encrypt(sub: Any) -> None:
    p = sub.add_parser(
        "encrypt", parents=[common()], help="encrypt a file or a directory dataset into one envelope"
    )
    wrap = p.add_mutually_exclusive_group(required=True)
    wrap.add_argument("--key", help="CryptoKey resource name (its primary version wraps, one KMS Encrypt)")
    wrap.add_argument(
        "--recipient",
        metavar="KEY_OR_PUBLIC_KEY_FILE",
        help="wrap locally for a public key: a file from `kmsflow pubkey export` (no KMS call, no "
        "credentials) or an ASYMMETRIC_DECRYPT/KEY_ENCAPSULATION key or version name (its current "
        "version: the newest ENABLED one); only holders of its decrypt/decapsulate role can open it",
    )
    p.add_argument("src", metavar="SRC", help="file or directory: local path, file:// or gs:// URL")
    p.add_argument("dst", metavar="DST", help="new envelope path (must not exist)")
    p.add_argument(
        "--skip-unsupported",
        action="store_true",
        help="leave out of a dataset what cannot go in as a file (links to directories, FIFOs, sockets, "
        "devices, broken links, unreadable directories) and name each on stderr; without it they fail "
        f"the command (exit {EXIT_SOURCE_INCOMPLETE})",
    )
    p.set_defaults(func=_cmd_encrypt)


def add_decrypt(sub: Any) -> None:
    p = sub.add_parser("decrypt", parents=[common()], help="decrypt an envelope (all or nothing)")
    p.add_argument("src", metavar="SRC", help="the envelope: the DST that encrypt was given")
    p.add_argument("dst", metavar="DST", help="plaintext output path (must not exist)")
    p.set_defaults(func=_cmd_decrypt)


def add_verify(sub: Any) -> None:
    p = sub.add_parser(
        "verify", parents=[common()], help="authenticate every byte of an envelope without writing plaintext"
    )
    p.add_argument("src", metavar="SRC", help="the envelope")
    p.set_defaults(func=_cmd_verify)


def add_inspect(sub: Any) -> None:
    p = sub.add_parser(
        "inspect", parents=[common()], help="print the envelope record summary as JSON (no KMS call)"
    )
    p.add_argument("src", metavar="SRC", help="the envelope")
    p.add_argument("--no-files", dest="files", action="store_false", help="omit the per-file list")
    p.set_defaults(func=_cmd_inspect)
