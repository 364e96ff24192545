"""``kmsflow pubkey export KEY``: the public key file a recipient producer encrypts with.

Always one checked GetPublicKey (CRC32C, name, algorithm; see ``kmsflow.kms.public_key``), never an
answer from the local cache: an export is what users run to get the key KMS holds now (after the
key was re-made, say), so it writes through to the cache (``kmsflow.kms.public_key_cache``) for
later ``encrypt --recipient KEY`` but does not read it. The file goes to stdout, so
``kmsflow pubkey export KEY > key.pub`` is the whole step.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kmsflow.cli.args import common
from kmsflow.cli.exits import EXIT_OK
from kmsflow.cli.progress import note


def _cmd_export(args: argparse.Namespace) -> int:
    from kmsflow.kms import public_key
    from kmsflow.kms.client import new_kms_client
    from kmsflow.kms.public_key import PublicKeyError
    from kmsflow.kms.public_key_cache import PublicKeyCache

    if not public_key.names_a_key(args.key):
        raise PublicKeyError(f"{args.key}: not a CryptoKey or CryptoKeyVersion resource name")
    with new_kms_client() as client:
        public = public_key.load(args.key, client)
        PublicKeyCache.for_client(client).put(public)
    sys.stdout.buffer.write(public.to_file_bytes())
    sys.stdout.flush()
    note(args, f"exported the {public.algorithm} public key of {public.version_name}")
    return EXIT_OK


def add_pubkey(sub: Any) -> None:
    p = sub.add_parser("pubkey", help="public keys of recipient keys (for encrypt --recipient)")
    actions = p.add_subparsers(dest="pubkey_command", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        parents=[common()],
        help="write the public key file of a key version to stdout (KEY: a CryptoKeyVersion, or a "
        "CryptoKey for its current version, the newest ENABLED one)",
    )
    export.add_argument("key", metavar="KEY", help="CryptoKey or CryptoKeyVersion resource name")
    export.set_defaults(func=_cmd_export)
