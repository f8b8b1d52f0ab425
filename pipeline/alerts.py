"""Email keyword alerts: match, queue durably, mail once.

Flow (``alert_stage``, called by the cycle after the new articles are stored)::

    match each rule (query + topic/language filters) against the cycle's articles
      → store.alert_enqueue(pairs)              durable queue keyed by (rule_id, article_id);
                                                 idempotent; pairs already sent are skipped
      → for each *immediate* rule:              one email with ALL its pending pairs
            throttle check (emails in the last per_seconds < max_emails, else stay queued)
            store.alert_record_attempt(…, INTERRUPTED)   "delivery started" marker
            mailer.send(message)                 transient errors retried with backoff inside
            store.alert_mark_sent(…)             sent-log rows + queue removal + email log, one step

*Digest* rules only queue; ``send_digest`` (``mediamon alerts digest``, the Airflow digest DAG)
mails them, grouped by topic, newest first.

Guarantees
----------
* A pair is mailed at most once, except for the window below: the sent-log is the authority,
  ``alert_enqueue`` never re-queues a logged pair and ``alert_pending`` never returns one.
* A pair is never dropped: a transient failure (4xx, connection drop, timeout, outbox not writable)
  leaves it pending with the error recorded; the next cycle (or digest run) sends it again,
  together with whatever matched since.  A permanent failure (5xx) marks the batch ``failed``
  with the server's reply; it is reported in the counters and ``mediamon alerts list`` and is not
  retried until ``mediamon alerts retry RULE`` puts it back.  Throttled items stay pending and
  roll into the next email.  At most ``alert_max_items_per_email`` stories go into one email;
  the email says how many more are queued, and they follow in the next one.

The remaining duplicate window
------------------------------
SMTP cannot be made atomic with our database.  If the process dies (or the store write fails)
*after* the SMTP server accepted the message (reply 250 to the final ``.``) and *before*
``alert_mark_sent`` committed, the pairs are still pending and the next run sends them again:
**at most one duplicate email per (rule, batch) per such crash**; never a lost item.  The window
is the time between the server's 250 and the SQLite commit (milliseconds).  Such a resend is
detected (the batch still carries the "delivery started" marker written before the send),
logged as ``alert_possible_duplicate`` and counted in ``alert_possible_duplicates``.  For the
outbox the same window exists between renaming the ``.eml`` file into place and the commit.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from functools import lru_cache
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from .analysis import stem, token_spans, tokenize
from .config import AlertConfig
from .errors import MediamonError, PermanentMailError, TransientMailError
from .logs import get_logger, log
from .models import Article, utcnow
from .settings import Settings
from .store.base import AlertEntry, SearchRequest, Store

logger = get_logger(__name__)

INTERRUPTED = "interrupted: delivery started, outcome unknown"
SAME_STORY_WINDOW = timedelta(days=1)
# a queued match whose article is not (yet) stored waits this long before it is marked failed
MISSING_ARTICLE_GRACE = timedelta(days=3)
SNIPPET_CHARS = 300
TITLE_CHARS = 500

COUNT_KEYS = ("alert_matches", "alert_queued", "alert_emails_sent", "alert_items_sent", "alert_emails_failed",
              "alert_emails_deferred", "alert_throttled", "alert_possible_duplicates", "alert_errors")


# --- matching -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CompiledRule:
    rule: AlertConfig
    query: Any  # pipeline.query.Query


def compile_rules(rules: Iterable[AlertConfig], counts: Counter | None = None) -> list[CompiledRule]:
    """Parse every rule's query; a rule with a bad query is logged and skipped, the others run."""
    from .query import parse_query

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


