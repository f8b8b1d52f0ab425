"""Alert matching: which rule matches which article, and the durable queue of matches.

A rule matches an article when its query matches (the Python evaluator of ``pipeline.query``)
and the article passes the rule's topic and language filters.  :func:`queue_matches` writes the
matches to the store's alert log before the articles are indexed (see ``pipeline.steps``);
:func:`test_rule` shows what a rule would match among stored articles (``mediamon alerts test``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from ..config import AlertConfig
from ..logs import get_logger, log
from ..models import AlertEntry, Article
from ..store.base import AlertLog, AlertStore, SearchRequest
from ..undated import known_published_at

logger = get_logger(__name__)


@dataclass(frozen=True)
class CompiledRule:
    rule: AlertConfig
    query: Any  # pipeline.query.Query


def compile_rules(rules: Iterable[AlertConfig], counts: Counter | None = None) -> list[CompiledRule]:
    """Parse every rule's query; a rule with a bad query is logged and skipped, the others run."""
    from ..query import parse_query

    out = []
    for r in rules:
        try:
            out.append(CompiledRule(r, parse_query(r.query, r.aliases)))
        except Exception as exc:  # noqa: BLE001 - load_alerts validates; this guards direct callers
            log(logger, 40, "alert_rule_invalid", rule_id=r.id, error=str(exc))
            if counts is not None:
                counts["alert_errors"] += 1
    return out


def rule_matches(cr: CompiledRule, article: Article) -> list[str] | None:
    """Matched terms (possibly empty) when the rule matches the article, else None."""
    r = cr.rule
    if r.languages and (article.language or article.feed_language) not in r.languages:
        return None
    if r.topics and not set(r.topics) & set(article.topics):
        return None
    if not cr.query.matches(article):
        return None
    try:
        terms = list(cr.query.matched_terms(article))
    except Exception:  # noqa: BLE001 - highlighting is cosmetic; the match stands
        terms = []
    return list(dict.fromkeys(t for t in terms if isinstance(t, str) and t))


@dataclass(frozen=True)
class AlertFloors:
    """Per rule, the oldest ``published_at`` alerted in this cycle, and the rules on their first run."""

    floors: Mapping[str, datetime]
    first_run: frozenset[str]
    # feeds polled successfully before this cycle: an undated item of any other feed (its first
    # poll) may be years old, and is not alerted
    polled_feeds: frozenset[str] | None = None


def alert_floors(rules: Iterable[AlertConfig], store: AlertLog, now: datetime,
                 lookback: timedelta, polled_feeds: Iterable[str] | None = None) -> AlertFloors:
    """The oldest ``published_at`` each rule alerts on in this cycle (issue 18, "first run").

    A rule that has never queued a match (no pending, failed or sent item in its alert log: a new
    rule, or a new store) is on its *first run*: only items published within ``lookback`` before
    ``now`` are alerted, so a new store does not mail the feeds' backlog.  A rule's ``since:``
    is a floor on every run.  Rules without a floor are absent.  Compute once per cycle, before
    the first batch is queued (the first batch would otherwise end the first run).

    An item whose date was inferred (the feed gave none) is dated by the time it was first seen.
    That says nothing on a feed's first poll (``polled_feeds``: the feeds polled successfully
    before this cycle; None: unknown, every feed counts as polled), when every item is first seen:
    those items are stored but not alerted, whatever the rule.  Once the feed has been polled, an
    undated item that appears is new since the last poll and its first-seen time stands."""
    summary = store.alert_summary()
    floors: dict[str, datetime] = {}
    first_run: set[str] = set()
    for r in rules:
        floor = r.since
        if not any(summary.get(r.id, {}).get(k) for k in ("pending", "failed", "sent")):
            first_run.add(r.id)
            first = now - lookback
            floor = first if floor is None or first > floor else floor
        if floor is not None:
            floors[r.id] = floor
    return AlertFloors(floors, frozenset(first_run),
                       frozenset(polled_feeds) if polled_feeds is not None else None)


