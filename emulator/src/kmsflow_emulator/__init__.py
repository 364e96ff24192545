"""A gRPC Cloud KMS emulator (KeyManagementService + IAMPolicy) for tests, demos and local runs.

It serves the request/response types that ``google-cloud-kms`` ships, so the real client talks to it
over the real wire protocol. See ``kmsflow-emulator --help``.
"""

from kmsflow_emulator.server import EmulatorServer

__all__ = ["EmulatorServer"]
