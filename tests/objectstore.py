"""A real FTP server on loopback (pyftpdlib) that serves as the run's staging store in tests:
the Airflow tasks reach it over TCP only, through fsspec's FTP file system, the way workers on
other machines reach an object store.  Its files live in a directory that is no worker's
MEDIAMON_DATA_DIR."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class FTPStore:
    root: Path          # the server's disk (tests look at it; the tasks never do)
    url: str            # ftp://user:password@127.0.0.1:port
    server: object

    def staging_url(self, prefix: str = "staging") -> str:
        return f"{self.url}/{prefix}"

    def stop(self) -> None:
        self.server.close_all()  # type: ignore[attr-defined]


def start_ftp_store(root: Path) -> FTPStore:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import ThreadedFTPServer

    root.mkdir(parents=True, exist_ok=True)
    user, password = "mediamon", secrets.token_hex(8)
    auth = DummyAuthorizer()
    auth.add_user(user, password, str(root), perm="elradfmwMT")
    handler = type("Handler", (FTPHandler,), {"authorizer": auth, "banner": "mediamon test staging store"})
    # its own IOLoop: pyftpdlib's default is a process-wide singleton, which one server's
    # close_all() would close under the next server of the same test session
    server = ThreadedFTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())
    port = server.socket.getsockname()[1]
    threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2, "handle_exit": False}, daemon=True,
                     name="ftp-staging-store").start()
    return FTPStore(root=root, url=f"ftp://{user}:{password}@127.0.0.1:{port}", server=server)


@pytest.fixture
def ftp_store(tmp_path):
    store = start_ftp_store(tmp_path / "object-store")
    try:
        yield store
    finally:
        store.stop()
