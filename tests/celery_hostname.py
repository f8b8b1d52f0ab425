"""``[core] hostname_callable`` for the CeleryExecutor test: each worker reports its own name
(MEDIAMON_TEST_WORKER), so the task instances show which worker ran them on one machine."""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("MEDIAMON_TEST_WORKER") or socket.getfqdn()
