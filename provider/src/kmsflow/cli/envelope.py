"""``kmsflow encrypt``, ``decrypt``, ``verify``, ``inspect`` and ``sign``: one envelope at a time.

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
    from google.cloud import kms_v1

    from kmsflow.envelope.progress import Progress
    from kmsflow.envelope.record import EnvelopeRecord
    from kmsflow.envelope.walk import Obstacle
    from kmsflow.kms.dataplane import KmsDataClient


@contextmanager
def _kms_with_progress(args: argparse.Namespace) -> Iterator[tuple[KmsDataClient, Progress | None]]:
    """The lean KMS data client (imported here: gRPC is slow to load; one Encrypt or Decrypt needs
    no ``google-cloud-kms``) and, on a terminal, a progress bar."""
    from kmsflow.kms.client import new_data_client

    with new_data_client() as client, progress_bar(show_progress(args)) as progress:
        yield client, progress


@contextmanager
def _signing_kms_with_progress(
    args: argparse.Namespace,
) -> Iterator[tuple[kms_v1.KeyManagementServiceClient, Progress | None]]:
    """google-cloud-kms's client, for commands that sign or name a signing key (they list a key's
    versions and call AsymmetricSign / GetPublicKey through it), and a progress bar."""
    from kmsflow.kms.client import new_kms_client

    with new_kms_client() as client, progress_bar(show_progress(args)) as progress:
        yield client, progress


def _cmd_encrypt(args: argparse.Namespace) -> int:
    from kmsflow import envelope

    omitted: list[Obstacle] | None = [] if args.skip_unsupported else None
    if args.recipient is not None:
        record = _encrypt_for_recipient(args, omitted)
    else:
        kms = _signing_kms_with_progress if args.sign_with else _kms_with_progress
        with kms(args) as (client, progress):
            record = envelope.encrypt(
                client,
                args.key,
                args.src,
                args.dst,
                progress=progress,
                omitted=omitted,
                sign_with=args.sign_with,
            )
    for left_out in omitted or []:  # always shown: the user must know what is not in the envelope
        sys.stderr.write(printable(f"kmsflow: skipped {left_out.rel}: {left_out.detail}") + "\n")
    signed = f", signed with {args.sign_with}" if args.sign_with else ""
    version = record.key.crypto_key_version
    note(args, f"encrypted {len(record.files)} file(s) into {args.dst} under {version}{signed}")
    return EXIT_OK


def _encrypt_for_recipient(args: argparse.Namespace, omitted: list[Obstacle] | None) -> EnvelopeRecord:
    """``encrypt --recipient``: a public key file needs no KMS client (nor credentials) at all; a
    key name costs one ListCryptoKeyVersions (its current version) and, unless cached, one
    GetPublicKey. ``--sign-with`` needs a KMS client for the signature alone (the signing key's
    GetPublicKey and one AsymmetricSign); the wrap stays local."""
    from kmsflow.envelope.encrypt import encrypt_for
    from kmsflow.kms import public_key

    if not public_key.names_a_key(args.recipient) and not args.sign_with:
        recipient = public_key.load(args.recipient)
        with progress_bar(show_progress(args)) as progress:
            return encrypt_for(recipient, args.src, args.dst, progress=progress, omitted=omitted)
    from kmsflow.kms.public_key_cache import PublicKeyCache

    with _signing_kms_with_progress(args) as (client, progress):
        recipient = public_key.load(args.recipient, client, cache=PublicKeyCache.for_client(client))
        return encrypt_for(
            recipient,
            args.src,
            args.dst,
            progress=progress,
            omitted=omitted,
            client=client,
            sign_with=args.sign_with,
        )


def _cmd_decrypt(args: argparse.Namespace) -> int:
    from kmsflow import envelope

    if args.signer is not None:  # the key commitment too: the data key is at hand
        with _signing_kms_with_progress(args) as (client, progress):
            env = envelope.Envelope.open(args.src)
            envelope.verify_signature(env, args.signer, client=client, key=env.unlock(client))
            env.decrypt(client, args.dst, progress=progress)
    else:
        with _kms_with_progress(args) as (data_client, progress):
            env = envelope.Envelope.open(args.src)
            env.decrypt(data_client, args.dst, progress=progress)
    signed = f", signed by {args.signer}" if args.signer else ""
    note(args, f"decrypted {len(env.record.files)} file(s) into {args.dst}{signed}")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from kmsflow import envelope

    if args.signer is not None:
        return _verify_signature(args)
    with _kms_with_progress(args) as (client, progress):
        record = envelope.verify(client, args.src, progress=progress)
    note(args, f"ok: {len(record.files)} file(s), envelope {record.envelope_id} authenticated")
    return EXIT_OK


def _verify_signature(args: argparse.Namespace) -> int:
    """``verify --signer``: the signature, the record and every ciphertext against what was signed.

    With a public key file no KMS client is even created: a consumer needs no credentials."""
    from kmsflow import envelope
    from kmsflow.kms.public_key import is_crypto_key_name, is_version_name

    env = envelope.Envelope.open(args.src)
    if is_crypto_key_name(args.signer) or is_version_name(args.signer):
        from kmsflow.kms.client import new_kms_client

        with new_kms_client() as client:
            statement = envelope.verify_signature(env, args.signer, client=client)
    else:
        statement = envelope.verify_signature(env, args.signer)
    note(
        args,
        f"ok: {len(statement.files)} file(s) of envelope {statement.envelope_id} signed by "
        f"{statement.signer.crypto_key_version} ({statement.signer.algorithm})",
    )
    return EXIT_OK


def _cmd_sign(args: argparse.Namespace) -> int:
    from kmsflow import envelope

    with _signing_kms_with_progress(args) as (client, progress):
        env = envelope.Envelope.open(args.src)
        statement = envelope.sign_envelope(client, env, args.key, replace=args.replace, progress=progress)
    note(args, f"signed envelope {statement.envelope_id} with {statement.signer.crypto_key_version}")
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    from kmsflow import envelope

    summary = envelope.inspect(args.src)
    if not args.files:
        summary.pop("files")
    sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    wrap = f" ({summary['wrap']}, for a recipient)" if "wrap" in summary else ""
    signature = summary["signature"]
    signed = "not signed" if signature is None else signature["note"]
    note(args, f"{summary['kind']} envelope under {summary['crypto_key_version']}{wrap}; {signed}")
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
    p.add_argument(
        "--sign-with",
        metavar="SIGN_KEY",
        help="also sign the new envelope with this ASYMMETRIC_SIGN CryptoKey (its newest enabled version) "
        "or CryptoKeyVersion",
    )
    p.set_defaults(func=_cmd_encrypt)


def add_decrypt(sub: Any) -> None:
    p = sub.add_parser("decrypt", parents=[common()], help="decrypt an envelope (all or nothing)")
    p.add_argument("src", metavar="SRC", help="the envelope: the DST that encrypt was given")
    p.add_argument("dst", metavar="DST", help="plaintext output path (must not exist)")
    p.add_argument(
        "--signer", metavar="KEY_OR_PUBKEY_FILE", help=_SIGNER_HELP + "; checked before decrypting"
    )
    p.set_defaults(func=_cmd_decrypt)


def add_verify(sub: Any) -> None:
    p = sub.add_parser(
        "verify", parents=[common()], help="authenticate every byte of an envelope without writing plaintext"
    )
    p.add_argument("src", metavar="SRC", help="the envelope")
    p.add_argument(
        "--signer",
        metavar="KEY_OR_PUBKEY_FILE",
        help=_SIGNER_HELP + "; checks the signature instead, offline (no KMS call with a file)",
    )
    p.set_defaults(func=_cmd_verify)


_SIGNER_HELP = (
    "require the envelope's signature by this public key file (kmsflow pubkey export), "
    "CryptoKeyVersion, or CryptoKey (any of its versions)"
)


def add_sign(sub: Any) -> None:
    p = sub.add_parser(
        "sign",
        parents=[common()],
        help="sign an existing envelope with a Cloud KMS signing key (authenticates every byte first)",
    )
    p.add_argument(
        "--key",
        required=True,
        metavar="SIGN_KEY",
        help="ASYMMETRIC_SIGN CryptoKey (its newest enabled version signs) or CryptoKeyVersion",
    )
    p.add_argument("--replace", action="store_true", help="replace an existing signature record")
    p.add_argument("src", metavar="ENVELOPE", help="the envelope: the DST that encrypt was given")
    p.set_defaults(func=_cmd_sign)


def add_inspect(sub: Any) -> None:
    p = sub.add_parser(
        "inspect",
        parents=[common()],
        help="print the envelope record summary as JSON (no KMS call); whether it is signed and by "
        "which version is shown, not verified (that is verify --signer)",
    )
    p.add_argument("src", metavar="SRC", help="the envelope")
    p.add_argument("--no-files", dest="files", action="store_false", help="omit the per-file list")
    p.set_defaults(func=_cmd_inspect)
