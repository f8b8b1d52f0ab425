"""Frozen records passed between stages.

Stages never mutate an Article; they return new ones with
``dataclasses.replace``.  ``Article.to_dict`` / ``Article.from_dict`` give the
JSON shape that is the contract for the index, the CLI's ``--json`` output and
the Airflow staging files (docs/DESIGN.md, "The Article").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Literal

TranslationStatus = Literal["ok", "skipped", "unavailable", "failed", "pending"]


def utcnow() -> datetime:
    """The real clock (the default :data:`Clock`); stages never call it, they are given the time."""
    return datetime.now(timezone.utc)


Clock = Callable[[], datetime]  # returns an aware UTC datetime; injected into run_cycle, alerts, tasks


def fixed_clock(at: datetime) -> Clock:
    """A clock that always says ``at`` (simulated time: tests, the soak run, an Airflow run's data interval)."""
    return lambda: at


def to_iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def from_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


@dataclass(frozen=True, slots=True)
class Translation:
    """Provenance of ``title_en``/``summary_en``/``content_en``."""

    status: TranslationStatus = "pending"
    model: str | None = None
    truncated: bool = False
    error: str | None = None
    suspicious: bool = False

    def to_dict(self) -> dict[str, Any]:
        # explicit (dataclasses.asdict deep-copies every field: measurable when indexing 10^5 items)
        return {"status": self.status, "model": self.model, "truncated": self.truncated, "error": self.error,
                "suspicious": self.suspicious}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Translation":
        if not d:
            return cls()
        return cls(**{k: d[k] for k in ("status", "model", "truncated", "error", "suspicious") if k in d})


@dataclass(frozen=True, slots=True)
class TopicMatch:
    topic: str
    score: float
    method: Literal["rule", "model"] = "rule"
    terms: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "score": self.score, "method": self.method, "terms": list(self.terms)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TopicMatch":
        return cls(topic=d["topic"], score=float(d.get("score", 1.0)), method=d.get("method", "rule"),
                   terms=tuple(d.get("terms") or ()))


@dataclass(frozen=True, slots=True)
class Article:
    id: str
    feed_id: str
    url: str | None
    canonical_url: str | None
    guid: str | None
    source: str
    feed_language: str | None
    language: str | None
    title: str
    summary: str
    published_at: datetime
    fetched_at: datetime
    content_hash: str
    content: str | None = None
    title_en: str | None = None
    summary_en: str | None = None
    content_en: str | None = None
    translation: Translation = field(default_factory=Translation)
    topics: tuple[str, ...] = ()
    topic_matches: tuple[TopicMatch, ...] = ()
    date_inferred: bool = False
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # the declared language as written ("en-US"; ``feed_language`` keeps its primary subtag "en")
    language_tag: str | None = None
    # invalid byte sequences in the feed body replaced with U+FFFD that landed in this item's text
    # (the body was "almost UTF-8", see parse.decode_bytes); 0: decoded cleanly
    encoding_errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "canonical_url": self.canonical_url,
            "guid": self.guid,
            "feed_id": self.feed_id,
            "source": self.source,
            "feed_language": self.feed_language,
            "language": self.language,
            "title": self.title,
            "summary": self.summary,
            "content": self.content,
            "title_en": self.title_en,
            "summary_en": self.summary_en,
            "content_en": self.content_en,
            "translation": self.translation.to_dict(),
            "topics": list(self.topics),
            "topic_matches": [m.to_dict() for m in self.topic_matches],
            "published_at": to_iso(self.published_at),
            "date_inferred": self.date_inferred,
            "fetched_at": to_iso(self.fetched_at),
            "content_hash": self.content_hash,
            "authors": list(self.authors),
            "categories": list(self.categories),
            "language_tag": self.language_tag,
            "encoding_errors": self.encoding_errors,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, missing_dates: datetime | None = None) -> "Article":
        """The Article of a ``to_dict`` dict.  A dict without ``published_at`` / ``fetched_at``
        (a hand-written item: ``mediamon translate``, ``topics explain``) raises ValueError unless
        the caller says which time to use with ``missing_dates``; a ``published_at`` filled in that
        way is marked ``date_inferred``.  Nothing reads the clock here."""
        published_at = from_iso(d.get("published_at"))
        fetched_at = from_iso(d.get("fetched_at"))
        inferred = bool(d.get("date_inferred", False)) or published_at is None
        if published_at is None or fetched_at is None:
            if missing_dates is None:
                missing = [k for k, v in (("published_at", published_at), ("fetched_at", fetched_at)) if v is None]
                raise ValueError(f"article {d.get('id')!r}: {' and '.join(missing)} missing "
                                 "(pass missing_dates= to fill them in)")
            published_at = published_at or missing_dates
            fetched_at = fetched_at or missing_dates
        return cls(
            id=d["id"],
            feed_id=d.get("feed_id") or "",
            url=d.get("url"),
            canonical_url=d.get("canonical_url"),
            guid=d.get("guid"),
            source=d.get("source") or "",
            feed_language=d.get("feed_language"),
            language=d.get("language"),
            title=d.get("title") or "",
            summary=d.get("summary") or "",
            content=d.get("content"),
            title_en=d.get("title_en"),
            summary_en=d.get("summary_en"),
            content_en=d.get("content_en"),
            translation=Translation.from_dict(d.get("translation")),
            topics=tuple(d.get("topics") or ()),
            topic_matches=tuple(TopicMatch.from_dict(m) for m in d.get("topic_matches") or ()),
            published_at=published_at,
            date_inferred=inferred,
            fetched_at=fetched_at,
            content_hash=d.get("content_hash") or "",
            authors=tuple(d.get("authors") or ()),
            categories=tuple(d.get("categories") or ()),
            language_tag=d.get("language_tag"),
            encoding_errors=int(d.get("encoding_errors") or 0),
        )

    def replace(self, **changes: Any) -> "Article":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class FeedState:
    """Per-feed politeness and health state, advanced only after indexing succeeded."""

    feed_id: str
    url: str  # current URL (a 301 updates it)
    configured_url: str | None = None  # the URL in feeds.yaml this state belongs to
    etag: str | None = None
    last_modified: str | None = None
    last_fetch_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    last_error: str | None = None
    last_status: int | None = None
    consecutive_failures: int = 0
    next_fetch_at: datetime | None = None
    disabled: bool = False
    disabled_reason: str | None = None
    items_total: int = 0
    last_new_items: int = 0

    def to_dict(self) -> dict[str, Any]:
        # every field is a scalar: no dataclasses.asdict (it deep-copies; 500 feed states per
        # cycle made it a visible part of a steady-state cycle)
        d = {name: getattr(self, name) for name in _FEED_STATE_FIELDS}
        for k in _FEED_STATE_DATES:
            d[k] = to_iso(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeedState":
        kw = {k: v for k, v in d.items() if k in _FEED_STATE_FIELDS}
        for k in _FEED_STATE_DATES:
            kw[k] = from_iso(kw.get(k))
        return cls(**kw)

    def replace(self, **changes: Any) -> "FeedState":
        return dataclasses.replace(self, **changes)


_FEED_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(FeedState))
_FEED_STATE_DATES = ("last_fetch_at", "last_success_at", "last_error_at", "next_fetch_at")


@dataclass(frozen=True, slots=True)
class AlertEntry:
    """One (rule, article) match waiting for delivery (a row of the store's alert queue)."""

    rule_id: str
    article_id: str
    terms: tuple[str, ...] = ()  # matched terms as found in the text (for highlighting)
    queued_at: datetime | None = None
    status: Literal["pending", "failed"] = "pending"
    attempts: int = 0
    last_error: str | None = None
    last_attempt_at: datetime | None = None
