"""The poll engine: fetch the due feeds with bounded concurrency and parse each body as it arrives.

    poll_async(feeds)                one event loop: every feed waits for its host's turn
      ├─ per host: fetch_per_host    (several feeds of one outlet are not fetched all at once)
      ├─ in all:   fetch_concurrency (a slot is taken only once the host's turn came)
      ├─ fetch_feed (pipeline.fetch: conditional GET, redirects checked hop by hop, caps)
      └─ Parser.parse (pipeline.parsepool: a thread for small polls, a process pool for large ones)
    → one PollResult per feed (pipeline.pollresult), handed to ``on_done`` as soon as it is parsed

:class:`BackgroundPoll` runs the same engine in a thread with its own event loop, so that
``run_cycle`` can store the first batches while polling goes on.

The HTTP edge is injectable: every entry point takes ``transport`` (an ``httpx.AsyncBaseTransport``,
e.g. ``httpx.MockTransport`` in a test) that replaces the network under the same client, limits
and redirect checks.  Nothing here touches the store: feed states come in, PollResults go out.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Callable, Iterable, Sequence

import httpx

from .config import FeedConfig
from .fetch import feed_host, fetch_feed, make_client, remember_resolutions
from .logs import get_logger, log
from .models import FeedState
from .normalize import LanguageDetector
from .parsepool import Parser
from .pollresult import FeedOutcome, PollResult, parse_and_normalize
from .settings import Settings

logger = get_logger(__name__)

__all__ = ["BackgroundPoll", "FeedOutcome", "PollResult", "check_feed", "parse_and_normalize", "poll",
           "poll_async"]

OnDone = Callable[[PollResult], None]


async def poll_async(feeds: Sequence[FeedConfig], states: dict[str, FeedState], settings: Settings,
                     on_done: OnDone | None = None, *,
                     transport: httpx.AsyncBaseTransport | None = None) -> list[PollResult]:
    """Fetch with bounded concurrency (``fetch_concurrency`` in all, ``fetch_per_host`` per host);
    parse each body as soon as it arrives: in a thread for small polls, in a process pool sized to
    the cores once enough bytes came in (parsepool.py).  Never raises for a feed's failure: it is
    in that feed's PollResult."""
    remember_resolutions()  # each outlet's name is resolved (and checked) once per poll
    detector = LanguageDetector(settings.languages)
    sem = asyncio.Semaphore(settings.fetch_concurrency)
    per_host: dict[str, asyncio.Semaphore] = {}
    parser = Parser(settings, detector)
    client = make_client(settings, transport=transport)

    async def one(feed: FeedConfig) -> PollResult:
        state = states.get(feed.id)
        host = feed_host(state.url if state is not None and state.url else feed.url)
        host_sem = per_host.setdefault(host, asyncio.Semaphore(settings.fetch_per_host))
        # the host's turn first, then a slot of the global pool: a feed waiting on a busy outlet
        # does not hold a slot other outlets could use
        async with host_sem, sem:
            fetched = await fetch_feed(client, feed, state, settings)
        if fetched.content is not None:
            res = await parser.parse(feed, fetched)
        else:
            res = PollResult(feed, fetched, error=fetched.error)
        if on_done is not None:
            on_done(res)
        return res

    try:
        return list(await asyncio.gather(*(one(f) for f in feeds)))
    finally:
        parser.close()
        await client.aclose()
        log(logger, 20, "poll_done", feeds=len(feeds), **parser.describe())


def poll(feeds: Sequence[FeedConfig], states: dict[str, FeedState], settings: Settings,
         on_done: OnDone | None = None, *, transport: httpx.AsyncBaseTransport | None = None) -> list[PollResult]:
    """:func:`poll_async` in a fresh event loop (the Airflow poll task, tests)."""
    return asyncio.run(poll_async(feeds, states, settings, on_done, transport=transport))


class BackgroundPoll:
    """:func:`poll_async` in a thread with its own event loop; each feed's PollResult is handed
    over through :meth:`results` as soon as it is parsed.  :meth:`stop` cancels what is still
    running (fetches, the parser pool) and waits for the thread."""

    _DONE = object()

    def __init__(self, feeds: Sequence[FeedConfig], states: dict[str, FeedState], settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None):
        self._args = (feeds, states, settings)
        self._transport = transport
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mediamon-poll", daemon=True)

    def start(self) -> "BackgroundPoll":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consuming thread
            self._error = exc
        finally:
            self._queue.put(self._DONE)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        if self._stopping.is_set():
            return
        await poll_async(*self._args, on_done=self._queue.put, transport=self._transport)

    def results(self) -> Iterable[PollResult]:
        """PollResults in completion order; raises what broke the poll itself (never a feed error)."""
        while True:
            item = self._queue.get()
            if item is self._DONE:
                break
            yield item
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self._stopping.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None and self._thread.is_alive():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop already closed
                pass
        self._thread.join()


def check_feed(url: str, settings: Settings, *, language: str | None = None,
               transport: httpx.AsyncBaseTransport | None = None) -> PollResult:
    """Fetch and parse one URL without touching the store (``mediamon feeds check``)."""
    feed = FeedConfig(id="check", url=url, source="check", language=language)

    async def go() -> PollResult:
        client = make_client(settings, transport=transport)
        try:
            fetched = await fetch_feed(client, feed, None, settings)
        finally:
            await client.aclose()
        return parse_and_normalize(feed, fetched, settings, LanguageDetector(settings.languages))

    return asyncio.run(go())
