"""The Store protocol: one adapter per backend (SQLite embedded, Elasticsearch).

Every method is idempotent where it writes: indexing the same Article twice
leaves one document; saving the same feed state twice is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Iterable, Literal, Protocol, Sequence, runtime_checkable

from ..models import Article, FeedState

if TYPE_CHECKING:
    from ..aliases import Aliases


@dataclass(frozen=True, slots=True)
class IndexResult:
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)  # id -> reason (dead letters)

    @property
    def stored(self) -> int:
        return len(self.created) + len(self.updated) + len(self.unchanged)


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: str | None = None
    topics: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    feed_ids: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    sort: Literal["newest", "oldest", "relevance"] = "newest"
    limit: int = 20
    offset: int = 0
    # opaque cursor from a previous SearchResult.next_cursor (search_after paging)
    cursor: str | None = None
    # alias groups the query's words expand to (config/aliases.yaml; pipeline.aliases); None: none
    aliases: Aliases | None = None


@dataclass(frozen=True, slots=True)
class SearchResult:
    total: int
    hits: tuple[Article, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Stats:
    total: int
    by_source: dict[str, int]
    by_language: dict[str, int]
    by_topic: dict[str, int]
    by_day: dict[str, int]

    def to_dict(self) -> dict:
        return {"total": self.total, "by_source": self.by_source, "by_language": self.by_language,
                "by_topic": self.by_topic, "by_day": self.by_day}


TranslationKey = tuple[str, str, str]  # (model, source language, sha1 of the source text)


@runtime_checkable
class Store(Protocol):
    # articles
    def known_ids(self, ids: Iterable[str]) -> set[str]: ...
    def index(self, articles: Sequence[Article]) -> IndexResult: ...
    def get_articles(self, ids: Iterable[str]) -> list[Article]: ...
    def articles_pending_translation(self, limit: int = 1000) -> list[Article]: ...
    def search(self, request: SearchRequest) -> SearchResult: ...
    def stats(self, request: SearchRequest | None = None) -> Stats: ...
    def count(self) -> int: ...
    # feed state
    def get_feed_states(self) -> dict[str, FeedState]: ...
    def save_feed_states(self, states: Iterable[FeedState]) -> None: ...
    # translation cache
    def get_translations(self, keys: Iterable[TranslationKey]) -> dict[TranslationKey, str]: ...
    def put_translations(self, items: Iterable[tuple[TranslationKey, str]]) -> None: ...
    # lifecycle
    def close(self) -> None: ...
    # alerts: durable queue + sent-log, keyed by (rule_id, article_id); see AlertEntry
    def alert_enqueue(self, entries: Iterable["AlertEntry"]) -> int: ...
    def alert_pending(self, rule_id: str) -> list["AlertEntry"]: ...
    def alert_record_attempt(self, rule_id: str, article_ids: Iterable[str], *, at: datetime,
                             error: str | None, failed: bool = False, count: bool = True) -> None: ...
    def alert_mark_sent(self, rule_id: str, article_ids: Iterable[str], *, message_id: str,
                        sent_at: datetime) -> int: ...
    def alert_emails_since(self, rule_id: str, since: datetime) -> int: ...
    def alert_sent_ids(self, rule_id: str, article_ids: Iterable[str]) -> set[str]: ...
    def alert_summary(self) -> dict[str, dict[str, int]]: ...
    def alert_retry_failed(self, rule_id: str) -> int: ...


# --- alerts -----------------------------------------------------------------------------------
#
# Contract of the alert methods (implemented by every store; pipeline/alerts.py is the only caller):
#
# * The *queue* holds matched (rule_id, article_id) pairs that are not delivered yet, with status
#   ``pending`` (will be mailed) or ``failed`` (permanent SMTP error; kept for inspection, not
#   retried until ``alert_retry_failed``).
# * The *sent-log* holds delivered pairs; it is the authority.  A pair in the sent-log is never
#   queued again (``alert_enqueue`` skips it) and never reported as pending, even if a crash left
#   its queue entry behind.  Elasticsearch writes it with ``op_type=create`` (409 = already sent).
# * ``alert_mark_sent`` writes the sent-log rows, removes the queue rows and appends one row to the
#   per-rule email log (used by the throttle) in one step (one SQLite transaction; for
#   Elasticsearch: sent-log first, then the rest, so a crash in between is harmless).
# * Every write is idempotent: enqueuing a pair twice, or marking it sent twice, changes nothing.


@dataclass(frozen=True, slots=True)
class AlertEntry:
    """One (rule, article) match waiting for delivery."""

    rule_id: str
    article_id: str
    terms: tuple[str, ...] = ()  # matched terms as found in the text (for highlighting)
    queued_at: datetime | None = None
    status: Literal["pending", "failed"] = "pending"
    attempts: int = 0
    last_error: str | None = None
    last_attempt_at: datetime | None = None
