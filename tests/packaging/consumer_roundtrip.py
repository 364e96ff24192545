"""Run inside the consumer venv: airflow must be absent, and the core must work end to end."""

import importlib.util
import sys

from kmsflow.kms import decrypt, encrypt, new_kms_client
from kmsflow_emulator import EmulatorServer

assert importlib.util.find_spec("airflow") is None, "airflow is installed in the consumer venv"

server = EmulatorServer().start()
try:
    client = new_kms_client(endpoint=server.endpoint)
    ring = client.create_key_ring(
        request={"parent": "projects/p/locations/l", "key_ring_id": "r", "key_ring": {}}
    )
    key = client.create_crypto_key(
        request={"parent": ring.name, "crypto_key_id": "k", "crypto_key": {"purpose": 1}}
    )
    wrapped = encrypt(client, key.name, b"consumer secret")
    assert decrypt(client, key.name, wrapped.ciphertext) == b"consumer secret"
finally:
    server.stop()
assert "airflow" not in sys.modules
print("consumer ok")
