"""Page data for ``mediamon serve``: the same library calls as the CLI (store.search / stats /
get_articles, parse_query with the configuration's aliases, topics and alert rules from config),
turned into plain dicts for the templates.  No HTTP here (pipeline/web/app.py does that), so the
bench and the tests can render a page without a server.

Feed text is hostile: it reaches templates only as plain strings (autoescaped) or as
:mod:`pipeline.highlight` Markup (escaped piece by piece), never as HTML.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from ..alerts.render import safe_link
from ..aliases import load_aliases
from ..analysis import has_cyrillic
from ..config import load_alerts, load_feeds, load_topics
from ..explain import article_rules, deciding_clauses  # noqa: F401 - deciding_clauses: older imports
from ..highlight import clean, highlight, matched_terms, snippet
from ..hits import to_csv as _to_csv
from ..hits import to_jsonl  # noqa: F401 - the export route imports it from here
from ..models import Article, to_iso
from ..query import Query, QuerySyntaxError, parse_query
from ..settings import Settings
from ..store.base import SearchRequest, Stats

PAGE_SIZE = 20
MAX_OFFSET = 10_000      # deepest page (offset paging)
EXPORT_MAX = 10_000      # rows in one export
SORTS = ("newest", "oldest", "relevance")


def text_lang(text: str | None, language: str | None) -> str:
    """The ``lang`` attribute for a piece of feed text: its detected language, else a guess."""
    if language:
        return language
    return "ru" if has_cyrillic(text or "") else "en"


# -- the search form -------------------------------------------------------------------------------

@dataclass
class Form:
    q: str = ""
    language: str = ""
    topic: str = ""
    source: str = ""
    feed: str = ""
    since: str = ""   # YYYY-MM-DD, inclusive
    until: str = ""   # YYYY-MM-DD, inclusive
    sort: str = "newest"
    page: int = 1
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_params(cls, params) -> "Form":
        get = lambda k: (params.get(k) or "").strip()[:2000]  # noqa: E731
        f = cls(q=(params.get("q") or "")[:2000], language=get("language"), topic=get("topic"),
                source=get("source"), feed=get("feed"), since=get("since"), until=get("until"))
        sort = get("sort")
        f.sort = sort if sort in SORTS else "newest"  # as Kibana Discover: by time unless asked
        try:
            f.page = max(1, min(int(get("page") or 1), MAX_OFFSET // PAGE_SIZE + 1))
        except ValueError:
            f.page = 1
        return f

    def day(self, name: str) -> datetime | None:
        value = getattr(self, name)
        if not value:
            return None
        try:
            d = date.fromisoformat(value)
        except ValueError:
            self.errors.append(f"{name}: expected a date such as 2026-11-20, got {value!r}")
            return None
        dt = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
        return dt + timedelta(days=1) if name == "until" else dt

    def request(self, aliases, *, limit: int = PAGE_SIZE, offset: int | None = None) -> SearchRequest:
        return SearchRequest(
            query=self.q if self.q.strip() else None,
            languages=(self.language,) if self.language else (),
            topics=(self.topic,) if self.topic else (),
            sources=(self.source,) if self.source else (),
            feed_ids=(self.feed,) if self.feed else (),
            since=self.day("since"), until=self.day("until"),
            sort=self.sort if self.q.strip() else ("oldest" if self.sort == "oldest" else "newest"),  # type: ignore[arg-type]
            limit=limit, offset=(self.page - 1) * PAGE_SIZE if offset is None else offset,
            aliases=aliases)

    def params(self, **changes) -> str:
        """The query string of this form with ``changes`` (empty values left out)."""
        d = {"q": self.q, "language": self.language, "topic": self.topic, "source": self.source,
             "feed": self.feed, "since": self.since, "until": self.until, "sort": self.sort,
             "page": self.page}
        d.update(changes)
        if d.get("page") == 1:
            d.pop("page")
        return urlencode({k: v for k, v in d.items() if v not in ("", None)})


# -- the chart -------------------------------------------------------------------------------------

CHART_W, CHART_H, CHART_PAD = 720, 120, 18


def chart(by_day: dict[str, int]) -> dict[str, Any] | None:
    """Bars for a count-over-time SVG: one per day (spans up to 92 days), week (up to 2 years) or
    month; the gaps are filled with zeros.  Coordinates are computed here; the template only
    writes them out."""
    days = sorted((date.fromisoformat(k), n) for k, n in by_day.items() if len(k) == 10 and k[4] == "-")
    if not days:
        return None
    first, last = days[0][0], days[-1][0]
    span = (last - first).days
    if span <= 92:
        unit, key = "day", (lambda d: d)
    elif span <= 730:
        unit, key = "week", (lambda d: d - timedelta(days=d.weekday()))
    else:
        unit, key = "month", (lambda d: d.replace(day=1))
    buckets: dict[date, int] = {}
    d = key(first)
    while d <= last:
        buckets[d] = 0
        if unit == "day":
            d += timedelta(days=1)
        elif unit == "week":
            d += timedelta(days=7)
        else:
            d = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
    for day_, n in days:
        buckets[key(day_)] = buckets.get(key(day_), 0) + n
    peak = max(buckets.values()) or 1
    n = len(buckets)
    slot = (CHART_W - 2 * CHART_PAD) / n
    bars = []
    for i, (start, count) in enumerate(buckets.items()):
        h = (CHART_H - 2 * CHART_PAD) * count / peak
        bars.append({"x": round(CHART_PAD + i * slot, 2), "w": round(max(slot - 1, 0.6), 2),
                     "y": round(CHART_H - CHART_PAD - h, 2), "h": round(h, 2), "count": count,
                     "label": start.isoformat(), "since": start.isoformat(),
                     "until": (start if unit == "day" else (start + timedelta(days=6) if unit == "week"
                               else (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1))).isoformat()})
    return {"w": CHART_W, "h": CHART_H, "pad": CHART_PAD, "bars": bars, "unit": unit, "peak": peak,
            "first": first.isoformat(), "last": last.isoformat(), "total": sum(buckets.values())}


# -- rows ------------------------------------------------------------------------------------------

def hit_view(a: Article, query: Query | None) -> dict[str, Any]:
    terms = matched_terms(query, a)
    en_differs = bool(a.title_en) and a.title_en != a.title
    return {
        "id": a.id, "source": a.source, "feed_id": a.feed_id, "language": a.language or "",
        "lang": text_lang(a.title, a.language),
        "published": to_iso(a.published_at), "date_inferred": a.date_inferred,
        "title": highlight(a.title, terms),
        "title_en": highlight(a.title_en, terms) if en_differs else None,
        "snippet": snippet(a.summary or a.content, terms),
        "snippet_en": snippet(a.summary_en or a.content_en, terms) if en_differs and (a.summary_en or a.content_en) else None,
        "topics": list(a.topics), "terms": terms,
    }


def export_row(a: Article) -> dict[str, Any]:
    return {"id": a.id, "published_at": to_iso(a.published_at), "date_inferred": a.date_inferred,
            "source": a.source, "feed_id": a.feed_id, "language": a.language, "title": a.title,
            "title_en": a.title_en, "url": a.url, "topics": list(a.topics)}


EXPORT_COLUMNS = ("id", "published_at", "date_inferred", "source", "feed_id", "language", "title", "title_en",
                  "url", "topics")


def to_csv(rows: list[dict[str, Any]]) -> str:
    return _to_csv(rows, EXPORT_COLUMNS)


# -- explanations (article page): pipeline/explain.py (shared with `mediamon show`)


# -- the app's state: store, configuration -------------------------------------------------------

class Views:
    """Everything a page needs, over one open store and one configuration directory."""

    def __init__(self, settings: Settings, store):
        self.settings = settings
        self.store = store
        self._config_at = 0.0
        self._facets: tuple[float, Stats] | None = None
        self._stats_cache: dict[tuple, tuple[float, dict[str, int]]] = {}
        self._load_config()
        self.facets()

    def _load_config(self) -> None:
        cfg = self.settings.config_dir
        self.aliases = load_aliases(cfg)
        self.topics = load_topics(cfg)
        self.alerts = load_alerts(cfg)
        try:
            self.feeds = load_feeds(cfg)
        except Exception:  # noqa: BLE001 - no feeds.yaml: the feed filter lists what is stored
            self.feeds = []
        self.topic_names = {t.id: t.name for t in self.topics}
        self._config_at = time.monotonic()

    def refresh(self) -> None:
        """Re-read the configuration every 30 s (an analyst edits topics.yaml while the page is open)."""
        if time.monotonic() - self._config_at > 30:
            self._load_config()

    def facets(self) -> Stats:
        """Counts over the whole store for the filter lists and topic counts (computed at start-up,
        then again when 10 minutes old)."""
        now = time.monotonic()
        if self._facets is None or now - self._facets[0] > 600:
            self._facets = (now, self.store.stats(SearchRequest()))
        return self._facets[1]

    COUNTS_TTL = 30.0  # seconds a result's counts per day are reused (paging and sorting do not change them)

    def by_day(self, req: SearchRequest) -> dict[str, int]:
        """Hits per day for the chart, cached per query and filters (not page or sort) for
        COUNTS_TTL seconds; ``count_by_day`` where the store has it (SQLite: one query), else
        ``stats().by_day``."""
        key = (req.query, req.languages, req.topics, req.sources, req.feed_ids, req.since, req.until)
        now = time.monotonic()
        hit = self._stats_cache.get(key)
        if hit and now - hit[0] <= self.COUNTS_TTL:
            return hit[1]
        plain = replace(req, limit=0, offset=0, sort="newest")
        fast = getattr(self.store, "count_by_day", None)
        days = fast(plain) if fast else self.store.stats(plain).by_day
        if len(self._stats_cache) >= 256:
            self._stats_cache.clear()
        self._stats_cache[key] = (now, days)
        return days

    # -- search --------------------------------------------------------------------------------------
    def search(self, form: Form) -> dict[str, Any]:
        self.refresh()
        ctx: dict[str, Any] = {"form": form, "error": None, "hits": [], "total": 0, "chart": None}
        query: Query | None = None
        if form.q.strip():
            try:
                query = parse_query(form.q, self.aliases)
            except QuerySyntaxError as exc:
                pos = max(0, min(exc.position, len(form.q)))
                ctx["error"] = {"message": exc.message, "hint": exc.hint, "position": exc.position,
                                "before": form.q[:pos], "at": form.q[pos:pos + 1] or " ", "after": form.q[pos + 1:]}
        req = form.request(self.aliases)
        if ctx["error"] is None and not form.errors:
            result = self.store.search(req)
            c = chart(self.by_day(req))
            if c:  # each bar links to the same search over its period
                base = "/?" + replace(form, since="", until="", page=1).params()
                for b in c["bars"]:
                    b["href"] = f"{base}&since={b['since']}&until={b['until']}"
            ctx.update(total=result.total, hits=[hit_view(a, query) for a in result.hits], chart=c)
        ctx["pages"] = max(1, math.ceil(min(ctx["total"], MAX_OFFSET + PAGE_SIZE) / PAGE_SIZE))
        ctx["first_row"] = (form.page - 1) * PAGE_SIZE + 1
        ctx.update(self._filter_options(form))
        return ctx

    def _filter_options(self, form: Form) -> dict[str, Any]:
        st = self.facets()
        sources = sorted(set(st.by_source) | ({form.source} if form.source else set()), key=str.casefold)
        languages = sorted(set(st.by_language) - {"unknown"} | ({form.language} if form.language else set()))
        feeds = sorted({f.id for f in self.feeds} | ({form.feed} if form.feed else set()))
        topics = [(t.id, t.name) for t in self.topics]
        if form.topic and form.topic not in self.topic_names:
            topics.append((form.topic, form.topic))
        return {"opt_sources": sources, "opt_languages": languages, "opt_feeds": feeds, "opt_topics": topics,
                "topic_names": self.topic_names}

    def export(self, form: Form) -> list[dict[str, Any]]:
        """Every row of the current result (up to EXPORT_MAX) in the page's order."""
        if form.q.strip():
            parse_query(form.q, self.aliases)  # QuerySyntaxError for the caller
        req = form.request(self.aliases, limit=EXPORT_MAX, offset=0)
        return [export_row(a) for a in self.store.search(req).hits]

    # -- article ---------------------------------------------------------------------------------------
    def article(self, article_id: str, q: str = "") -> dict[str, Any] | None:
        self.refresh()
        found = self.store.get_articles([article_id])
        if not found:
            return None
        a = found[0]
        query = None
        if q.strip():
            try:
                query = parse_query(q, self.aliases)
            except QuerySyntaxError:
                query = None
        search_terms = matched_terms(query, a)
        rules = article_rules(a, self.topics, self.alerts, self.aliases,
                              sent=lambda rule_id, aid: bool(self.store.alert_sent_ids(rule_id, [aid])))
        terms = search_terms or [t for r in rules if r["matched_now"] for t in r["terms"]]
        pairs = []
        for label, orig, en in (("title", a.title, a.title_en), ("summary", a.summary, a.summary_en),
                                ("content", a.content, a.content_en)):
            if orig or en:
                pairs.append({"label": label, "orig": highlight(orig, terms) if orig else None,
                              "en": highlight(en, terms) if en else None})
        return {"a": a, "title": clean(a.title), "lang": text_lang(a.title, a.language), "pairs": pairs,
                "link": safe_link(a.url), "published": to_iso(a.published_at), "fetched": to_iso(a.fetched_at),
                "tr": a.translation, "rules": rules, "terms": terms, "q": q, "search_terms": search_terms,
                "topic_names": self.topic_names, "authors": [clean(x) for x in a.authors],
                "categories": [clean(x) for x in a.categories]}

    # -- topics and alerts -----------------------------------------------------------------------------
    def topics_page(self) -> dict[str, Any]:
        self.refresh()
        counts = self.facets().by_topic
        return {"topics": [{"id": t.id, "name": t.name, "description": t.description, "query": t.query,
                            "count": counts.get(t.id, 0)} for t in self.topics]}

    def topic(self, topic_id: str) -> dict[str, Any] | None:
        self.refresh()
        t = next((x for x in self.topics if x.id == topic_id), None)
        if t is None:
            return None
        req = SearchRequest(topics=(t.id,), limit=PAGE_SIZE)
        query = parse_query(t.query, self.aliases)
        res = self.store.search(req)
        return {"t": t, "total": res.total, "chart": chart(self.by_day(req)),
                "hits": [hit_view(a, query) for a in res.hits], "topic_names": self.topic_names}

    def alerts_page(self) -> dict[str, Any]:
        self.refresh()
        summary = self.store.alert_summary()
        recent = getattr(self.store, "alert_recent_emails", None)  # SQLite store only
        rules = []
        for r in self.alerts:
            pending = self.store.alert_pending(r.id)
            arts = {a.id: a for a in self.store.get_articles([p.article_id for p in pending[:PAGE_SIZE]])}
            rules.append({
                "r": r, "counts": summary.get(r.id, {}),
                "emails": recent(r.id, 10) if recent else None,
                "pending_total": len(pending),
                "pending": [{"entry": p, "article": arts.get(p.article_id),
                             "title": highlight(arts[p.article_id].title, p.terms) if p.article_id in arts else None}
                            for p in pending[:PAGE_SIZE]],
            })
        return {"rules": rules}


def with_sort(form: Form, sort: str) -> Form:
    return replace(form, sort=sort, page=1)
