"""A staging area for the batches that Airflow tasks hand to each other.

XCom carries only small JSON (ids, counts, the staging key); the articles of a run
travel between the tasks of ``mediamon_feeds`` as files::

    <root>/<key>/
        plan.json                     the batches of feed ids planned for this run
        poll-0000.articles.jsonl      new articles of batch 0 (one Article.to_dict() per line)
        poll-0000.feeds.json          per-feed fetch outcome + base state of batch 0
        enriched.jsonl                translated + classified articles (what index stores)
        index.json                    the IndexResult (created / updated / unchanged / failed ids)

``<root>`` is chosen by one setting, ``MEDIAMON_STAGING_URL``:

* unset: ``$MEDIAMON_DATA_DIR/staging`` on the local disk (one host, or a volume that every
  worker mounts): files are written to a temporary file in the same directory, fsynced and
  ``os.replace``-d; removal renames the directory away first, then deletes it.
* a URL (``s3://bucket/prefix``, ``gs://…``, ``file:///mnt/shared/…``, ``ftp://…``, any fsspec
  URL): the run's files live there, so tasks of one run may execute on different machines
  (CeleryExecutor, KubernetesExecutor) with nothing shared but that store.  Credentials come
  from the Airflow connection ``MEDIAMON_STAGING_CONN_ID`` (through ``airflow.sdk.ObjectStoragePath``)
  or, without one, from fsspec's usual lookup.  Each file is uploaded under a temporary name
  and then renamed (moved) to its final name, so a reader sees the whole file or none;
  ``plan.json`` is the run's marker: written first (by plan) and deleted first (by commit's
  clean-up), so a half-deleted run reads as gone, never as half there.

``key`` is derived from the Airflow ``run_id``, so every attempt of a task of one run
reads and writes the same files: a task killed mid-write leaves the previous version or
nothing, never half a file, and a retried task simply writes it again.  The run's staging
is removed by the commit task once feed state advanced; runs left behind by failed runs
are pruned by the next plan after ``STALE_AFTER``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import ConfigError, StoreError, StoreUnavailable
from .logs import get_logger, log
from .settings import Settings

logger = get_logger(__name__)

STALE_AFTER = 3 * 24 * 3600.0  # seconds; staging of failed runs kept this long for inspection/retry
_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")
MARKER = "plan.json"  # the first file of a run and the last one left before it is removed


class StagingMissing(StoreError):
    """The staging directory or one of its files is gone (cleaned up, or the run was never planned)."""


def _is_local(root: Any) -> bool:
    return isinstance(root, Path) and not hasattr(root, "fs")


def staging_root(settings: Settings) -> Any:
    """Where runs are staged: a ``pathlib.Path`` (default, ``data_dir/staging``), or, with
    ``MEDIAMON_STAGING_URL``, an fsspec-backed path (``ObjectStoragePath`` / ``UPath``)."""
    url = (settings.staging_url or "").strip()
    if not url:
        return Path(settings.data_dir) / "staging"
    if settings.staging_conn_id:
        try:
            from airflow.sdk import ObjectStoragePath
        except ImportError as exc:
            raise ConfigError("MEDIAMON_STAGING_CONN_ID needs Airflow (airflow.sdk.ObjectStoragePath); "
                              "unset it to use fsspec's own credentials") from exc
        return ObjectStoragePath(url, conn_id=settings.staging_conn_id)
    try:
        from upath import UPath
    except ImportError as exc:  # pragma: no cover - installed with Airflow (the airflow extra)
        raise ConfigError("MEDIAMON_STAGING_URL needs universal_pathlib (pip install 'mediamon[airflow]')") from exc
    try:
        # a fresh file system per staging root: a connection cached from an earlier task in this
        # process may be dead (FTP/SFTP do not reconnect); object stores lose nothing by it
        return UPath(url, skip_instance_cache=True)
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"MEDIAMON_STAGING_URL={url!r}: {exc}") from exc


def key_for_run(run_id: str) -> str:
    """A directory name for an Airflow run id (``scheduled__2026-11-23T12:00:00+00:00``):
    readable prefix plus a hash, so two run ids never share a directory."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("._")[:80] or "run"
    return f"{safe}-{hashlib.sha1(run_id.encode('utf-8')).hexdigest()[:10]}"


