"""``kmsflow audit``: show the audit log as text for people or JSON for tools.

The command's whole behaviour is :func:`audit_command`, so it is tested without a subprocess."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from kmsflow.cli.args import common
from kmsflow.cli.exits import EXIT_OK, EXIT_USAGE
from kmsflow.cli.render import render_events

AUDIT_LOG_ENV = "KMSFLOW_AUDIT_LOG"


def audit_command(
    location: str, *, json_output: bool = False, resource: str | None = None, action: str | None = None
) -> str:
    """The output of ``kmsflow audit LOCATION [--json] [--resource NAME]``.

    ``resource`` may be a key or key ring name: events for it and everything below it are shown
    (a key's versions are ``<key>/cryptoKeyVersions/N``). Raises ``AuditLogError`` when the log
    cannot be read (the CLI prints the one-line message and exits non-zero).
    """
    from kmsflow.audit.log import read_events

    events = read_events(location, action=action)
    if resource:
        prefix = resource.rstrip("/")
        events = [e for e in events if e.resource == prefix or e.resource.startswith(prefix + "/")]
    if json_output:
        return json.dumps([e.to_dict() for e in events], indent=2, sort_keys=True)
    return render_events(events)


def _cmd_audit(args: argparse.Namespace) -> int:
    if not args.location:
        sys.stderr.write(f"kmsflow: error: name the audit log (LOCATION or ${AUDIT_LOG_ENV})\n")
        return EXIT_USAGE
    text = audit_command(args.location, json_output=args.json, resource=args.resource, action=args.action)
    sys.stdout.write(text + "\n")
    return EXIT_OK


def add_audit(sub: Any) -> None:
    p = sub.add_parser("audit", parents=[common()], help="show the kmsflow audit log")
    p.add_argument(
        "location",
        nargs="?",
        default=os.environ.get(AUDIT_LOG_ENV),
        metavar="LOCATION",
        help=f"audit log file or gs:// prefix (default ${AUDIT_LOG_ENV})",
    )
    p.add_argument("--json", action="store_true", help="print events as JSON")
    p.add_argument("--resource", help="only events for this key ring/key/version (and below)")
    p.add_argument("--action", help="only events of this action (disable, destroy, rewrap, ...)")
    p.set_defaults(func=_cmd_audit)
