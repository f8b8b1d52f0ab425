"""One monitoring cycle: the stages of DESIGN.md chained, with counters.

    plan → poll (fetch + parse + normalise, per feed) → drop known ids
         → translate → classify → queue alert matches → index → deliver alerts
         → commit feed state

Each stage is a plain function that the Airflow DAG also calls as its own task.
Feed state (validators, URL after a 301, backoff) is saved only in
``commit_feed_states``, after the feed's new items were indexed: if anything
before that fails or the process dies, the next run fetches the same items
again and stores each exactly once (ids are deterministic, indexing is an upsert).

``run_cycle`` does not wait for the whole poll before storing: polling runs in a
background thread (its event loop fetches, the parser pool parses) and hands
each feed over as it completes; every ``settings.cycle_batch_items`` items the
cycle thread takes the batch through drop known → translate → classify → queue
→ index while polling goes on, so parsing, classification and indexing use the
cores at the same time.  The rest (smaller polls: everything) goes through the
same stages once polling is done; then alerts are delivered and feed states
committed, once, for all feeds.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable, Sequence

from .analysis import forget as forget_analyses
from .config import AlertConfig, FeedConfig, TopicConfig, load_alerts, load_feeds, load_topics
from .errors import FeedError, FeedParseError, TransientFeedError
from .fetch import FetchResult, feed_host, fetch_feed, make_client, remember_resolutions
from .logs import get_logger, log
from .models import Article, FeedState, utcnow
from .normalize import LanguageDetector, normalize_feed
from .parse import parse_feed
from .politeness import is_due, next_state, reconcile
from .settings import Settings
from .store import Store, open_store
from .store.base import IndexResult

logger = get_logger(__name__)

# Stage names passed to a ``hook`` (tests use it to inject crashes between stages).
STAGES = ("planned", "polled", "deduplicated", "translated", "classified", "queued", "indexed", "alerted",
          "committed")

COUNTER_KEYS = ("feeds", "due", "skipped", "fetched", "not_modified", "failed_feeds", "items_seen", "new",
                "duplicates", "indexed", "index_failed", "errors")


@dataclass
class FeedOutcome:
    feed_id: str
    status: str  # ok | not_modified | failed | skipped
    http_status: int | None = None
    items: int = 0
    new: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"feed_id": self.feed_id, "status": self.status, "http_status": self.http_status,
                "items": self.items, "new": self.new, "error": self.error, "warnings": self.warnings,
                "seconds": round(self.seconds, 3)}


@dataclass
class PollResult:
    feed: FeedConfig
    fetch: FetchResult
    articles: list[Article] = field(default_factory=list)
    error: FeedError | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> FeedOutcome:
        if self.error is not None:
            status = "failed"
        elif self.fetch.not_modified:
            status = "not_modified"
        else:
            status = "ok"
        return FeedOutcome(self.feed.id, status, self.fetch.status, len(self.articles), 0,
                           str(self.error) if self.error else None, list(self.warnings), self.fetch.elapsed)


@dataclass
class CycleReport:
    counters: Counter = field(default_factory=Counter)
    feeds: list[FeedOutcome] = field(default_factory=list)
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    new_ids: list[str] = field(default_factory=list)
    dead_letters: dict[str, str] = field(default_factory=dict)

    def counters_dict(self) -> dict[str, int]:
        d = {k: int(self.counters.get(k, 0)) for k in COUNTER_KEYS}
        d.update({k: int(v) for k, v in sorted(self.counters.items()) if k not in d})
        return d

    def to_dict(self) -> dict:
        return {"counters": self.counters_dict(), "feeds": [f.to_dict() for f in self.feeds],
                "started_at": self.started_at.isoformat(), "finished_at":
                    self.finished_at.isoformat() if self.finished_at else None}


Hook = Callable[[str], None]


# --- stages -------------------------------------------------------------------------------------

def plan(feeds: Sequence[FeedConfig], states: dict[str, FeedState], settings: Settings, now: datetime, *,
         force: bool = False, respect_interval: bool = False) -> tuple[list[FeedConfig], list[FeedOutcome]]:
    """Feeds to poll now, and the ones skipped (disabled, backing off, not due)."""
    due: list[FeedConfig] = []
    skipped: list[FeedOutcome] = []
    for feed in feeds:
        state = states.get(feed.id)
        if force and feed.enabled:
            due.append(feed)
            continue
        ok, reason = is_due(feed, state, now, settings, respect_interval=respect_interval)
        if ok:
            due.append(feed)
        else:
            skipped.append(FeedOutcome(feed.id, "skipped", error=reason))
    return due, skipped


def parse_and_normalize(feed: FeedConfig, fetch: FetchResult, settings: Settings,
                        detector: LanguageDetector | None) -> PollResult:
    """Bytes of one feed → Articles.  Never raises for bad input: the error is in the result."""
    if fetch.error is not None or fetch.content is None:
        return PollResult(feed, fetch, error=fetch.error)
    try:
        parsed = parse_feed(fetch.content, url=fetch.final_url, content_type=fetch.content_type,
                            max_items=settings.max_items_per_feed, content_language=fetch.content_language)
        articles, problems = normalize_feed(parsed, feed, fetch.fetched_at, detector)
    except FeedError as exc:
        log(logger, 30, "parse_failed", feed_id=feed.id, error=str(exc))
        return PollResult(feed, fetch, error=exc)
    except Exception as exc:  # noqa: BLE001 - one bad feed never fails the batch
        err = FeedParseError(f"could not parse: {exc.__class__.__name__}: {exc}")
        err.__cause__ = exc
        log(logger, 40, "parse_crashed", feed_id=feed.id, error=str(exc))
        return PollResult(feed, fetch, error=err)
    for w in parsed.warnings:
        log(logger, 20, "parse_warning", feed_id=feed.id, warning=w)
    return PollResult(feed, fetch, articles=articles, warnings=list(parsed.warnings) + problems)


async def poll_async(feeds: Sequence[FeedConfig], states: dict[str, FeedState], settings: Settings,
                     on_done: Callable[[PollResult], None] | None = None) -> list[PollResult]:
    """Fetch with bounded concurrency (``fetch_concurrency`` in all, ``fetch_per_host`` per host);
    parse each body as soon as it arrives: in a thread for small polls, in a process pool sized to
    the cores once enough bytes came in (parsepool.py)."""
    from .parsepool import Parser

    remember_resolutions()  # each outlet's name is resolved (and checked) once per poll
    detector = LanguageDetector(settings.languages)
    sem = asyncio.Semaphore(settings.fetch_concurrency)
    per_host: dict[str, asyncio.Semaphore] = {}
    parser = Parser(settings, detector)
    client = make_client(settings)

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
         on_done: Callable[[PollResult], None] | None = None) -> list[PollResult]:
    return asyncio.run(poll_async(feeds, states, settings, on_done))


def tally_polls(polls: Sequence[PollResult], counters: Counter) -> list[Article]:
    """Count fetched / not_modified / failed feeds and items seen; return all polled articles."""
    articles: list[Article] = []
    for p in polls:
        if p.error is not None:
            counters["failed_feeds"] += 1
            counters["errors"] += 1
        elif p.fetch.not_modified:
            counters["not_modified"] += 1
        else:
            counters["fetched"] += 1
        counters["items_seen"] += len(p.articles)
        articles.extend(p.articles)
    return articles


def drop_known(store: Store, articles: Iterable[Article]) -> tuple[list[Article], int]:
    """Articles not yet in the store, first occurrence wins within the batch; (new, duplicates)."""
    batch: dict[str, Article] = {}
    dup = 0
    for a in articles:
        if a.id in batch:
            dup += 1
            continue
        batch[a.id] = a
    known = store.known_ids(batch)
    new = [a for i, a in batch.items() if i not in known]
    return new, dup + len(known)


_CLASSIFIERS: dict[tuple, object] = {}  # one model load per process


def enrich(articles: Sequence[Article], *, settings: Settings, store: Store,
           topics: Sequence[TopicConfig], hook: Hook | None = None) -> tuple[list[Article], dict[str, int]]:
    """Translate then classify (one task in Airflow so the model loads once)."""
    from .classify import classify_stage, load_classifier
    from .errors import ModelUnavailable
    from .translate import translate_stage

    counts: Counter = Counter()
    out, c = translate_stage(articles, settings=settings, store=store)
    counts.update(c)
    if hook:
        hook("translated")
    classifier = None
    if settings.classifier_model:
        key = (settings.classifier_model, settings.classifier_threshold, settings.classifier_device)
        try:
            classifier = _CLASSIFIERS.get(key) or _CLASSIFIERS.setdefault(key, load_classifier(settings))
        except ModelUnavailable as exc:
            # rules still classify; the model is optional
            log(logger, 40, "classifier_unavailable", model=settings.classifier_model, error=str(exc),
                fix="set MEDIAMON_CLASSIFIER_MODEL to a loadable hub id or local path, or unset it")
            counts["classifier_unavailable"] += 1
    out, c = classify_stage(out, list(topics), classifier)
    counts.update(c)
    if hook:
        hook("classified")
    return list(out), dict(counts)


def index(store: Store, articles: Sequence[Article]) -> IndexResult:
    if not articles:
        return IndexResult()
    return store.index(articles)


def queue_alerts(articles: Sequence[Article], *, store: Store, rules: Sequence[AlertConfig],
                 now: datetime | None = None) -> dict[str, int]:
    """Match and durably queue alert pairs (before indexing: a crash later loses no match)."""
    if not rules or not articles:
        return {}
    from .alerts import queue_matches

    return queue_matches(articles, store=store, rules=list(rules), now=now)


def alert(articles: Sequence[Article], *, settings: Settings, store: Store,
          rules: Sequence[AlertConfig], now: datetime | None = None) -> dict[str, int]:
    """Match ``articles`` (if any) and mail every immediate rule's pending matches."""
    if not rules:
        return {}
    from .alerts import alert_stage

    return alert_stage(articles, settings=settings, store=store, rules=list(rules), now=now)


