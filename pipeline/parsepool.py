"""Parsing and normalising fetched bodies off the event loop: a thread for small polls, a process
pool sized to the cores once enough bytes arrived (feedparser is pure Python and holds the GIL).

:class:`Parser` is used by :func:`pipeline.poll.poll_async`: every body is handed to
:meth:`Parser.parse` as soon as its fetch completes, so parsing overlaps fetching.  The pool is
created lazily, only when the bodies of one poll add up to ``settings.parse_pool_min_bytes``
(a steady-state cycle of 304s never starts it), and uses the ``forkserver`` start method
(``spawn`` where that does not exist): the calling process may hold threads (the event loop's
executor, Airflow, the test runner), and ``fork`` with threads is unsafe.

The worker runs the same :func:`pipeline.pollresult.parse_and_normalize` as the thread path, so both
give identical Articles; its log records are captured and re-emitted in the parent (same handlers,
same test capture).  A worker that dies (a hostile body that crashes or exhausts the parser) fails
the pool: the feeds in flight are retried once in a fresh pool, and a feed that kills a worker
twice gets a per-feed FeedParseError; other feeds are not affected.

Each document has a CPU-time budget in the worker (``settings.parse_cpu_seconds``, enforced with
``ITIMER_PROF``): past it the feed fails with that reason and the worker goes on with the next.
Every pool process exits as soon as the process that owns the pool is gone, however it ended
(SIGKILL, SIGTERM, a crash): a thread in each worker waits on the parent's pidfd.  (The thread path
has no such budget: signals reach only the main thread; every scan in parse.py is linear.)

As with any multiprocessing use, a script that calls the cycle directly must guard its top level
with ``if __name__ == "__main__":`` (the workers import the main module); the ``mediamon`` CLI,
Airflow tasks and pytest do.  A pool that cannot start or answer falls back to the thread.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from .errors import FeedParseError
from .logs import get_logger, log

if TYPE_CHECKING:
    from .config import FeedConfig
    from .pollresult import PollResult
    from .fetch import FetchResult
    from .normalize import LanguageDetector
    from .settings import Settings

logger = get_logger(__name__)

THREAD_PARSERS = 2  # concurrent parses on the thread path (they share the GIL; 2 overlaps I/O waits)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _mp_context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        # the fork server imports the parser (and what it loads on first use) once; each worker
        # forks from it ready to go
        ctx.set_forkserver_preload(["pipeline.parsewarm"])
        return ctx
    return multiprocessing.get_context("spawn")


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:  # tracebacks do not pickle: keep the text
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        record.msg, record.args = record.getMessage(), None
        self.records.append(record)


class _OverBudget(BaseException):
    """Raised by the SIGPROF handler in a worker.  A BaseException, so that no ``except Exception``
    on the way (feedparser falls back to its loose parser on any Exception) can swallow it."""


_armed = False


def _on_sigprof(signum, frame) -> None:  # noqa: ARG001
    if _armed:
        raise _OverBudget()


def _watch_parent(parent_pid: int) -> None:
    """Exit this worker as soon as the process that owns the pool is gone, however it ended
    (SIGKILL, SIGTERM without cleanup, a crash): a worker must not go on parsing, at full CPU, for
    nobody.  On Linux the kernel says so (pidfd: readable when the process exits, no polling, no
    pid reuse); elsewhere the parent is polled."""
    import select
    import threading

    try:
        pidfd = os.pidfd_open(parent_pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is None:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(0)

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while True:
                time.sleep(0.5)
                try:
                    os.kill(parent_pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    continue
        os._exit(0)

    threading.Thread(target=watch, name="mediamon-parent-watch", daemon=True).start()


def _worker_init(parent_pid: int) -> None:
    """Pool process start-up: die with the parent, and take SIGPROF as the per-document budget."""
    _watch_parent(parent_pid)
    signal.signal(signal.SIGPROF, _on_sigprof)


def _parse_worker(feed: "FeedConfig", fetched: "FetchResult", settings: "Settings", level: int) -> tuple:
    """Runs in a pool process: parse + normalise one body within ``settings.parse_cpu_seconds`` of
    CPU time.  Returns the parts of the PollResult that are new (articles, error, warnings; not the
    body, which the parent still has) and the log records."""
    global _armed
    from .pollresult import parse_and_normalize
    from .normalize import LanguageDetector

    root = logging.getLogger("mediamon")
    capture = _Capture()
    root.handlers[:] = [capture]
    root.propagate = False
    root.setLevel(level)
    budget = settings.parse_cpu_seconds
    started = time.process_time()
    try:
        # ITIMER_PROF counts this process's CPU time (user + system); after the first signal it
        # fires again every 0.25 s, in case the first one lands where it cannot stop the parse
        _armed = True
        signal.setitimer(signal.ITIMER_PROF, budget, 0.25)
        # LanguageDetector builds (and caches per process) the lingua model on first use
        res = parse_and_normalize(feed, fetched, settings, LanguageDetector(settings.languages))
        _armed = False
        signal.setitimer(signal.ITIMER_PROF, 0)
    except _OverBudget:
        _armed = False
        signal.setitimer(signal.ITIMER_PROF, 0)
        used = time.process_time() - started
        error = FeedParseError(f"refused: parsing took more than its CPU-time budget of {budget:g}s "
                               f"(stopped after {used:.1f}s); not parsed")
        log(logger, 30, "parse_over_budget", feed_id=feed.id, budget_s=budget, cpu_s=round(used, 2),
            bytes=len(fetched.content or b""))
        return [], error, [], capture.records
    finally:
        _armed = False
        signal.setitimer(signal.ITIMER_PROF, 0)
    return res.articles, res.error, res.warnings, capture.records


class Parser:
    """Parse fetched bodies for one poll; call :meth:`close` when the poll is over."""

    def __init__(self, settings: "Settings", detector: "LanguageDetector"):
        self.settings = settings
        self.detector = detector
        self.workers = settings.parse_workers or cpu_count()
        self.min_bytes = settings.parse_pool_min_bytes
        self.bytes_seen = 0
        self.pool: ProcessPoolExecutor | None = None
        self._generation = 0
        self._thread_sem = asyncio.Semaphore(THREAD_PARSERS)
        self.stats = {"thread": 0, "process": 0, "pool_restarts": 0}

    def _want_pool(self) -> bool:
        return self.workers > 1 and self.bytes_seen >= self.min_bytes

    def _start_pool(self) -> None:
        self.pool = ProcessPoolExecutor(self.workers, mp_context=_mp_context(), initializer=_worker_init,
                                        initargs=(os.getpid(),))
        self._generation += 1
        log(logger, 20, "parse_pool_started", workers=self.workers, bytes_seen=self.bytes_seen)

    async def parse(self, feed: "FeedConfig", fetched: "FetchResult") -> "PollResult":
        from .pollresult import parse_and_normalize

        self.bytes_seen += len(fetched.content or b"")
        if self.pool is None and self._want_pool():
            self._start_pool()
        if self.pool is not None:
            for attempt in (1, 2):
                generation = self._generation
                try:
                    return await self._in_pool(feed, fetched)
                except BrokenProcessPool:
                    if self.pool is None:  # given up on the pool (below): parse here
                        break
                    if generation == self._generation:  # first to notice: replace the pool
                        log(logger, 40, "parse_worker_died", feed_id=feed.id, attempt=attempt)
                        self.pool.shutdown(wait=False, cancel_futures=True)
                        self.stats["pool_restarts"] += 1
                        if self.stats["process"] == 0:
                            # no worker has ever answered: the pool cannot start here (e.g. a main
                            # module without a __main__ guard); parse in a thread from now on
                            log(logger, 40, "parse_pool_unusable", fallback="thread")
                            self.pool, self.workers = None, 1
                            break
                        self._start_pool()
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. a result that does not pickle: parse here
                    log(logger, 30, "parse_pool_failed", feed_id=feed.id, error=f"{exc.__class__.__name__}: {exc}")
                    break
            else:
                from .pollresult import PollResult

                return PollResult(feed, fetched, error=FeedParseError(
                    "the parser process died twice on this feed (crash or memory exhaustion); not parsed"))
        async with self._thread_sem:
            self.stats["thread"] += 1
            return await asyncio.to_thread(parse_and_normalize, feed, fetched, self.settings, self.detector)

    async def _in_pool(self, feed: "FeedConfig", fetched: "FetchResult") -> "PollResult":
        if self.pool is None:
            raise BrokenProcessPool("the parser pool was given up")
        level = logging.getLogger("mediamon").getEffectiveLevel()
        loop = asyncio.get_running_loop()
        articles, error, warnings, records = await loop.run_in_executor(
            self.pool, _parse_worker, feed, fetched, self.settings, level)
        self.stats["process"] += 1
        for r in records:
            logging.getLogger(r.name).handle(r)
        from .pollresult import PollResult

        return PollResult(feed, fetched, articles=articles, error=error, warnings=warnings)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def describe(self) -> dict[str, Any]:
        return {"workers": self.workers if self._generation else 0, "bytes": self.bytes_seen, **self.stats}
