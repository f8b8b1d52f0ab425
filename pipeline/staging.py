"""A staging area for the batches that Airflow tasks hand to each other.

XCom carries only small JSON (ids, counts, the staging key); the articles of a run
travel between the tasks of ``mediamon_feeds`` as files::

    <data_dir>/staging/<key>/
        plan.json                     the batches of feed ids planned for this run
        poll-0000.articles.jsonl      new articles of batch 0 (one Article.to_dict() per line)
        poll-0000.feeds.json          per-feed fetch outcome + base state of batch 0
        enriched.jsonl                translated + classified articles (what index stores)
        index.json                    the IndexResult (created / updated / unchanged / failed ids)

``key`` is derived from the Airflow ``run_id``, so every attempt of a task of one run
reads and writes the same files.  Every file is written atomically (temporary file in
the same directory, fsync, ``os.replace``): a task killed mid-write leaves the previous
version or nothing, never half a file, and a retried task simply writes it again.
The directory is removed by the commit task once feed state advanced; directories
left behind by failed runs are pruned by the next plan after ``STALE_AFTER``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import StoreError
from .logs import get_logger, log
from .settings import Settings

logger = get_logger(__name__)

STALE_AFTER = 3 * 24 * 3600.0  # seconds; staging of failed runs kept this long for inspection/retry
_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")


class StagingMissing(StoreError):
    """The staging directory or one of its files is gone (cleaned up, or the run was never planned)."""


def staging_root(settings: Settings) -> Path:
    return Path(settings.data_dir) / "staging"


def key_for_run(run_id: str) -> str:
    """A directory name for an Airflow run id (``scheduled__2026-11-23T12:00:00+00:00``):
    readable prefix plus a hash, so two run ids never share a directory."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("._")[:80] or "run"
    return f"{safe}-{hashlib.sha1(run_id.encode('utf-8')).hexdigest()[:10]}"


class Staging:
    """The staging directory of one run."""

    def __init__(self, root: Path, key: str):
        if not _KEY_RE.match(key) or key.startswith("."):
            raise ValueError(f"invalid staging key {key!r}")
        self.key = key
        self.path = Path(root) / key

    @classmethod
    def for_run(cls, settings: Settings, run_id: str) -> "Staging":
        return cls(staging_root(settings), key_for_run(run_id))

    @classmethod
    def open(cls, settings: Settings, key: str) -> "Staging":
        """An existing staging directory (raises ``StagingMissing`` when it is not there)."""
        st = cls(staging_root(settings), key)
        if not st.path.is_dir():
            raise StagingMissing(f"staging {st.path} is missing: the run was cleaned up or never planned; "
                                 "clear the whole run (from 'plan') to run it again")
        return st

    # --- lifecycle ---

    def reset(self) -> None:
        """Start this run's staging from scratch (a re-run of 'plan' invalidates everything after it)."""
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        return self.path.is_dir()

    def remove(self) -> None:
        """Remove the directory; atomic as seen by readers (renamed away first, then deleted),
        so a task killed halfway never leaves a half-deleted staging behind."""
        if not self.path.exists():
            return
        trash = self.path.with_name(f".trash-{self.key}-{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.replace(self.path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    # --- files ---

    def file(self, name: str) -> Path:
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"invalid staging file name {name!r}")
        return self.path / name

    def has(self, name: str) -> bool:
        return self.file(name).is_file()

    def _write_atomic(self, name: str, write) -> None:
        target = self.file(name)
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

    def write_json(self, name: str, obj: Any) -> None:
        self._write_atomic(name, lambda fh: json.dump(obj, fh, ensure_ascii=False, sort_keys=True))

    def read_json(self, name: str) -> Any:
        try:
            return json.loads(self.file(name).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise StagingMissing(f"staging file {self.file(name)} is missing") from exc

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
        try:
            fh = path.open("r", encoding="utf-8")
        except FileNotFoundError as exc:
            raise StagingMissing(f"staging file {path} is missing") from exc
        with fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


def prune_stale(settings: Settings, *, keep: str | None = None, older_than: float = STALE_AFTER,
                now: float | None = None) -> list[str]:
    """Remove staging directories of runs older than ``older_than`` seconds (never ``keep``)."""
    root = staging_root(settings)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
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