def commit_feed_states(store: Store, polls: Sequence[PollResult], states: dict[str, FeedState],
                       settings: Settings, now: datetime, new_by_feed: dict[str, int],
                       failed_ids: Iterable[str] = ()) -> list[FeedState]:
    """Advance the state of every polled feed.  Called only after indexing succeeded.
    A feed with a dead-lettered item keeps its old validators, so the item comes back."""
    failed = set(failed_ids)
    updated = []
    for p in polls:
        state = reconcile(p.feed, states.get(p.feed.id))
        err = p.error
        if err is None and any(a.id in failed for a in p.articles):
            err = TransientFeedError("some items could not be stored; will fetch again")
        fetch = p.fetch if err is None else FetchResult(p.feed.id, p.fetch.url, p.fetch.final_url,
                                                        status=err.status, error=err)
        updated.append(next_state(state, fetch, now, settings, new_items=new_by_feed.get(p.feed.id, 0)))
    if updated:
        store.save_feed_states(updated)
    return updated


# --- the cycle ------------------------------------------------------------------------------------

class BackgroundPoll:
    """:func:`poll_async` in a thread with its own event loop; each feed's PollResult is handed
    over through :meth:`results` as soon as it is parsed.  :meth:`stop` cancels what is still
    running (fetches, the parser pool) and waits for the thread."""

    _DONE = object()

    def __init__(self, feeds: Sequence[FeedConfig], states: dict[str, FeedState], settings: Settings):
        self._args = (feeds, states, settings)
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
        await poll_async(*self._args, on_done=self._queue.put)

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


