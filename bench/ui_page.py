"""What the Key Lifecycle page costs per request, against the scan it never runs.

In one process, over the same synthetic root (``rewrap.synthesize_envelopes``: N records copied
from one real envelope, sparse data files) and a key on the KMS emulator (subprocess, loopback):

* baseline -- ``inventory.scan`` of the root: what a page that counted on request would pay;
* the page's data -- ``kmsflow.airflow.plugin.keys.load_page`` (spec, snapshot, audit log, one
  ``GetCryptoKey`` + ``ListCryptoKeyVersions`` through ``KmsHook``), median of ``--rounds``;
* what the lifecycle DAGs add to their scan: ``build_snapshot`` + ``write_snapshot``, and the
  snapshot's size (bounded by versions, not by envelopes: 20 blocker paths per version).

    .venv/bin/python bench/ui_page.py            # --envelopes 20000 --rounds 5 --dir /dev/shm
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from rewrap import load, machine, synthesize_envelopes, timed

from kmsflow.inventory import scan
from kmsflow.inventory.snapshot import build_snapshot, snapshot_location, write_snapshot
from kmsflow.kms import new_kms_client
from kmsflow_emulator.process import spawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envelopes", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default="/dev/shm")
    args = parser.parse_args(argv)
    proc, endpoint = spawn()
    try:
        with tempfile.TemporaryDirectory(prefix="kmsflow-bench-ui-", dir=args.dir) as tmp:
            work = Path(tmp)
            key, root, made_s = synthesize_envelopes(new_kms_client(endpoint=endpoint), work, args.envelopes)
            audit = work / "audit.jsonl"
            parts = key.split("/")
            spec = work / "spec.yaml"
            spec.write_text(
                f"project: {parts[1]}\nlocation: {parts[3]}\naudit_log: {audit}\nkey_rings:\n"
                f"  - id: {parts[5]}\n    keys:\n      - id: {parts[7]}\n        roots:\n          - {root}\n"
            )
            os.environ["KMSFLOW_SPEC"] = str(spec)
            os.environ["AIRFLOW_CONN_KMSFLOW_DEFAULT"] = json.dumps(
                {"conn_type": "kmsflow", "extra": {"endpoint": endpoint}}
            )
            from kmsflow.airflow.plugin.keys import load_page

            inventory, scan_s = timed(lambda: scan([str(root)]))
            snap, build_s = timed(lambda: build_snapshot(inventory, run="bench/run"))
            _, write_s = timed(lambda: write_snapshot(snapshot_location(str(audit)), snap))
            size = os.path.getsize(snapshot_location(str(audit)))
            load_page(kmsflow_conn_id="kmsflow_default")  # warm: imports, channel
            pages = [
                timed(lambda: load_page(kmsflow_conn_id="kmsflow_default"))[1] for _ in range(args.rounds)
            ]
            page = load_page(kmsflow_conn_id="kmsflow_default")
            assert page["keys"][0]["versions"][0]["envelopes"] == args.envelopes, page["problems"]
            page_s = statistics.median(pages)
            print(f"Machine: {machine()}; {args.dir}; load {load()}.")
            print(f"{args.envelopes} synthetic envelopes (written in {made_s:.1f} s).\n")
            print("| step | time | vs the scan |")
            print("|---|---:|---:|")
            print(
                f"| inventory.scan of the root (baseline: a page that scans) | {scan_s * 1000:.0f} ms | 1 |"
            )
            print(
                f"| page data (load_page: snapshot + audit log + 2 KMS calls), median of {args.rounds} "
                f"| {page_s * 1000:.1f} ms | {page_s / scan_s:.4f} |"
            )
            print(
                f"| build_snapshot (added to each lifecycle scan) | {build_s * 1000:.1f} ms "
                f"| {build_s / scan_s:.4f} |"
            )
            print(f"| write_snapshot (atomic, local) | {write_s * 1000:.1f} ms | {write_s / scan_s:.4f} |")
            print(f"\nSnapshot size: {size} bytes for {args.envelopes} envelopes.")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
