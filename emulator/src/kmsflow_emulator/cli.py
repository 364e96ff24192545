"""``kmsflow-emulator``: serve the Cloud KMS emulator, move its clock, script its faults."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import grpc

from kmsflow_emulator.admin import AdminClient
from kmsflow_emulator.faults import FaultPlan
from kmsflow_emulator.process import LISTENING
from kmsflow_emulator.server import EmulatorServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kmsflow-emulator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the emulator until SIGTERM/SIGINT")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8093, help="0 picks a free port")
    serve.add_argument("--data-dir", type=Path, help="persist state here (default: in memory)")
    serve.add_argument("--enforce-iam", action="store_true", help="check every call against IAM")
    serve.add_argument("--owner", help="IAM member holding every permission, e.g. user:me@x.com")
    serve.add_argument(
        "--generation-delay",
        type=float,
        default=0.0,
        help="emulated seconds a new asymmetric or post-quantum version stays PENDING_GENERATION "
        "(default 0: ENABLED from the next call on)",
    )
    serve.add_argument("--fault-rate", type=float, default=0.0, help="probability of a fault")
    serve.add_argument(
        "--fault-codes",
        default="UNAVAILABLE",
        help="comma-separated codes for --fault-rate (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED; "
        "or CORRUPT_RESPONSE, UNVERIFIED_REQUEST: answered, wrongly)",
    )
    serve.add_argument(
        "--fault-script", default="", help="comma-separated codes (or OK) answered call by call first"
    )
    serve.add_argument("--fault-seed", type=int, help="seed for --fault-rate, for repeatable runs")

    advance = sub.add_parser("advance", help="move the emulated clock forward")
    advance.add_argument("--endpoint", required=True, help="host:port of a running emulator")
    advance.add_argument("--seconds", type=float, required=True)

    faults = sub.add_parser("faults", help="show or set fault injection on a running emulator")
    faults.add_argument("--endpoint", required=True)
    faults.add_argument("--rate", type=float)
    faults.add_argument("--codes", default="UNAVAILABLE")
    faults.add_argument("--script", default="")
    faults.add_argument("--methods", default="", help="comma-separated RPC names (default: all)")
    return parser


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _serve(args: argparse.Namespace) -> int:
    if args.enforce_iam and not args.owner:
        print("kmsflow-emulator: --enforce-iam needs --owner MEMBER", file=sys.stderr)
        return 2
    plan = FaultPlan(
        rate=args.fault_rate,
        codes=_split(args.fault_codes),
        script=_split(args.fault_script),
        seed=args.fault_seed,
    )
    server = EmulatorServer(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        enforce_iam=args.enforce_iam,
        owner=args.owner,
        faults=plan,
        generation_delay=args.generation_delay,
    ).start()
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"{LISTENING}{server.endpoint}", flush=True)
    stopping.wait()
    server.stop()
    print("kmsflow-emulator stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        with AdminClient(args.endpoint) as admin:
            if args.command == "advance":
                print(json.dumps({"now": admin.advance(args.seconds)}))
            elif args.rate is None and not args.script:
                print(json.dumps(admin.faults()))
            else:
                print(
                    json.dumps(
                        admin.set_faults(
                            rate=args.rate or 0.0,
                            codes=_split(args.codes),
                            script=_split(args.script),
                            methods=_split(args.methods),
                        )
                    )
                )
        return 0
    except (ValueError, OSError) as exc:
        print(f"kmsflow-emulator: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"kmsflow-emulator: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
