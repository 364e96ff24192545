"""The one exception the emulator's service logic raises: a gRPC status code and its message."""

import grpc


class EmulatorError(Exception):
    """A failed call, answered to the client with ``code`` and ``message`` like Cloud KMS would.

    Not ``KmsError``: that is kmsflow's client-side error (``kmsflow.kms.errors``)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> EmulatorError:
    return EmulatorError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(name: str) -> EmulatorError:
    return EmulatorError(grpc.StatusCode.NOT_FOUND, f"{name} not found.")


def precondition(message: str) -> EmulatorError:
    return EmulatorError(grpc.StatusCode.FAILED_PRECONDITION, message)