def run_cycle(settings: Settings, *, store: Store | None = None, feeds: Sequence[FeedConfig] | None = None,
              topics: Sequence[TopicConfig] | None = None, alerts: Sequence[AlertConfig] | None = None,
              now: datetime | None = None, force: bool = False, respect_interval: bool = False,
              hook: Hook | None = None, on_feed_done: Callable[[PollResult], None] | None = None,
              on_planned: Callable[[int], None] | None = None) -> CycleReport:
    """Run one cycle.  Raises only when the cycle itself cannot run (config, store);
    feed and item failures are counted and reported."""
    t0 = time.monotonic()
    if feeds is None:
        feeds = load_feeds(settings.config_dir)
    if topics is None:
        topics = load_topics(settings.config_dir)
    if alerts is None:
        alerts = load_alerts(settings.config_dir)
    own_store = store is None
    store = store or open_store(settings)
    report = CycleReport()
    c = report.counters
    simulated_now = now
    try:
        now = now or utcnow()
        states = {fid: s for fid, s in store.get_feed_states().items()}
        states = {f.id: reconcile(f, states.get(f.id)) for f in feeds}
        due, skipped = plan(feeds, states, settings, now, force=force, respect_interval=respect_interval)
        c["feeds"] = len(feeds)
        c["due"] = len(due)
        c["skipped"] = len(skipped)
        if on_planned:
            on_planned(len(due))
        if hook:
            hook("planned")

        polls: list[PollResult] = []
        new_ids: set[str] = set()
        new_by_feed: Counter = Counter()
        enriched_ids: list[str] = []

        def store_batch(batch: list[Article], final: bool) -> None:
            new, dups = drop_known(store, batch)
            c["new"] += len(new)
            c["duplicates"] += dups
            new_ids.update(a.id for a in new)
            if hook:
                hook("deduplicated")
            todo = new
            if final:
                # items stored earlier whose translation could not run (model unavailable) go again
                retry = [a for a in store.articles_pending_translation() if a.id not in new_ids]
                c["translation_retried"] += len(retry)
                todo = new + retry
            enriched, counts = enrich(todo, settings=settings, store=store, topics=topics, hook=hook)
            c.update(counts)
            # queue alert matches before indexing so that no crash can lose one (see queue_alerts)
            c.update(queue_alerts(enriched, store=store, rules=alerts, now=now))
            if hook:
                hook("queued")
            result = index(store, enriched)
            c["indexed"] += len(result.created) + len(result.updated)
            c["index_failed"] += len(result.failed)
            c["errors"] += len(result.failed)
            report.dead_letters.update(result.failed)
            done = set(result.created) | set(result.updated) | set(result.unchanged)
            enriched_ids.extend(a.id for a in enriched if a.id in done)
            new_by_feed.update(a.feed_id for a in new if a.id in done)
            forget_analyses()
            if hook:
                hook("indexed")

        batch: list[Article] = []
        poller = BackgroundPoll(due, states, settings).start()
        try:
            for p in poller.results():
                polls.append(p)
                batch.extend(tally_polls([p], c))
                if on_feed_done is not None:
                    on_feed_done(p)
                if len(batch) >= settings.cycle_batch_items:
                    store_batch(batch, final=False)
                    batch = []
        finally:
            poller.stop()
        order = {f.id: i for i, f in enumerate(due)}
        polls.sort(key=lambda p: order.get(p.feed.id, len(order)))  # the report lists feeds in config order
        if hook:
            hook("polled")
        store_batch(batch, final=True)
        report.new_ids = enriched_ids
        failed_ids = set(report.dead_letters)

        # deliver: every immediate rule's pending matches, this cycle's and any left over
        c.update(alert([], settings=settings, store=store, rules=alerts, now=now))
        if hook:
            hook("alerted")

        # the real clock unless the caller simulates time (tests, soak)
        commit_feed_states(store, polls, states, settings, utcnow() if simulated_now is None else now,
                           new_by_feed, failed_ids)
        if hook:
            hook("committed")

        outcomes = [p.outcome for p in polls]
        for o in outcomes:
            o.new = new_by_feed.get(o.feed_id, 0)
        report.feeds = outcomes + skipped
        report.finished_at = utcnow()
        c["elapsed_ms"] = int((time.monotonic() - t0) * 1000)
        log(logger, 20, "cycle_done", **report.counters_dict())
        return report
    finally:
        if own_store:
            store.close()


def check_feed(url: str, settings: Settings, *, language: str | None = None) -> PollResult:
    """Fetch and parse one URL without touching the store (``mediamon feeds check``)."""
    feed = FeedConfig(id="check", url=url, source="check", language=language)

    async def go() -> PollResult:
        client = make_client(settings)
        try:
            fetched = await fetch_feed(client, feed, None, settings)
        finally:
            await client.aclose()
        return parse_and_normalize(feed, fetched, settings, LanguageDetector(settings.languages))

    return asyncio.run(go())
