"""Alert delivery: the state machine that mails each rule's pending matches once.

See the package docstring (``pipeline.alerts``) for the guarantees and the remaining duplicate
window.  Time and the mailer are passed in; nothing here reads the clock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
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
# claim -> send -> confirm: a pair claimed for a send less than this long ago belongs to that send
# (another cycle leaves it alone); an older claim is a sender that died between claim and confirm,
# and the pair is sent again (flagged as a possible duplicate).  Longer than one send can last:
# smtp_retry_attempts (<= 10) tries of smtp_timeout-bounded steps plus backoff waits capped at 30 s.
CLAIM_TIMEOUT = timedelta(minutes=10)

COUNT_KEYS = ("alert_matches", "alert_queued", "alert_emails_sent", "alert_items_sent", "alert_emails_failed",
              "alert_emails_deferred", "alert_throttled", "alert_possible_duplicates", "alert_errors",
    "alert_items_in_flight", "alert_items_summarised", "alert_recipients_refused")


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
    in_flight: int = 0
    summarised: int = 0
    recipients_refused: int = 0


@dataclass
class Batch:
    stories: list[Story]  # this email's, newest first
    more: int = 0  # stories left pending for the next email (the email cap)
    overflow: dict[str, list[Story]] = field(default_factory=dict)  # source -> stories only counted

    @property
    def overflow_ids(self) -> list[str]:
        return [i for st in self.overflow.values() for s in st for i in s.ids]


def source_key(story: Story) -> str:
    """Whose share a story counts against: its first article's source (else its feed)."""
    a = story.primary
    return (a.source or "").strip() or a.feed_id


def fair_selection(stories: Sequence[Story], cap: int, per_source: int
                   ) -> tuple[list[Story], list[Story], dict[str, list[Story]]]:
    """(this email's stories, stories left pending, stories only counted, by source).

    Each source keeps its newest ``per_source`` stories; its older ones are the overflow (counted
    in the email, never mailed one by one).  The kept ones fill the email round-robin over the
    sources (the source with the newest story first, each source newest first), so a source with
    one story is in the first round whatever another source floods; past ``cap`` the rest stays
    pending for the next email."""
    by_source: dict[str, list[Story]] = {}
    for s in sorted(stories, key=lambda s: (s.published_at, s.primary.id), reverse=True):
        by_source.setdefault(source_key(s), []).append(s)
    overflow = {src: st[per_source:] for src, st in by_source.items() if len(st) > per_source}
    queues = [st[:per_source] for st in by_source.values()]
    chosen: list[Story] = []
    rest: list[Story] = []
    for rnd in range(per_source):
        for q in queues:
            if rnd < len(q):
                (chosen if len(chosen) < cap else rest).append(q[rnd])
    chosen.sort(key=lambda s: (s.published_at, s.primary.id), reverse=True)
    return chosen, rest, overflow


def _batch(pending: list[AlertEntry], store: AlertStore, settings: Settings, now: datetime,
           rule_id: str, dry_run: bool) -> Batch:
    """Pending pairs → this email's stories (``fair_selection``).  A pair whose article is not
    in the store stays pending while it is young (matches are queued *before* indexing: an item
    the store dead-lettered this cycle is fetched again and stored by a later one); after
    ``MISSING_ARTICLE_GRACE`` it is marked failed (the article is gone)."""
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
    chosen, rest, overflow = fair_selection(stories, settings.alert_max_items_per_email,
                                            settings.alert_max_items_per_source)
    return Batch(chosen, len(rest), overflow)


def _claim(stories: list[Story], rule_id: str, store: AlertStore, now: datetime) -> list[Story]:
    """Claim the batch's pairs (claim -> send -> confirm); keep only what this call claimed.  A pair
    another cycle claimed between our read and our claim is left to it, so no two cycles ever send
    one pair at the same time."""
    ids = [i for s in stories for i in s.ids]
    claimed = store.alert_claim(rule_id, ids, at=now, stale_before=now - CLAIM_TIMEOUT, marker=INTERRUPTED)
    if len(claimed) == len(set(ids)):
        return stories
    log(logger, 20, "alert_claim_lost", rule_id=rule_id, items=len(set(ids)) - len(claimed),
        detail="another cycle claimed these first; left to it")
    kept = []
    for s in stories:
        arts = [a for a in s.articles if a.id in claimed]
        if arts:
            kept.append(Story(arts, s.terms))
    return kept


def deliver_rule(rule: AlertConfig, *, settings: Settings, store: AlertStore, mailer: "Mailer | None", now: datetime,
                 digest: bool = False, dry_run: bool = False) -> RuleOutcome:
    """Mail all pending pairs of one rule as one email (respecting throttle and cap)."""
    pending = store.alert_pending(rule.id)
    # pairs another cycle claimed for its send and has not confirmed yet: theirs, not ours
    fresh = now - CLAIM_TIMEOUT
    in_flight = [e for e in pending if e.last_error == INTERRUPTED and e.last_attempt_at is not None
                 and e.last_attempt_at > fresh]
    if in_flight:
        log(logger, 20, "alert_in_flight", rule_id=rule.id, items=len(in_flight),
            detail="claimed by a send that has not confirmed yet; left to it")
        skip = {e.article_id for e in in_flight}
        pending = [e for e in pending if e.article_id not in skip]
    if not pending:
        return RuleOutcome(rule.id, "nothing", in_flight=len(in_flight))
    th = rule.throttle
    if th is not None and not dry_run:
        recent = store.alert_emails_since(rule.id, now - timedelta(seconds=th.per_seconds))
        if recent >= th.max_emails:
            log(logger, 20, "alert_throttled", rule_id=rule.id, pending=len(pending), emails_in_period=recent)
            return RuleOutcome(rule.id, "throttled", articles=len(pending))
    batch = _batch(pending, store, settings, now, rule.id, dry_run)
    stories, more = batch.stories, batch.more
    if stories and not dry_run:
        stories = _claim(stories, rule.id, store, now)
    if not stories:
        return RuleOutcome(rule.id, "nothing", in_flight=len(in_flight))
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
        message = build_message(rule, stories, settings=settings, now=now, more=more, digest=digest,
                                summarised={src: len(st) for src, st in batch.overflow.items()})
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
    # the claim (written by _claim above) is also the "delivery started" marker: if we die after the
    # server accepts and before mark_sent commits, the next run past CLAIM_TIMEOUT knows this batch
    # may be a duplicate (see the package docstring, pipeline.alerts)
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
    if result.refused:  # one bad recipient never fails the others: the rest got it
        log(logger, 30, "alert_recipients_refused", rule_id=rule.id, message_id=result.message_id,
            refused=result.refused)
    summarised = 0
    if batch.overflow:  # counted in this email: never pending again (a bounded backlog)
        summarised = store.alert_mark_summarised(rule.id, batch.overflow_ids, at=now,
                                                 note=f"summarised in {result.message_id}")
        log(logger, 30, "alert_summarised", rule_id=rule.id, items=summarised,
            by_source={src: len(st) for src, st in batch.overflow.items()})
    log(logger, 20, "alert_sent", rule_id=rule.id, stories=len(stories), items=n_articles, more=more,
        message_id=result.message_id, via=mailer.describe(), refused=result.refused or None)
    return RuleOutcome(rule.id, "sent", len(stories), n_articles, more, message,
                       possible_duplicate=possible_dup, location=result.location, summarised=summarised,
                       recipients_refused=len(result.refused))


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
    counts["alert_items_in_flight"] += outcome.in_flight
    counts["alert_items_summarised"] += outcome.summarised
    counts["alert_recipients_refused"] += outcome.recipients_refused
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
