"""Benchmark: client CPU per KMS call, lean data path vs ``google-cloud-kms`` (GAPIC), one process.

The emulator runs as its own process on loopback, so this process's CPU time
(``time.process_time``: every thread, gRPC's included) is the client's alone. Each round runs
``--calls`` Encrypt + Decrypt pairs through ``kmsflow.kms.crypto`` (CRC32C checks, retry wrapper,
error mapping: what envelope wrap/unwrap and rewrap pay per call) on each path, in a new random
order per round, so a load change on a shared machine hits both alike; a third row calls the
generated stub bare (no checks, no retry), the floor any client pays for gRPC and protobuf.
Reported: median CPU µs and wall µs per call, and each row's CPU ratio to GAPIC's.

    .venv/bin/python bench/kms_client_cpu.py [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable

from envelope_throughput import make_key  # a fresh ENCRYPT_DECRYPT key on the emulator
from google.protobuf.wrappers_pb2 import Int64Value
from startup import machine

from kmsflow.kms import crypto, new_data_client, new_kms_client
from kmsflow.kms._proto import kms_dataplane_pb2 as pb
from kmsflow.kms.client import emulator_channel
from kmsflow.kms.crc import crc32c
from kmsflow.kms.dataplane import SERVICE
from kmsflow_emulator.process import spawn


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000, help="Encrypt+Decrypt pairs per row per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    emulator, endpoint = spawn()
    try:
        key = make_key(endpoint)
        gapic = new_kms_client(endpoint=endpoint)
        lean = new_data_client(endpoint=endpoint)
        bare_channel = emulator_channel(endpoint)  # a channel of its own
        bare_encrypt = bare_channel.unary_unary(
            f"/{SERVICE}/Encrypt",
            request_serializer=pb.EncryptRequest.SerializeToString,
            response_deserializer=pb.EncryptResponse.FromString,
        )
        bare_decrypt = bare_channel.unary_unary(
            f"/{SERVICE}/Decrypt",
            request_serializer=pb.DecryptRequest.SerializeToString,
            response_deserializer=pb.DecryptResponse.FromString,
        )
        secret = os.urandom(32)

        def through(client: object) -> Callable[[], None]:
            def pair() -> None:
                wrapped = crypto.encrypt(client, key, secret, b"aad")  # type: ignore[arg-type]
                crypto.decrypt(client, key, wrapped.ciphertext, b"aad")  # type: ignore[arg-type]

            return pair

        def bare() -> None:
            answer = bare_encrypt(
                pb.EncryptRequest(
                    name=key,
                    plaintext=secret,
                    plaintext_crc32c=Int64Value(value=crc32c(secret)),
                    additional_authenticated_data=b"aad",
                ),
                timeout=60,
            )
            bare_decrypt(
                pb.DecryptRequest(
                    name=key, ciphertext=answer.ciphertext, additional_authenticated_data=b"aad"
                ),
                timeout=60,
            )

        rows = {
            "GAPIC (google-cloud-kms)": through(gapic),
            "lean (KmsDataClient)": through(lean),
            "bare stub": bare,
        }
        for pair in rows.values():  # warm up: channels connected, code paths loaded
            for _ in range(50):
                pair()
        cpu: dict[str, list[float]] = {name: [] for name in rows}
        wall: dict[str, list[float]] = {name: [] for name in rows}
        print(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.1f}", flush=True)
        for _ in range(args.rounds):
            order = list(rows)
            random.shuffle(order)
            for name in order:
                pair = rows[name]
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(args.calls):
                    pair()
                calls = 2 * args.calls
                cpu[name].append((time.process_time() - c0) / calls * 1e6)
                wall[name].append((time.perf_counter() - w0) / calls * 1e6)
        print(
            f"load average at end {os.getloadavg()[0]:.1f}; {args.rounds} rounds x {2 * args.calls} calls\n"
        )
        base = statistics.median(cpu["GAPIC (google-cloud-kms)"])
        print("| client | CPU µs/call (median) | CPU / GAPIC | wall µs/call (median) |")
        print("|---|---:|---:|---:|")
        for name in rows:
            c, w = statistics.median(cpu[name]), statistics.median(wall[name])
            print(f"| {name} | {c:.0f} | {c / base:.2f} | {w:.0f} |")
        gapic.transport.close()  # type: ignore[no-untyped-call]
        lean.close()
        bare_channel.close()
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