def match_articles(articles: Sequence[Article], rules: Sequence[CompiledRule], now: datetime,
                   counts: Counter | None = None) -> list[AlertEntry]:
    entries = []
    for a in articles:
        for cr in rules:
            try:
                terms = rule_matches(cr, a)
            except Exception as exc:  # noqa: BLE001 - one bad item never fails the batch
                log(logger, 40, "alert_match_failed", rule_id=cr.rule.id, article_id=a.id, error=str(exc))
                if counts is not None:
                    counts["alert_errors"] += 1
                continue
            if terms is not None:
                entries.append(AlertEntry(cr.rule.id, a.id, tuple(terms), queued_at=now))
    return entries


# --- stories (same-story grouping) ------------------------------------------------------------------

def normalized_title(title: str | None) -> str:
    return " ".join(tokenize(title))


@dataclass
class Story:
    """One entry of an email: one or more articles that report the same story."""

    articles: list[Article]
    terms: list[str] = field(default_factory=list)

    @property
    def primary(self) -> Article:
        return self.articles[0]

    @property
    def published_at(self) -> datetime:
        return max(a.published_at for a in self.articles)

    @property
    def ids(self) -> list[str]:
        return [a.id for a in self.articles]


def group_stories(articles: Sequence[Article], terms: dict[str, Sequence[str]] | None = None) -> list[Story]:
    """Same canonical URL, or the same normalised title from different feeds within a day → one story.

    Returned newest first; inside a story the earliest article comes first (it is shown as
    the title), and every article's source is listed.
    """
    terms = terms or {}
    arts = sorted(articles, key=lambda a: (a.published_at, a.id))
    parent = list(range(len(arts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    by_url: dict[str, int] = {}
    by_title: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(arts):
        url = (a.canonical_url or a.url or "").strip()
        if url:
            if url in by_url:
                union(by_url[url], i)
            else:
                by_url[url] = i
        nt = normalized_title(a.title)
        if nt:
            for j in by_title[nt]:
                b = arts[j]
                if b.feed_id != a.feed_id and abs(a.published_at - b.published_at) <= SAME_STORY_WINDOW:
                    union(j, i)
            by_title[nt].append(i)
    groups: dict[int, list[Article]] = defaultdict(list)
    for i, a in enumerate(arts):
        groups[find(i)].append(a)
    stories = []
    for members in groups.values():
        t: list[str] = []
        for a in members:
            t.extend(terms.get(a.id, ()))
        stories.append(Story(members, list(dict.fromkeys(t))))
    stories.sort(key=lambda s: (s.published_at, s.primary.id), reverse=True)
    return stories


# --- rendering ---------------------------------------------------------------------------------------

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]+")


def clean_text(text: str | None, limit: int | None = None) -> str:
    """Feed text made safe for one line of an email: control, bidi and line-break characters
    become spaces; whitespace collapsed; cut at ``limit`` characters with an ellipsis."""
    if not text:
        return ""
    text = _CONTROL_RE.sub(" ", unicodedata.normalize("NFC", text))
    text = " ".join(text.split())
    if limit and len(text) > limit:
        text = text[:limit - 1].rstrip() + "…"
    return text


def header_safe(value: str, limit: int = 200) -> str:
    """A header value with no CR/LF or other control characters (defence in depth: nothing from
    a feed ever reaches a header; rule ids and recipients are validated in config.py)."""
    return clean_text(str(value), limit)


def safe_link(url: str | None) -> str | None:
    """The URL when it is an absolute http(s) URL without whitespace/control characters, else None."""
    if not url:
        return None
    url = url.strip()
    if _CONTROL_RE.search(url) or any(c.isspace() for c in url) or len(url) > 2000:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def highlight(text: str, terms: Sequence[str]) -> Markup:
    """Escape ``text`` and wrap the words matching ``terms`` in ``<mark>``.

    Works on the raw text's token spans: every piece is escaped on its own, then the marked
    tokens are wrapped, so no markup from the feed can survive and no entity is split.
    A token is marked when its folded form or its stem equals a term's (``Орешника`` ~ ``Орешник``).
    """
    want_fold: set[str] = set()
    want_stem: set[str] = set()
    for t in terms:
        for tok in tokenize(t):
            want_fold.add(tok)
            want_stem.add(stem(tok))
    if not want_fold:
        return Markup(escape(text))
    out: list[str] = []
    pos = 0
    for start, end, folded in token_spans(text):
        if folded in want_fold or stem(folded) in want_stem:
            out.append(str(escape(text[pos:start])))
            out.append("<mark>" + str(escape(text[start:end])) + "</mark>")
            pos = end
    out.append(str(escape(text[pos:])))
    return Markup("".join(out))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - validated in config; fall back rather than fail a send
        return ZoneInfo("UTC")


def _fmt_times(dt: datetime, tz: ZoneInfo) -> tuple[str, str]:
    utc = dt.astimezone(timezone.utc)
    local = dt.astimezone(tz)
    label = local.strftime("%Z")
    if not label or not label[0].isalpha():  # zones without an abbreviation print "+03"
        label = f"{label} {getattr(tz, 'key', '')}".strip()
    return f"{local:%Y-%m-%d %H:%M} {label}", utc.strftime("%Y-%m-%d %H:%M UTC")


@lru_cache(maxsize=1)
def _jinja_env():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader("pipeline", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), disabled_extensions=("txt",),
                                     default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def story_view(story: Story, tz: ZoneInfo) -> dict[str, Any]:
    """Everything a template shows about one story; feed text is cleaned here and escaped by Jinja."""
    a = story.primary
    title = clean_text(a.title, TITLE_CHARS) or "(no title)"
    # the English title of the first member that has one (another outlet may carry the translation)
    translated = next((x for x in story.articles if x.title_en and x.title_en.strip() != x.title.strip()), None)
    title_en = clean_text(translated.title_en, TITLE_CHARS) if translated else ""
    summary = clean_text(a.summary_en or a.summary, SNIPPET_CHARS)
    local, utc = _fmt_times(a.published_at, tz)
    sources = []
    seen = set()
    for art in story.articles:
        raw = clean_text(art.canonical_url or art.url or "", 2000)
        key = (art.source, raw)
        if key in seen:
            continue
        seen.add(key)
        sources.append({"name": clean_text(art.source, 200) or art.feed_id, "link": safe_link(raw), "url": raw})
    return {
        "title": title, "title_html": highlight(title, story.terms),
        "title_en": title_en, "title_en_html": highlight(title_en, story.terms) if title_en else Markup(""),
        "summary": summary, "summary_html": highlight(summary, story.terms) if summary else Markup(""),
        "terms": [clean_text(t, 100) for t in story.terms],
        "local_time": local, "utc_time": utc, "date_inferred": a.date_inferred,
        "sources": sources, "link": sources[0]["link"] if sources else None,
        "url": sources[0]["url"] if sources else "",
        "topics": list(dict.fromkeys(t for art in story.articles for t in art.topics)),
        "language": a.language or "",
    }


def _sections(rule: AlertConfig, stories: Sequence[Story], by_topic: bool) -> list[dict[str, Any]]:
    tz = _zone(rule.timezone)
    if not by_topic:
        return [{"topic": None, "items": [story_view(s, tz) for s in stories]}]
    groups: dict[str, list[Story]] = defaultdict(list)
    for s in stories:
        topics = list(dict.fromkeys(t for a in s.articles for t in a.topics))
        if rule.topics:
            topics = [t for t in topics if t in rule.topics] or topics
        groups[topics[0] if topics else ""].append(s)
    order = sorted(groups, key=lambda t: (t == "", (rule.topics or ()).index(t) if t in (rule.topics or ()) else 999, t))
    return [{"topic": t or None, "items": [story_view(s, tz) for s in groups[t]]} for t in order]


def _from_address(settings: Settings) -> tuple[str, str]:
    """(header value, bare address) of MEDIAMON_SMTP_FROM, with control characters removed."""
    value = header_safe(settings.smtp_from, 300)
    addr = parseaddr(value)[1]
    if not addr or "@" not in addr:
        raise PermanentMailError(f"MEDIAMON_SMTP_FROM is not an email address: {settings.smtp_from!r}")
    return value, addr


def build_message(rule: AlertConfig, stories: Sequence[Story], *, settings: Settings, now: datetime,
                  more: int = 0, digest: bool = False) -> EmailMessage:
    """The multipart (text + HTML) email for one rule and a batch of stories."""
    n = len(stories)
    from_value, from_addr = _from_address(settings)
    domain = from_addr.rsplit("@", 1)[1] or "mediamon.localhost"
    sections = _sections(rule, stories, by_topic=digest)
    local_now, utc_now = _fmt_times(now, _zone(rule.timezone))
    ctx = {
        "rule": {"id": rule.id, "description": clean_text(rule.description, 500), "query": clean_text(rule.query, 1000),
                 "mode": rule.mode, "timezone": rule.timezone},
        "sections": sections, "count": n, "articles": sum(len(s.articles) for s in stories), "more": more,
        "digest": digest, "generated_local": local_now, "generated_utc": utc_now,
        "cap": settings.alert_max_items_per_email, "from_addr": from_addr,
    }
    env = _jinja_env()
    text = env.get_template("alert.txt").render(**ctx)
    html = env.get_template("alert.html").render(**ctx)

    msg = EmailMessage(policy=policy.SMTP)
    kind = "digest" if digest else "alert"
    subject = f"[mediamon] {rule.id}: {n} new item{'' if n == 1 else 's'}"
    if digest:
        subject += " (digest)"
    try:
        msg["Subject"] = header_safe(subject, 250)
        msg["From"] = from_value
        msg["To"] = ", ".join(header_safe(r, 254) for r in rule.recipients)
        msg["Date"] = format_datetime(now.astimezone(timezone.utc))
        msg["Message-ID"] = make_msgid(domain=domain)  # no idstring: keeps the header on one line
        msg["List-Id"] = f"mediamon alert {rule.id} <{rule.id}.alerts.{domain}>"
        msg["List-Unsubscribe"] = f"<mailto:{from_addr}?subject=unsubscribe%20{rule.id}>"
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Mediamon-Rule"] = rule.id
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    except (ValueError, TypeError) as exc:  # policy.SMTP refuses CR/LF in headers
        raise PermanentMailError(f"cannot build the email for rule {rule.id!r}: {exc}") from exc
    return msg


# --- delivery ----------------------------------------------------------------------------------------

@dataclass
class RuleOutcome:
    rule_id: str
    status: str  # sent | nothing | throttled | deferred | failed | dry_run | error
    stories: int = 0
    articles: int = 0
    more: int = 0
    message: EmailMessage | None = None
    error: str | None = None
    possible_duplicate: bool = False
    location: str | None = None


def _batch(pending: list[AlertEntry], store: Store, settings: Settings, now: datetime,
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


def deliver_rule(rule: AlertConfig, *, settings: Settings, store: Store, mailer, now: datetime,
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
    try:
        message = build_message(rule, stories, settings=settings, now=now, more=more, digest=digest)
    except PermanentMailError as exc:
        if not dry_run:
            store.alert_record_attempt(rule.id, ids, at=now, error=str(exc), failed=True)
        return RuleOutcome(rule.id, "failed", len(stories), n_articles, more, error=str(exc))
    if dry_run:
        return RuleOutcome(rule.id, "dry_run", len(stories), n_articles, more, message=message)

    in_batch = {e.article_id: e for e in pending}
    possible_dup = any(in_batch[i].last_error == INTERRUPTED for i in ids if i in in_batch)
    if possible_dup:
        log(logger, 30, "alert_possible_duplicate", rule_id=rule.id,
            detail="a previous delivery of some of these items was interrupted after it started; "
                   "the server may already have them")
    # "delivery started" marker: if we die after the server accepts and before mark_sent commits,
    # the next run knows this batch may be a duplicate (see the module docstring)
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
    elif outcome.status == "error":
        counts["alert_errors"] += 1
    elif outcome.status == "dry_run":
        counts["alert_emails_would_send"] += 1
        counts["alert_items_would_send"] += outcome.articles
    if outcome.possible_duplicate and outcome.status == "sent":
        counts["alert_possible_duplicates"] += 1


def _deliver_all(rules: Sequence[AlertConfig], *, settings: Settings, store: Store, mailer, now: datetime,
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


def queue_matches(articles: Sequence[Article], *, store: Store, rules: list[AlertConfig],
                  now: datetime | None = None) -> dict[str, int]:
    """Match ``articles`` and write the (rule, article) pairs to the durable queue, nothing else.

    The cycle calls this *before* indexing, so a process that dies between indexing and
    delivery cannot lose a match: the pairs are already queued and the next cycle's
    ``alert_stage`` delivers them.  (Had it died before indexing, the feed state was not
    advanced, the items come back, and enqueuing them again is a no-op.)
    """
    now = now or utcnow()
    counts: Counter = Counter()
    compiled = compile_rules(rules, counts)
    entries = match_articles(articles, compiled, now, counts)
    counts["alert_matches"] = len(entries)
    if entries:
        counts["alert_queued"] = store.alert_enqueue(entries)
    return dict(counts)


def alert_stage(articles: Sequence[Article], *, settings: Settings, store: Store, rules: list[AlertConfig],
                now: datetime | None = None, mailer=None,
                on_outcome: Callable[[RuleOutcome], None] | None = None) -> dict[str, int]:
    """Match the cycle's stored articles, queue the matches, mail the immediate rules.

    Raises only when the queue cannot be written (store unavailable); delivery problems are
    recorded per rule and counted (``alert_emails_failed``, ``alert_emails_deferred``, ``alert_errors``).
    """
    now = now or utcnow()
    counts: Counter = Counter(queue_matches(articles, store=store, rules=rules, now=now))
    immediate = [cr.rule for cr in compile_rules(rules) if cr.rule.mode == "immediate"]
    if immediate:
        from .mail import make_mailer

        mailer = mailer or make_mailer(settings)
        _deliver_all(immediate, settings=settings, store=store, mailer=mailer, now=now, digest=False,
                     dry_run=False, counts=counts, on_outcome=on_outcome)
    return _result(counts)


def send_digest(*, settings: Settings, store: Store, rules: list[AlertConfig], now: datetime | None = None,
                dry_run: bool = False, mailer=None,
                on_outcome: Callable[[RuleOutcome], None] | None = None) -> dict[str, int]:
    """Mail every digest rule's pending matches, one email per rule, grouped by topic, newest first.
    ``dry_run`` renders the emails (passed to ``on_outcome``) and changes nothing."""
    now = now or utcnow()
    counts: Counter = Counter()
    digest_rules = [r for r in rules if r.mode == "digest"]
    if digest_rules and mailer is None and not dry_run:
        from .mail import make_mailer

        mailer = make_mailer(settings)
    _deliver_all(digest_rules, settings=settings, store=store, mailer=mailer, now=now, digest=True,
                 dry_run=dry_run, counts=counts, on_outcome=on_outcome)
    return _result(counts)


# --- dry run over stored articles (mediamon alerts test) -----------------------------------------------

@dataclass
class TestHit:
    article: Article
    terms: list[str]
    already_sent: bool


def test_rule(rule: AlertConfig, store: Store, *, since: datetime | None = None, limit: int = 50,
              scan_limit: int = 20_000) -> tuple[list[TestHit], int]:
    """What the rule would match among stored articles (newest first), nothing sent or queued.

    Evaluates the rule exactly as the alert stage does (Python query evaluator + filters) over
    stored articles, pre-filtered by topics/languages/since in the store.  Returns (hits up to
    ``limit``, total number of matches among the scanned articles)."""
    from .query import parse_query

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


test_rule.__test__ = False  # not a pytest test
TestHit.__test__ = False  # type: ignore[attr-defined]