class Staging:
    """The staging area of one run (a directory under ``staging_root``)."""

    def __init__(self, root: Any, key: str):
        if not _KEY_RE.match(key) or key.startswith("."):
            raise ValueError(f"invalid staging key {key!r}")
        self.key = key
        self.local = _is_local(root)
        # a local Path, or a universal_pathlib / ObjectStoragePath (fsspec: .fs, .path)
        self.path: Any = (Path(root) if self.local else root) / key

    @classmethod
    def for_run(cls, settings: Settings, run_id: str) -> "Staging":
        return cls(staging_root(settings), key_for_run(run_id))

    @classmethod
    def open(cls, settings: Settings, key: str) -> "Staging":
        """An existing staging area (raises ``StagingMissing`` when it is not there)."""
        st = cls(staging_root(settings), key)
        if not st.exists():
            raise StagingMissing(f"staging {st.path} is missing: the run was cleaned up or never planned; "
                                 "clear the whole run (from 'plan') to run it again")
        return st

    # --- remote helpers (fsspec) ---

    def _remote(self, what: str, fn, *args, **kwargs):
        """Call an fsspec operation; connection problems become StoreUnavailable (transient: the
        task is retried), a missing file StagingMissing."""
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError as exc:
            raise StagingMissing(f"staging {what}: {self.path}: not found") from exc
        except (OSError, EOFError, ConnectionError, TimeoutError) as exc:
            raise StoreUnavailable(f"staging {what} at {self.path} failed: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # fsspec back-ends raise their own (ftplib.error_temp, botocore ...)
            if type(exc).__module__.split(".")[0] in ("ftplib", "botocore", "aiobotocore", "google", "s3fs",
                                                       "gcsfs", "adlfs", "azure", "paramiko"):
                raise StoreUnavailable(f"staging {what} at {self.path} failed: {type(exc).__name__}: "
                                       f"{exc}") from exc
            raise

    @property
    def _fs(self):
        # fsspec back-ends such as FTP connect when the file system is created
        return self._remote("connect", lambda: self.path.fs)

    def _rpath(self, name: str | None = None) -> str:
        base = self.path.path.rstrip("/")
        return base if name is None else f"{base}/{name}"

    # --- lifecycle ---

    def reset(self) -> None:
        """Start this run's staging from scratch (a re-run of 'plan' invalidates everything after it)."""
        if self.local:
            if self.path.exists():
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True, exist_ok=True)
            return
        self.remove()
        self._remote("mkdir", self._fs.makedirs, self._rpath(), exist_ok=True)

    def exists(self) -> bool:
        if self.local:
            return self.path.is_dir()
        return self.has(MARKER)

    def remove(self) -> None:
        """Remove the run's staging, atomically as seen by readers: locally the directory is
        renamed away first, then deleted; remotely the marker (plan.json) goes first, so a
        removal killed halfway reads as "gone" and is finished by the next prune."""
        if self.local:
            if not self.path.exists():
                return
            trash = self.path.with_name(f".trash-{self.key}-{os.getpid()}-{time.monotonic_ns()}")
            try:
                os.replace(self.path, trash)
            except FileNotFoundError:
                return
            shutil.rmtree(trash, ignore_errors=True)
            return
        fs = self._fs
        self._remote("invalidate", fs.invalidate_cache)
        if self._remote("exists", fs.exists, self._rpath(MARKER)):
            self._remote("remove marker", fs.rm, self._rpath(MARKER))
        if self._remote("exists", fs.exists, self._rpath()):
            try:
                self._remote("remove", fs.rm, self._rpath(), recursive=True)
            except StagingMissing:
                pass
        self._remote("invalidate", fs.invalidate_cache)

    # --- files ---

    def file(self, name: str) -> Any:
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"invalid staging file name {name!r}")
        return self.path / name

    def has(self, name: str) -> bool:
        if self.local:
            return self.file(name).is_file()
        self.file(name)  # validates the name
        fs = self._fs
        self._remote("invalidate", fs.invalidate_cache, self._rpath())
        return bool(self._remote("exists", fs.exists, self._rpath(name)))

    def _write_atomic(self, name: str, write) -> None:
        target = self.file(name)
        if self.local:
            self.path.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.path)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    write(fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                raise
            return
        # remote: upload under a temporary name, then move it to the final name (an object
        # store's copy is atomic; a file system's rename is): readers never see half a file
        fs = self._fs
        tmp = self._rpath(f".{name}.{secrets.token_hex(6)}.tmp")
        self._remote("mkdir", fs.makedirs, self._rpath(), exist_ok=True)
        try:
            with self._remote("open", fs.open, tmp, "w", encoding="utf-8") as fh:
                write(fh)
            self._remote("rename", fs.mv, tmp, self._rpath(name))  # replaces an older version
        except BaseException:
            try:
                fs.rm(tmp)
            except Exception:  # noqa: BLE001 - best effort; prune removes leftovers
                pass
            raise
        finally:
            self._remote("invalidate", fs.invalidate_cache, self._rpath())

    def write_json(self, name: str, obj: Any) -> None:
        self._write_atomic(name, lambda fh: json.dump(obj, fh, ensure_ascii=False, sort_keys=True))

    def read_json(self, name: str) -> Any:
        if self.local:
            try:
                return json.loads(self.file(name).read_text(encoding="utf-8"))
            except FileNotFoundError as exc:
                raise StagingMissing(f"staging file {self.file(name)} is missing") from exc
        self.file(name)
        return json.loads(self._remote(f"read {name}", self._fs.cat_file, self._rpath(name)).decode("utf-8"))

    def write_jsonl(self, name: str, rows: Iterable[dict]) -> int:
        n = 0

        def write(fh) -> None:
            nonlocal n
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True))
                fh.write("\n")
                n += 1

        self._write_atomic(name, write)
        return n

    def read_jsonl(self, name: str) -> Iterator[dict]:
        path = self.file(name)
        if self.local:
            try:
                fh = path.open("r", encoding="utf-8")
            except FileNotFoundError as exc:
                raise StagingMissing(f"staging file {path} is missing") from exc
        else:
            fh = self._remote(f"open {name}", self._fs.open, self._rpath(name), "r", encoding="utf-8")
        with fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


