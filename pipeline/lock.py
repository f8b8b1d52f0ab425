"""One cycle per store at a time (issue 16, item 3): the run lock.

* **SQLite store**: an advisory ``flock`` on ``<store file>.lock`` (beside the database in the
  data dir), taken without waiting.  The kernel drops it when the process dies (SIGKILL
  included), so a lock file left behind never blocks anyone: only a *living* holder does.  The
  file carries the holder (pid, host, time) for the message of the run that is refused.
* **Elasticsearch store**: a lease document ``<prefix>-lease/_doc/cycle`` (owner, expiry),
  created with ``op_type=create``, renewed by a background thread every third of its time to
  live, taken over with optimistic concurrency (``if_seq_no``/``if_primary_term``) once it
  has expired, deleted on release.  A holder that dies keeps the store locked until the lease
  expires (``LEASE_TTL``).  See ``ElasticsearchStore.lease_*``.

``mediamon run`` holds the lock for the whole cycle; the Airflow tasks that write (``plan``,
``index``, ``alert``, ``commit`` of ``mediamon_feeds``, ``send_digest``) each hold it while they
run (``pipeline.tasks``).  A run that finds the lock held raises :class:`Locked`; the CLI exits
with ``pipeline.exitcodes.LOCKED`` (75) and the Airflow task fails and is retried.

The lock is not what stops a double email: the alert sent-log is claimed before each send
(``pipeline.alerts.deliver``), so even two cycles that both believe they hold the lock (an
expired lease, a data dir on a file system without working ``flock``) never send one pair twice
at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol, runtime_checkable

from .errors import Locked, MediamonError, StoreError
from .logs import get_logger, log
from .models import Clock, to_iso, utcnow

if TYPE_CHECKING:
    from .settings import Settings

logger = get_logger(__name__)

LEASE_TTL = timedelta(minutes=5)  # a dead holder of the Elasticsearch lease blocks this long at most


def owner_id(kind: str = "run") -> str:
    """Who holds the lock: ``kind:host:pid:random`` (unique per acquisition)."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lock_path(settings: "Settings") -> Path:
    """The advisory lock file of the SQLite store: beside it, in the data dir."""
    return Path(str(settings.store_path) + ".lock")


class FileLock:
    """A non-blocking ``flock`` on one file; released by :meth:`release` or by the process dying."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self, owner: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except (FileExistsError, NotADirectoryError) as exc:  # as SQLiteStore reports it
            raise StoreError(f"data directory {self.path.parent} (or a directory above it) is a file, "
                             "not a directory (MEDIAMON_DATA_DIR / --data-dir must name a directory)") from exc
        except OSError as exc:
            raise StoreError(f"cannot open the store's lock file {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            raise Locked(f"another mediamon cycle is running on this store (lock {self.path} held by "
                         f"{holder or 'an unknown process'}); try again when it has finished",
                         holder=holder) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"owner": owner, "pid": os.getpid(), "since": to_iso(utcnow())}).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _read_holder(fd: int) -> str | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"{data.get('owner')} since {data.get('since')}" if data.get("owner") else None
    except (OSError, ValueError):
        return None


@runtime_checkable
class LeaseStore(Protocol):
    """A store that keeps the cycle lease itself (Elasticsearch)."""

    def lease_acquire(self, owner: str, *, ttl: timedelta, now: datetime) -> None:
        """Take the lease (new, ours already, or expired).  Raises Locked when a live one is someone else's."""
        ...

    def lease_renew(self, owner: str, *, ttl: timedelta, now: datetime) -> bool:
        """Extend our lease; False when it is no longer ours (expired and taken over)."""
        ...

    def lease_release(self, owner: str) -> None:
        """Delete the lease if it is still ours."""
        ...


class _Renewer(threading.Thread):
    def __init__(self, store: LeaseStore, owner: str, ttl: timedelta, clock: Clock):
        super().__init__(name="mediamon-lease", daemon=True)
        self.store, self.owner, self.ttl, self.clock = store, owner, ttl, clock
        self.stop_event = threading.Event()
        self.lost = False

    def run(self) -> None:
        every = max(self.ttl.total_seconds() / 3, 0.05)
        while not self.stop_event.wait(every):
            try:
                if not self.store.lease_renew(self.owner, ttl=self.ttl, now=self.clock()):
                    self.lost = True
                    log(logger, 40, "lease_lost", owner=self.owner,
                        detail="the cycle lease expired and another cycle took it; alert claims still "
                               "prevent concurrent double sends")
                    return
            except MediamonError as exc:  # the store is briefly unreachable: try again next period
                log(logger, 30, "lease_renew_failed", owner=self.owner, error=str(exc))


@contextlib.contextmanager
def cycle_lock(settings: "Settings", *, owner: str | None = None, store: object | None = None,
               ttl: timedelta = LEASE_TTL, clock: Clock = utcnow) -> Iterator[str]:
    """Hold this store's cycle lock for the ``with`` block; yields the owner id.

    SQLite: the ``flock`` beside the store file.  Elasticsearch: the lease document, through
    ``store`` (a :class:`LeaseStore`; opened from the settings and closed again when not given).
    Raises :class:`Locked` at once, without waiting, when another cycle holds it."""
    owner = owner or owner_id()
    if not settings.uses_elasticsearch:
        lock = FileLock(lock_path(settings))
        lock.acquire(owner)
        log(logger, 20, "lock_acquired", owner=owner, lock=str(lock.path))
        try:
            yield owner
        finally:
            lock.release()
        return
    own = store is None
    if store is None:
        from .store import open_store

        store = open_store(settings)
    try:
        if not isinstance(store, LeaseStore):
            raise TypeError(f"{type(store).__name__} keeps no cycle lease")
        store.lease_acquire(owner, ttl=ttl, now=clock())
        log(logger, 20, "lock_acquired", owner=owner, lease=True, ttl_s=ttl.total_seconds())
        renewer = _Renewer(store, owner, ttl, clock)
        renewer.start()
        try:
            yield owner
        finally:
            renewer.stop_event.set()
            renewer.join()
            if not renewer.lost:
                try:
                    store.lease_release(owner)
                except MediamonError as exc:  # it expires by itself
                    log(logger, 30, "lease_release_failed", owner=owner, error=str(exc))
    finally:
        if own:
            close = getattr(store, "close", None)
            if close is not None:
                close()


__all__ = ["LEASE_TTL", "FileLock", "LeaseStore", "Locked", "cycle_lock", "lock_path", "owner_id"]
