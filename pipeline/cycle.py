"""``mediamon run``: one monitoring cycle in one process, the steps of ``pipeline.steps`` chained.

    plan → poll (background thread) → deduplicate → enrich → queue alerts → index
         → alert → commit feed state

``run_cycle`` does not wait for the whole poll before storing: polling runs in a background
thread (``pipeline.poll.BackgroundPoll``: its event loop fetches, the parser pool parses) and hands
each feed over as it completes; every ``settings.cycle_batch_items`` items the cycle thread takes
the batch through deduplicate → enrich → queue alerts → index while polling goes on, so parsing,
classification and indexing use the cores at the same time.  The rest (smaller polls: everything)
goes through the same steps once polling is done, with the items whose translation could not run
before; then alerts are delivered and feed states committed, once, for all feeds.

The Airflow DAG runs the same steps as separate tasks (``pipeline.tasks``); what each step does
is written once, in ``pipeline.steps``.  The edges are parameters: ``store``, ``transport`` (HTTP),
``mailer`` and ``clock`` default to what the settings describe and the real clock.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from .analysis import forget as forget_analyses
from .config import AlertConfig, FeedConfig, TopicConfig, load_alerts, load_feeds, load_topics
from .logs import get_logger, log
from .models import Article, Clock, fixed_clock, utcnow
from .poll import BackgroundPoll
from .pollresult import FeedOutcome, PollResult
from .settings import Settings
from .steps import (COUNTER_KEYS, STAGES, Hook, commit_feed_states, deduplicate, enrich_with_retries,
                    first_run_floors, plan, queue_and_index, tally_polls)
from .steps import alert as alert_step
from .store import Store, open_store

if TYPE_CHECKING:
    import httpx

    from .mail import Mailer

logger = get_logger(__name__)

__all__ = ["COUNTER_KEYS", "STAGES", "CycleReport", "run_cycle"]


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


def _progress_hook(hook: Hook | None, on_progress: Callable[[str, Mapping[str, int]], None],
                   counters: Counter) -> Hook:
    def both(stage: str) -> None:
        if hook:
            hook(stage)
        on_progress(stage, counters)

    return both


def run_cycle(settings: Settings, *, store: Store | None = None, feeds: Sequence[FeedConfig] | None = None,
              topics: Sequence[TopicConfig] | None = None, alerts: Sequence[AlertConfig] | None = None,
              now: datetime | None = None, clock: Clock | None = None, force: bool = False,
              scheduled: bool = False, mailer: "Mailer | None" = None,
              transport: "httpx.AsyncBaseTransport | None" = None, hook: Hook | None = None,
              on_feed_done: Callable[[PollResult], None] | None = None,
              on_planned: Callable[[int], None] | None = None,
              on_progress: Callable[[str, Mapping[str, int]], None] | None = None) -> CycleReport:
    """Run one cycle.  Raises only when the cycle itself cannot run (config, store);
    feed and item failures are counted and reported.

    ``clock`` gives the time of every step (``now`` is short for a clock stopped at ``now``:
    simulated time); ``scheduled`` picks the interval policy (``steps.respects_interval``);
    ``mailer`` and ``transport`` replace the mail and HTTP edges; ``on_progress(stage, counters)``
    is called after each stage hook with the cycle's counters so far (the CLI's progress display)."""
    t0 = time.monotonic()
    if clock is None:
        clock = fixed_clock(now) if now is not None else utcnow
    if feeds is None:
        feeds = load_feeds(settings.config_dir)
    if topics is None:
        topics = load_topics(settings.config_dir)
    if alerts is None:
        alerts = load_alerts(settings.config_dir)
    own_store = store is None
    store = store or open_store(settings)
    report = CycleReport(started_at=clock())
    c = report.counters
    if on_progress is not None:
        hook = _progress_hook(hook, on_progress, c)
    try:
        now = report.started_at
        planned = plan(feeds, store, settings, now, force=force, scheduled=scheduled)
        c.update(planned.counters())
        if on_planned:
            on_planned(len(planned.due))
        if hook:
            hook("planned")

        # each rule's alert floor (first run, since:), fixed before the first batch is queued
        floors = first_run_floors(settings=settings, alert_log=store, rules=alerts, now=now,
                                  states=planned.states)
        polls: list[PollResult] = []
        new_ids: set[str] = set()
        new_by_feed: Counter = Counter()
        enriched_ids: list[str] = []

        def store_batch(batch: list[Article], final: bool) -> None:
            new = deduplicate(store, batch, c, feeds)
            new_ids.update(a.id for a in new)
            if hook:
                hook("deduplicated")
            # the items whose translation could not run before go again once, with the last batch
            enriched = enrich_with_retries(new, settings=settings, cache=store, topics=topics, counters=c,
                                           retry_from=store if final else None, seen_ids=new_ids, hook=hook)
            result = queue_and_index(enriched, store=store, alert_log=store, rules=alerts, now=now, counters=c,
                                     hook=hook, floors=floors)
            report.dead_letters.update(result.failed)
            done = result.stored_ids
            enriched_ids.extend(a.id for a in enriched if a.id in done)
            new_by_feed.update(a.feed_id for a in new if a.id in done)
            forget_analyses()

        batch: list[Article] = []
        poller = BackgroundPoll(planned.due, planned.states, settings, transport=transport).start()
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
        order = {f.id: i for i, f in enumerate(planned.due)}
        polls.sort(key=lambda p: order.get(p.feed.id, len(order)))  # the report lists feeds in config order
        if hook:
            hook("polled")
        store_batch(batch, final=True)
        report.new_ids = enriched_ids

        # deliver: every immediate rule's pending matches, this cycle's and any left over
        # at the clock's time now, not the cycle's start: a send's claim must not look older than it is
        # (pipeline.alerts.deliver.CLAIM_TIMEOUT) after a long poll
        c.update(alert_step(settings=settings, store=store, rules=alerts, now=clock(), mailer=mailer))
        if hook:
            hook("alerted")

        commit_feed_states(store, polls, planned.states, settings, clock(), new_by_feed, set(report.dead_letters))
        if hook:
            hook("committed")

        outcomes = [p.outcome for p in polls]
        for o in outcomes:
            o.new = new_by_feed.get(o.feed_id, 0)
        report.feeds = outcomes + planned.skipped
        report.finished_at = clock()
        c["elapsed_ms"] = int((time.monotonic() - t0) * 1000)
        log(logger, 20, "cycle_done", **report.counters_dict())
        return report
    finally:
        if own_store:
            store.close()