def _remote_age(st: Staging, now: float) -> float | None:
    """Age of a remote run from its plan.json's ``planned_at`` (object stores have no directory
    mtimes); None when it has no marker (a removal that was interrupted: remove it)."""
    try:
        planned = st.read_json(MARKER).get("planned_at")
    except (StagingMissing, ValueError):
        return None
    try:
        ts = datetime.fromisoformat(str(planned).replace("Z", "+00:00"))
    except ValueError:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return now - ts.timestamp()


def prune_stale(settings: Settings, *, keep: str | None = None, older_than: float = STALE_AFTER,
                now: float | None = None) -> list[str]:
    """Remove staging of runs older than ``older_than`` seconds (never ``keep``), and the
    leftovers of interrupted removals."""
    root = staging_root(settings)
    now = time.time() if now is None else now
    removed = []
    if not _is_local(root):
        try:
            fs, base = root.fs, root.path.rstrip("/")
            fs.invalidate_cache()
            names = [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(base, detail=False)] if fs.exists(base) else []
        except (OSError, EOFError) as exc:
            log(logger, 30, "staging_prune_failed", error=f"{type(exc).__name__}: {exc}")
            return []
        for name in names:
            if name == keep or not _KEY_RE.match(name) or name.startswith("."):
                continue
            st = Staging(root, name)
            age = _remote_age(st, now)
            if age is None or age > older_than:
                st.remove()
                if age is not None:
                    removed.append(name)
        if removed:
            log(logger, 20, "staging_pruned", count=len(removed))
        return removed
    if not root.is_dir():
        return []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith(".trash-"):  # a removal that was interrupted
            shutil.rmtree(p, ignore_errors=True)
            continue
        if not p.is_dir() or p.name == keep:
            continue
        try:
            age = now - p.stat().st_mtime
        except FileNotFoundError:
            continue
        if age > older_than:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    if removed:
        log(logger, 20, "staging_pruned", count=len(removed))
    return removed
