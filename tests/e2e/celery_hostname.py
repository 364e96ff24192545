"""``[core] hostname_callable`` for the Celery end-to-end test: each worker names itself through
``KMSFLOW_TEST_HOSTNAME`` (both run on one machine), so task instances show which one ran them."""

from __future__ import annotations

import os
import socket


def get_hostname() -> str:
    return os.environ.get("KMSFLOW_TEST_HOSTNAME") or socket.getfqdn()