def _below_floor(article: Article, floor: datetime | None, polled_feeds: frozenset[str] | None) -> bool:
    """An item published before the floor is not alerted, nor an item whose date was inferred (the
    feed gave none: it may be years old) met on its feed's first poll (see :func:`alert_floors`)."""
    if known_published_at(article) is None and polled_feeds is not None and article.feed_id not in polled_feeds:
        return True
    if floor is None:
        return False
    return article.published_at < floor


def match_articles(articles: Sequence[Article], rules: Sequence[CompiledRule], now: datetime,
                   counts: Counter | None = None, floors: Mapping[str, datetime] | None = None,
                   polled_feeds: frozenset[str] | None = None) -> list[AlertEntry]:
    """The (rule, article) pairs to queue.  A match below the rule's floor (:func:`alert_floors`)
    is stored with the article but not alerted: counted as ``alert_backlog_skipped``."""
    entries = []
    floors = floors or {}
    for a in articles:
        for cr in rules:
            try:
                terms = rule_matches(cr, a)
            except Exception as exc:  # noqa: BLE001 - one bad item never fails the batch
                log(logger, 40, "alert_match_failed", rule_id=cr.rule.id, article_id=a.id, error=str(exc))
                if counts is not None:
                    counts["alert_errors"] += 1
                continue
            if terms is None:
                continue
            if _below_floor(a, floors.get(cr.rule.id), polled_feeds):
                if counts is not None:
                    counts["alert_backlog_skipped"] += 1
                continue
            entries.append(AlertEntry(cr.rule.id, a.id, tuple(terms), queued_at=now))
    return entries


def queue_matches(articles: Sequence[Article], *, store: AlertLog, rules: list[AlertConfig],
                  now: datetime, floors: "AlertFloors | None" = None) -> dict[str, int]:
    """Match ``articles`` and write the (rule, article) pairs to the durable queue, nothing else.

    The cycle calls this *before* indexing, so a process that dies between indexing and
    delivery cannot lose a match: the pairs are already queued and the next cycle's
    ``alert_stage`` delivers them.  (Had it died before indexing, the feed state was not
    advanced, the items come back, and enqueuing them again is a no-op.)
    """
    counts: Counter = Counter()
    compiled = compile_rules(rules, counts)
    if floors is None:  # without first-run floors: only the rules' own ``since:``
        floors = AlertFloors({r.id: r.since for r in rules if r.since is not None}, frozenset())
    entries = match_articles(articles, compiled, now, counts, floors.floors, floors.polled_feeds)
    counts["alert_matches"] = len(entries) + counts.get("alert_backlog_skipped", 0)
    if entries:
        counts["alert_queued"] = store.alert_enqueue(entries)
    return dict(counts)


# --- dry run over stored articles (mediamon alerts test) -----------------------------------------------

@dataclass
class TestHit:
    article: Article
    terms: list[str]
    already_sent: bool


def test_rule(rule: AlertConfig, store: AlertStore, *, since: datetime | None = None, limit: int = 50,
              scan_limit: int = 20_000) -> tuple[list[TestHit], int]:
    """What the rule would match among stored articles (newest first), nothing sent or queued.

    Evaluates the rule exactly as the alert stage does (Python query evaluator + filters) over
    stored articles, pre-filtered by topics/languages/since in the store.  Returns (hits up to
    ``limit``, total number of matches among the scanned articles)."""
    from ..query import parse_query

    cr = CompiledRule(rule, parse_query(rule.query, rule.aliases))  # a syntax error goes to the caller
    hits: list[TestHit] = []
    total = 0
    scanned = 0
    cursor = None
    while scanned < scan_limit:
        req = SearchRequest(topics=tuple(rule.topics or ()), since=since, sort="newest", limit=500,
                            cursor=cursor)
        res = store.search(req)
        for a in res.hits:
            scanned += 1
            terms = rule_matches(cr, a)
            if terms is None:
                continue
            total += 1
            if len(hits) < limit:
                hits.append(TestHit(a, terms, False))
        if not res.next_cursor or not res.hits:
            break
        cursor = res.next_cursor
    sent = store.alert_sent_ids(rule.id, [h.article.id for h in hits])
    for h in hits:
        h.already_sent = h.article.id in sent
    return hits, total


test_rule.__test__ = False  # type: ignore[attr-defined]  # not a pytest test (its name starts with test_)
TestHit.__test__ = False  # type: ignore[attr-defined]
