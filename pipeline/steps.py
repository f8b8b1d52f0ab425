"""The stage order of one monitoring cycle, written once.

    plan → poll → deduplicate → enrich (translate + classify) → queue alerts → index
         → alert (deliver) → commit feed state

Each step is one function here.  ``cycle.run_cycle`` (``mediamon run``) calls them in one
process, storing batches while polling goes on; ``pipeline.tasks`` (the ``mediamon_feeds``
DAG) calls the same functions as separate Airflow tasks, the batches waiting in the run's
staging directory in between.  The two differ only in how the steps are scheduled and where the
batches wait; what a step does, what it counts and in which order is decided here.

Every step takes only the store role it uses (``pipeline.store.base``): planning and committing
read and write feed state, deduplication and indexing the articles, enrichment the translation
cache, queueing and delivering alerts the alert log.  No step reads the clock: the time is passed
in (the cycle's clock, the Airflow run's data interval).

Feed state (validators, URL after a 301, backoff) is saved only by :func:`commit_feed_states`,
after the feed's new items were indexed: if anything before that fails or the process dies, the
next run fetches the same items again and stores each exactly once (ids are deterministic,
indexing is an upsert).  Alert matches are queued *before* indexing, so no crash can lose one.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

from .config import AlertConfig, FeedConfig, TopicConfig
from .errors import TransientFeedError
from .fetch import FetchResult
from .identity import DISTINCT_SAME_LINK, article_id, distinct_id, distinguishing_key, entitled, same_story
from .logs import get_logger, log
from .models import Article, FeedState
from .politeness import is_due, next_state, reconcile
from .pollresult import FeedOutcome, PollResult
from .settings import Settings
from .store.base import AlertLog, AlertStore, ArticleStore, FeedStateStore, IndexResult, TranslationCache

if TYPE_CHECKING:
    from .alerts import AlertFloors
    from .classify import TopicClassifier
    from .mail import Mailer

logger = get_logger(__name__)

# Stage names passed to a ``hook`` (tests use it to inject crashes between stages).
STAGES = ("planned", "polled", "deduplicated", "translated", "classified", "queued", "indexed", "alerted",
          "committed")

COUNTER_KEYS = ("feeds", "due", "skipped", "fetched", "not_modified", "failed_feeds", "items_seen", "new",
                "updated", "duplicates", "indexed", "index_failed", "errors")

Hook = Callable[[str], None]


# --- plan ---------------------------------------------------------------------------------------

def respects_interval(*, scheduled: bool) -> bool:
    """The feed-interval policy, decided here and nowhere else.

    A *scheduled* run (the ``mediamon_feeds`` DAG, every 15 minutes) polls a feed only once its
    ``interval`` (feeds.yaml; default ``MEDIAMON_DEFAULT_INTERVAL``) has passed since its last
    fetch.  An *on-demand* run (``mediamon run``) was asked for now by a person: it polls every
    enabled feed that is not backing off, whatever its interval (conditional GET makes that cheap).
    Both skip feeds disabled in the configuration or by HTTP 410 and feeds backing off after
    errors or ``Retry-After``; ``force`` (``mediamon run --force``, the DAG's ``force`` parameter)
    polls every enabled feed now, backoff included.
    """
    return scheduled


@dataclass(frozen=True)
class Plan:
    """The feeds to poll now, the ones skipped (with the reason), and every feed's current state."""

    states: dict[str, FeedState]
    due: list[FeedConfig]
    skipped: list[FeedOutcome]

    def counters(self) -> dict[str, int]:
        return {"feeds": len(self.states), "due": len(self.due), "skipped": len(self.skipped)}


def feed_states(feeds: Sequence[FeedConfig], store: FeedStateStore) -> dict[str, FeedState]:
    """The stored state of every configured feed, reconciled with its configuration (a feed whose
    URL changed in feeds.yaml starts afresh)."""
    stored = store.get_feed_states()
    return {f.id: reconcile(f, stored.get(f.id)) for f in feeds}


def plan(feeds: Sequence[FeedConfig], store: FeedStateStore, settings: Settings, now: datetime, *,
         force: bool = False, scheduled: bool = False) -> Plan:
    """Feeds to poll now, and the ones skipped (disabled, backing off, not due); see
    :func:`respects_interval` for the policy."""
    states = feed_states(feeds, store)
    respect = respects_interval(scheduled=scheduled)
    due: list[FeedConfig] = []
    skipped: list[FeedOutcome] = []
    for feed in feeds:
        if force and feed.enabled:
            due.append(feed)
            continue
        ok, reason = is_due(feed, states.get(feed.id), now, settings, respect_interval=respect)
        if ok:
            due.append(feed)
        else:
            skipped.append(FeedOutcome(feed.id, "skipped", error=reason))
    return Plan(states, due, skipped)


# --- poll (the engine is pipeline.poll) ---------------------------------------------------------------

_DISTINCT_RE = re.compile(rf"^{DISTINCT_SAME_LINK}: (\d+) ")


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
        # stories beyond the first under one link in the document (each stored as its own item)
        for w in p.warnings:
            m = _DISTINCT_RE.match(w)
            if m:
                counters[DISTINCT_SAME_LINK] += int(m.group(1)) - 1
        articles.extend(p.articles)
    return articles


# --- deduplicate --------------------------------------------------------------------------------------

def drop_known(store: ArticleStore, articles: Iterable[Article]) -> tuple[list[Article], int]:
    """Articles not yet in the store or updated since stored (:func:`sort_known`), first
    occurrence wins within the batch; (new and updated, duplicates)."""
    d = sort_known(store, articles)
    return d.new + d.updated, d.duplicates


@dataclass(frozen=True)
class Dedup:
    """The outcome of :func:`sort_known`."""

    new: list[Article]
    updated: list[Article]  # same story, content changed: stored again, first-seen time kept
    duplicates: int
    distinct: int = 0  # new stories under a link an earlier, different story already holds
    reclaimed: list[Article] = field(default_factory=list)  # global ids taken back from unentitled feeds


def sort_known(store: ArticleStore, articles: Iterable[Article],
               feeds: Mapping[str, FeedConfig] | None = None) -> Dedup:
    """Sort a batch against the store (docs/RELIABILITY.md, "Story identity and updates"):

    * an id the store does not hold: **new**;
    * the same content hash as the stored copy: **duplicate**;
    * another content hash, the stored copy credited to another feed: a **duplicate** (the feed
      that stored the story first owns its text; two feeds of one outlet never overwrite each
      other cycle after cycle);
    * another content hash, the same feed, the same story (``identity.same_story``: same guid,
      or no guids and the same title): an **update**, stored again with the stored copy's
      ``fetched_at`` (first seen) so it is translated, classified, re-indexed and matched again;
    * another content hash, the same feed, a *different* story under the id (another guid; no
      guids and another title: 5,000 stories sharing one link): the item takes the id of a
      distinct story (``identity.distinct_id``) and is sorted again under it.

    With ``feeds`` (the configured feeds by id), an item of a feed entitled to its URL's global id
    that finds the id held by a feed *not* entitled to the URL (stored before issue 16's identity
    rule, or by a feed since removed) **reclaims** it: it is stored over that copy, credited to
    its own feed (counter ``reclaimed``).

    An item under a feed-scoped id whose URL's global id holds the same feed's copy (stored
    before the identity rule) is sorted under the global id: an upgrade stores and mails nothing
    twice.

    An item that normalisation already gave a distinct-story id (its document had another story
    first under the link) but whose story holds the link's own id in the store is sorted under
    that id: which story comes first in a document never changes an item's id."""
    batch: dict[str, Article] = {}
    dup = 0
    for a in articles:
        if a.id in batch:
            dup += 1
            continue
        batch[a.id] = a
    new: list[Article] = []
    updated: list[Article] = []
    reclaimed: list[Article] = []
    distinct = 0

    def stored_story(ids: list[str]) -> dict[str, Article]:
        return {s.id: s for s in store.get_articles(ids)} if ids else {}

    items = list(batch.values())
    versions = store.stored_versions(a.id for a in items)
    # a feed-scoped item whose URL's global id holds this feed's own copy, stored before the
    # identity rule: that copy is this item (kept under its id: not stored or mailed twice)
    legacy = {a.id: g for a in items if a.id not in versions and a.canonical_url
              and a.id == article_id(a.canonical_url, "", None, "", "", scope=a.feed_id)
              and (g := article_id(a.canonical_url, "", None, "", "")) not in batch}
    if legacy:
        held_global = store.stored_versions(legacy.values())
        for i, a in enumerate(items):
            v = held_global.get(legacy.get(a.id, ""))
            if v is not None and v.feed_id == a.feed_id:
                items[i] = a.replace(id=legacy[a.id])
                versions[items[i].id] = v
    # items not stored under their id: is it a distinct-story id whose story holds the link's id?
    bases = {a.id: b for a in items if a.id not in versions and (b := _link_id_of(a)) is not None}
    held = stored_story(list(dict.fromkeys(bases.values())))
    first: list[Article] = []
    for a in items:
        s = held.get(bases.get(a.id, ""))
        if s is not None and s.feed_id == a.feed_id and same_story(s.guid, s.title, a.guid, a.title):
            # (the batch may also hold another story under that id: it is told apart below)
            a = a.replace(id=s.id)
            versions.update(store.stored_versions([a.id]))
        first.append(a)

    pending = first
    for round_ in range(2):  # a distinct story's id is derived once; its sorting ends in round 2
        if not pending:
            break
        if round_:
            versions = store.stored_versions(a.id for a in pending)
        changed: list[Article] = []
        for a in pending:
            v = versions.get(a.id)
            if v is None:
                new.append(a)
                if round_:
                    distinct += 1
                    log(logger, 20, DISTINCT_SAME_LINK, feed_id=a.feed_id, article_id=a.id, url=a.canonical_url)
            elif v.feed_id != a.feed_id and feeds is not None and _reclaims(a, v.feed_id, feeds):
                reclaimed.append(a)  # written over the copy of a feed that was never entitled to the URL
                log(logger, 30, "story_reclaimed", feed_id=a.feed_id, article_id=a.id, from_feed=v.feed_id,
                    url=a.canonical_url)
            elif v.feed_id != a.feed_id or (v.content_hash == a.content_hash
                                             and not (v.guid and a.guid and v.guid != a.guid)):
                dup += 1
            else:
                changed.append(a)
        stored = stored_story([a.id for a in changed])
        pending = []
        for a in changed:
            s = stored.get(a.id)
            if s is None:  # removed between the two reads: store it as it is now
                new.append(a)
            elif round_ == 0 and not same_story(s.guid, s.title, a.guid, a.title):
                rekeyed = a.replace(id=distinct_id(a.id, distinguishing_key(a.guid, a.title)))
                if rekeyed.id in batch:
                    dup += 1  # the batch already holds that story under its own id
                else:
                    pending.append(rekeyed)
            else:
                # first seen is kept; so is the date when the feed still gives none (it was the
                # first fetch time, not this one)
                updated.append(a.replace(fetched_at=s.fetched_at, published_at=s.published_at,
                                         date_inferred=s.date_inferred) if a.date_inferred
                               else a.replace(fetched_at=s.fetched_at))
                log(logger, 20, "story_updated", feed_id=a.feed_id, article_id=a.id)
    return Dedup(new, updated, dup, distinct, reclaimed)


def _reclaims(a: Article, holder: str, feeds: Mapping[str, FeedConfig]) -> bool:
    """Does ``a`` (under its URL's global id) take the id over from the feed ``holder``?  Only
    when ``a`` is entitled to the global id and the holder is not (or is no longer configured)."""
    if not a.canonical_url or a.id != article_id(a.canonical_url, "", None, "", ""):
        return False
    holder_feed = feeds.get(holder)
    return holder_feed is None or not entitled(holder_feed, a.canonical_url)


def _link_id_of(a: Article) -> str | None:
    """The link's own id (global or feed-scoped) when ``a.id`` is a distinct-story id derived from
    it (``identity.distinct_id``), else None."""
    if not a.canonical_url:
        return None
    key = distinguishing_key(a.guid, a.title)
    for scope in (None, a.feed_id):
        base = article_id(a.canonical_url, "", None, "", "", scope=scope)
        if distinct_id(base, key) == a.id:
            return base
    return None


def deduplicate(store: ArticleStore, articles: Iterable[Article], counters: Counter,
                feeds: Sequence[FeedConfig] | None = None) -> list[Article]:
    """:func:`sort_known`, counting ``new``, ``updated``, ``reclaimed`` and ``duplicates`` (and
    ``distinct_same_link`` for new stories under a link another story holds); returns the new, the
    updated and the reclaimed articles, which go through the rest of the cycle alike."""
    d = sort_known(store, articles, {f.id: f for f in feeds} if feeds is not None else None)
    counters["new"] += len(d.new)
    counters["updated"] += len(d.updated)
    counters["duplicates"] += d.duplicates
    if d.distinct:
        counters[DISTINCT_SAME_LINK] += d.distinct
    if d.reclaimed:
        counters["reclaimed"] += len(d.reclaimed)
    return d.new + d.updated + d.reclaimed


# --- enrich -------------------------------------------------------------------------------------------

_CLASSIFIERS: dict[tuple, "TopicClassifier | None"] = {}  # one model load per process


def enrich(articles: Sequence[Article], *, settings: Settings, cache: TranslationCache,
           topics: Sequence[TopicConfig], hook: Hook | None = None) -> tuple[list[Article], dict[str, int]]:
    """Translate then classify (one task in Airflow so the model loads once)."""
    from .classify import classify_stage, load_classifier
    from .errors import ModelUnavailable
    from .translate import translate_stage

    counts: Counter = Counter()
    out, c = translate_stage(articles, settings=settings, store=cache)
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


def enrich_with_retries(new: Sequence[Article], *, settings: Settings, cache: TranslationCache,
                        topics: Sequence[TopicConfig], counters: Counter, retry_from: ArticleStore | None,
                        seen_ids: Iterable[str] = (), hook: Hook | None = None) -> list[Article]:
    """:func:`enrich` the new articles plus, when ``retry_from`` is given, the ones stored earlier
    whose translation could not run (model unavailable then) and that are not new in this run
    (``new`` and ``seen_ids``: a run's earlier batches); counts ``translation_retried`` and the
    enrichment counters."""
    skip = {a.id for a in new} | set(seen_ids)
    retry = [] if retry_from is None else [a for a in retry_from.articles_pending_translation()
                                           if a.id not in skip]
    counters["translation_retried"] += len(retry)
    enriched, counts = enrich(list(new) + retry, settings=settings, cache=cache, topics=topics, hook=hook)
    counters.update(counts)
    return enriched


# --- queue alerts, index ------------------------------------------------------------------------------

def queue_alerts(articles: Sequence[Article], *, alert_log: AlertLog, rules: Sequence[AlertConfig],
                 now: datetime, floors: "AlertFloors | None" = None) -> dict[str, int]:
    """Match and durably queue alert pairs (before indexing: a crash later loses no match).
    ``floors`` (``pipeline.alerts.alert_floors``, computed once per cycle): matches published
    before them are stored, not alerted (a rule's first run, ``since:``)."""
    if not rules or not articles:
        return {}
    from .alerts import queue_matches

    return queue_matches(articles, store=alert_log, rules=list(rules), now=now, floors=floors)


def first_run_floors(*, settings: Settings, alert_log: AlertLog, rules: Sequence[AlertConfig],
                     now: datetime, states: Mapping[str, FeedState] | None = None) -> "AlertFloors | None":
    """Each rule's alert floor for this cycle (see ``pipeline.alerts.alert_floors``); call once,
    before the first batch is queued.  ``states``: the feed states before this cycle's poll (the
    feeds without a past success are on their first poll)."""
    if not rules:
        return None
    from .alerts import alert_floors

    polled = None if states is None else {fid for fid, st in states.items() if st.last_success_at is not None}
    return alert_floors(rules, alert_log, now, timedelta(seconds=settings.alert_first_run_lookback), polled)


def index(store: ArticleStore, articles: Sequence[Article]) -> IndexResult:
    """Store the articles (an idempotent upsert by id); refused items are in ``failed``."""
    if not articles:
        return IndexResult()
    return store.index(articles)


def queue_and_index(articles: Sequence[Article], *, store: ArticleStore, alert_log: AlertLog,
                    rules: Sequence[AlertConfig], now: datetime, counters: Counter,
                    hook: Hook | None = None, floors: "AlertFloors | None" = None) -> IndexResult:
    """Queue the alert matches of ``articles``, then index them; counts ``indexed``,
    ``index_failed`` and ``errors`` (one per dead letter), logs each dead letter."""
    counters.update(queue_alerts(articles, alert_log=alert_log, rules=rules, now=now, floors=floors))
    if hook:
        hook("queued")
    result = index(store, articles)
    counters["indexed"] += len(result.created) + len(result.updated)
    counters["index_failed"] += len(result.failed)
    counters["errors"] += len(result.failed)
    for aid, reason in result.failed.items():
        log(logger, 40, "index_dead_letter", article_id=aid, error=reason)
    if hook:
        hook("indexed")
    return result


# --- alert --------------------------------------------------------------------------------------------

def alert(*, settings: Settings, store: AlertStore, rules: Sequence[AlertConfig], now: datetime,
          mailer: "Mailer | None" = None) -> dict[str, int]:
    """Mail every immediate rule's pending matches: this cycle's (queued before indexing) and
    any left over.  ``mailer`` defaults to the one the settings describe."""
    if not rules:
        return {}
    from .alerts import alert_stage

    return alert_stage(settings=settings, store=store, rules=list(rules), now=now, mailer=mailer)


# --- commit -------------------------------------------------------------------------------------------

def commit_feed_states(store: FeedStateStore, polls: Sequence[PollResult], states: dict[str, FeedState],
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
