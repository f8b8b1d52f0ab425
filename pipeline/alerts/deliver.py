"""Alert delivery: the state machine that mails each rule's pending matches once.

See the package docstring (``pipeline.alerts``) for the guarantees and the remaining duplicate
window.  Time and the mailer are passed in; nothing here reads the clock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Callable, Sequence

from ..config import AlertConfig
from ..errors import MediamonError, PermanentMailError, TransientMailError
from ..logs import get_logger, log
from ..models import AlertEntry
from ..settings import Settings
from ..store.base import AlertStore
from .match import compile_rules
from .mutes import load_mutes, split_recipients
from .render import Story, build_message, group_stories

if TYPE_CHECKING:
    from ..mail import Mailer

logger = get_logger(__name__)

INTERRUPTED = "interrupted: delivery started, outcome unknown"
# a queued match whose article is not (yet) stored waits this long before it is marked failed
MISSING_ARTICLE_GRACE = timedelta(days=3)

COUNT_KEYS = ("alert_matches", "alert_queued", "alert_emails_sent", "alert_items_sent", "alert_emails_failed",
              "alert_emails_deferred", "alert_throttled", "alert_possible_duplicates", "alert_errors")


@dataclass
class RuleOutcome:
    rule_id: str
    status: str  # sent | nothing | throttled | deferred | failed | muted | dry_run | error
    stories: int = 0
    articles: int = 0
    more: int = 0
    message: EmailMessage | None = None
    error: str | None = None
    possible_duplicate: bool = False
    location: str | None = None


def _batch(pending: list[AlertEntry], store: AlertStore, settings: Settings, now: datetime,
           rule_id: str, dry_run: bool) -> tuple[list[Story], int]:
    """Pending pairs → (stories for this email, stories left for later).  Oldest queued first,
    so a capped rule drains in order.  A pair whose article is not in the store stays pending
    while it is young (matches are queued *before* indexing: an item the store dead-lettered this
    cycle is fetched again and stored by a later one); after ``MISSING_ARTICLE_GRACE`` it is
    marked failed (the article is gone)."""
    ids = [e.article_id for e in pending]
    articles = {a.id: a for a in store.get_articles(ids)}
    missing = [e for e in pending if e.article_id not in articles]
    if missing and not dry_run:
        gone = [e.article_id for e in missing
                if e.queued_at is not None and now - e.queued_at > MISSING_ARTICLE_GRACE]
        if gone:
            store.alert_record_attempt(rule_id, gone, at=now, error="article no longer in the store", failed=True)
        log(logger, 30, "alert_article_missing", rule_id=rule_id, article_ids=[e.article_id for e in missing][:20],
            count=len(missing), marked_failed=len(gone))
    terms = {e.article_id: e.terms for e in pending}
    stories = group_stories([articles[i] for i in ids if i in articles], terms)
    # oldest queued first for the cap; then newest first for display
    rank = {e.article_id: n for n, e in enumerate(pending)}
    stories.sort(key=lambda s: min(rank[i] for i in s.ids))
    cap = settings.alert_max_items_per_email
    chosen, rest = stories[:cap], stories[cap:]
    chosen.sort(key=lambda s: (s.published_at, s.primary.id), reverse=True)
    return chosen, len(rest)


def deliver_rule(rule: AlertConfig, *, settings: Settings, store: AlertStore, mailer: "Mailer | None", now: datetime,
                 digest: bool = False, dry_run: bool = False) -> RuleOutcome:
    """Mail all pending pairs of one rule as one email (respecting throttle and cap)."""
    pending = store.alert_pending(rule.id)
    if not pending:
        return RuleOutcome(rule.id, "nothing")
    th = rule.throttle
    if th is not None and not dry_run:
        recent = store.alert_emails_since(rule.id, now - timedelta(seconds=th.per_seconds))
        if recent >= th.max_emails:
            log(logger, 20, "alert_throttled", rule_id=rule.id, pending=len(pending), emails_in_period=recent)
            return RuleOutcome(rule.id, "throttled", articles=len(pending))
    stories, more = _batch(pending, store, settings, now, rule.id, dry_run)
    if not stories:
        return RuleOutcome(rule.id, "nothing")
    ids = [i for s in stories for i in s.ids]
    n_articles = len(ids)
    # the mute list (mediamon alerts mute): muted addresses are left out, SMTP and outbox alike
    active, muted = split_recipients(rule.recipients, rule.id, load_mutes(settings))
    if muted:
        log(logger, 20, "alert_recipients_muted", rule_id=rule.id, muted=len(muted), active=len(active))
        if not active:
            if not dry_run:
                store.alert_record_attempt(rule.id, ids, at=now, error="muted: every recipient is muted", failed=True)
            return RuleOutcome(rule.id, "muted", len(stories), n_articles, more, error="every recipient is muted")
        rule = rule.model_copy(update={"recipients": tuple(active)})
    try:
        message = build_message(rule, stories, settings=settings, now=now, more=more, digest=digest)
    except PermanentMailError as exc:
        if not dry_run:
            store.alert_record_attempt(rule.id, ids, at=now, error=str(exc), failed=True)
        return RuleOutcome(rule.id, "failed", len(stories), n_articles, more, error=str(exc))
    if dry_run:
        return RuleOutcome(rule.id, "dry_run", len(stories), n_articles, more, message=message)
    if mailer is None:
        raise ValueError("deliver_rule needs a mailer unless dry_run")

    in_batch = {e.article_id: e for e in pending}
    possible_dup = any(in_batch[i].last_error == INTERRUPTED for i in ids if i in in_batch)
    if possible_dup:
        log(logger, 30, "alert_possible_duplicate", rule_id=rule.id,
            detail="a previous delivery of some of these items was interrupted after it started; "
                   "the server may already have them")
    # "delivery started" marker: if we die after the server accepts and before mark_sent commits,
    # the next run knows this batch may be a duplicate (see the package docstring, pipeline.alerts)
    store.alert_record_attempt(rule.id, ids, at=now, error=INTERRUPTED)
    try:
        result = mailer.send(message, list(rule.recipients))
    except TransientMailError as exc:
        store.alert_record_attempt(rule.id, ids, at=now, error=f"transient: {exc}", count=False)
        log(logger, 30, "alert_deferred", rule_id=rule.id, items=n_articles, error=str(exc))
        return RuleOutcome(rule.id, "deferred", len(stories), n_articles, more, message, str(exc), possible_dup)
    except PermanentMailError as exc:
        store.alert_record_attempt(rule.id, ids, at=now, error=f"permanent: {exc}", failed=True, count=False)
        log(logger, 40, "alert_failed", rule_id=rule.id, items=n_articles, error=str(exc))
        return RuleOutcome(rule.id, "failed", len(stories), n_articles, more, message, str(exc), possible_dup)
    store.alert_mark_sent(rule.id, ids, message_id=result.message_id, sent_at=now)
    log(logger, 20, "alert_sent", rule_id=rule.id, stories=len(stories), items=n_articles, more=more,
        message_id=result.message_id, via=mailer.describe(), refused=result.refused or None)
    return RuleOutcome(rule.id, "sent", len(stories), n_articles, more, message,
                       possible_duplicate=possible_dup, location=result.location)


def _count(outcome: RuleOutcome, counts: Counter) -> None:
    if outcome.status == "sent":
        counts["alert_emails_sent"] += 1
        counts["alert_items_sent"] += outcome.articles
    elif outcome.status == "failed":
        counts["alert_emails_failed"] += 1
    elif outcome.status == "deferred":
        counts["alert_emails_deferred"] += 1
    elif outcome.status == "throttled":
        counts["alert_throttled"] += 1
    elif outcome.status == "muted":
        counts["alert_emails_muted"] += 1
    elif outcome.status == "error":
        counts["alert_errors"] += 1
    elif outcome.status == "dry_run":
        counts["alert_emails_would_send"] += 1
        counts["alert_items_would_send"] += outcome.articles
    if outcome.possible_duplicate and outcome.status == "sent":
        counts["alert_possible_duplicates"] += 1


def _deliver_all(rules: Sequence[AlertConfig], *, settings: Settings, store: AlertStore, mailer: "Mailer | None", now: datetime,
                 digest: bool, dry_run: bool, counts: Counter,
                 on_outcome: Callable[[RuleOutcome], None] | None) -> None:
    for rule in rules:
        try:
            outcome = deliver_rule(rule, settings=settings, store=store, mailer=mailer, now=now,
                                   digest=digest, dry_run=dry_run)
        except (MediamonError, Exception) as exc:  # noqa: BLE001 - one rule never stops the others
            # e.g. the store failed in alert_mark_sent: the items stay pending (see the docstring)
            log(logger, 40, "alert_rule_error", rule_id=rule.id, error=f"{exc.__class__.__name__}: {exc}")
            outcome = RuleOutcome(rule.id, "error", error=str(exc))
        _count(outcome, counts)
        if on_outcome:
            on_outcome(outcome)


def _result(counts: Counter) -> dict[str, int]:
    d = {k: int(counts.get(k, 0)) for k in COUNT_KEYS}
    d.update({k: int(v) for k, v in sorted(counts.items()) if k not in d})
    return d


def alert_stage(*, settings: Settings, store: AlertStore, rules: Sequence[AlertConfig], now: datetime,
                mailer: "Mailer | None" = None,
                on_outcome: Callable[[RuleOutcome], None] | None = None) -> dict[str, int]:
    """Mail every immediate rule's pending matches (queued by ``queue_matches``, this cycle's and
    any left over), one email per rule.  ``mailer`` defaults to the one the settings describe.

    Never raises for a delivery problem: it is recorded per rule and counted
    (``alert_emails_failed``, ``alert_emails_deferred``, ``alert_errors``).
    """
    counts: Counter = Counter()
    immediate = [cr.rule for cr in compile_rules(rules, counts) if cr.rule.mode == "immediate"]
    if immediate:
        mailer = mailer or _default_mailer(settings)
        _deliver_all(immediate, settings=settings, store=store, mailer=mailer, now=now, digest=False,
                     dry_run=False, counts=counts, on_outcome=on_outcome)
    return _result(counts)


def _default_mailer(settings: Settings) -> "Mailer":
    from ..mail import make_mailer

    return make_mailer(settings)


def send_digest(*, settings: Settings, store: AlertStore, rules: Sequence[AlertConfig], now: datetime,
                dry_run: bool = False, mailer: "Mailer | None" = None,
                on_outcome: Callable[[RuleOutcome], None] | None = None) -> dict[str, int]:
    """Mail every digest rule's pending matches, one email per rule, grouped by topic, newest first.
    ``dry_run`` renders the emails (passed to ``on_outcome``) and changes nothing."""
    counts: Counter = Counter()
    digest_rules = [r for r in rules if r.mode == "digest"]
    if digest_rules and mailer is None and not dry_run:
        mailer = _default_mailer(settings)
    _deliver_all(digest_rules, settings=settings, store=store, mailer=mailer, now=now, digest=True,
                 dry_run=dry_run, counts=counts, on_outcome=on_outcome)
    return _result(counts)
