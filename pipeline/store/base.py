"""The store ports: one protocol per role, ``Store`` their union; one adapter per backend.

    ArticleStore      articles: upsert, lookups, search, counts     (deduplicate, index, search)
    FeedStateStore    each feed's cursor                             (plan, commit)
    TranslationCache  translations by model + text hash              (translate)
    AlertLog          the alert queue and sent-log                   (queue alerts, deliver)
    Store             all four + close / ``with``                    (SQLite embedded, Elasticsearch)

Stages take only the role they use, so a test can hand one a small fake of that role and a
reader sees at a glance what a stage touches.  Every method is idempotent where it writes:
indexing the same Article twice leaves one document; saving the same feed state twice is a no-op.
``AlertEntry`` lives in ``pipeline.models`` (re-exported here for older imports).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Literal, Protocol, Self, Sequence, runtime_checkable

from ..logs import get_logger, log
from ..models import AlertEntry, Article, FeedState

if TYPE_CHECKING:
    from ..aliases import Aliases


_corrupt_logger = get_logger("store")


class CorruptRows:
    """Reads stored documents back, one at a time: a row that is not valid JSON, not an object, or
    not a whole Article / FeedState (``{}``, a missing id or date, a field of the wrong type) is one
    bad row: logged as ``store_corrupt_row`` with its table, id and reason, counted in ``count``,
    and skipped by the caller, never an exception that fails the command (issue 16, item 6)."""

    def __init__(self, store: str):
        self.store = store
        self.count = 0

    def _bad(self, table: str, row_id: object, exc: Exception) -> None:
        self.count += 1
        log(_corrupt_logger, logging.WARNING, "store_corrupt_row", store=self.store, table=table,
            row_id=str(row_id), error=f"{type(exc).__name__}: {exc}"[:300])

    @staticmethod
    def _object(raw: "str | bytes | dict[str, Any] | None") -> "dict[str, Any]":
        doc = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
        if not isinstance(doc, dict):
            raise ValueError(f"not a JSON object: {type(doc).__name__}")
        return doc

    def article(self, raw: "str | bytes | dict[str, Any] | None", row_id: object) -> Article | None:
        try:
            return Article.from_dict(self._object(raw))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
            self._bad("articles", row_id, exc)
            return None

    def feed_state(self, raw: "str | bytes | dict[str, Any] | None", feed_id: object) -> FeedState | None:
        try:
            doc = self._object(raw)
            state = FeedState.from_dict(doc)
            if state.feed_id != feed_id or not isinstance(state.url, str):
                raise ValueError(f"feed_id {state.feed_id!r} / url {state.url!r} do not belong to this row")
            return state
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._bad("feed_state", feed_id, exc)
            return None


@dataclass(frozen=True, slots=True)
class IndexResult:
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)  # id -> reason (dead letters)

    @property
    def stored(self) -> int:
        return len(self.created) + len(self.updated) + len(self.unchanged)

    @property
    def stored_ids(self) -> set[str]:
        """Ids that are in the store now (created, updated or already there unchanged)."""
        return set(self.created) | set(self.updated) | set(self.unchanged)


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """What deduplication needs of a stored article: its content hash (title + summary + content),
    the feed its copy is credited to and its guid (issue 16: an item whose hash changed is an update)."""

    content_hash: str
    feed_id: str
    guid: str | None = None  # two stories under one link with the same text differ by guid


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
    # False: leave out items whose feed gave no date (``date_inferred``); the CLI sets it for a
    # --since/--until window without --include-undated.  Either way, in newest/oldest order the
    # undated items come after the dated ones.
    include_undated: bool = True


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

# Errors, for every method of every role below: ``StoreUnavailable`` (pipeline.errors) when the
# backend cannot be reached or a write failed for a reason that may pass (locked or full SQLite
# file, Elasticsearch down, 5xx, 429 after retries): transient, the cycle or the Airflow task is
# retried.  ``StoreError`` when the backend refuses for good (a file that is not a mediamon store,
# a newer schema, indices missing, a mapping conflict): permanent, a person must act.  Nothing
# else is raised for a backend problem.  A method that raises has changed nothing, or only
# what an idempotent retry writes again.


@runtime_checkable
class ArticleStore(Protocol):
    """The articles: idempotent upsert by id, lookups, search, counts."""

    def known_ids(self, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` already stored.  Raises StoreUnavailable / StoreError."""
        ...

    def stored_versions(self, ids: Iterable[str]) -> dict[str, StoredVersion]:
        """Content hash and feed of the stored articles among ``ids`` (missing ids are left out).
        Raises StoreUnavailable / StoreError."""
        ...

    def index(self, articles: Sequence[Article]) -> IndexResult:
        """Upsert by id.  One bad article never fails the batch: it is in ``failed`` (a dead
        letter) with the reason.  Raises StoreUnavailable when the backend failed as a whole (for
        Elasticsearch after the whole batch was sent: what was stored stays stored), StoreError
        when it refuses every write."""
        ...

    def get_articles(self, ids: Iterable[str]) -> list[Article]:
        """The stored articles among ``ids`` (missing ids are left out).  Raises StoreUnavailable / StoreError."""
        ...

    def articles_pending_translation(self, limit: int = 1000) -> list[Article]:
        """Stored articles whose translation could not run (status ``unavailable``), oldest first.
        Raises StoreUnavailable / StoreError."""
        ...

    def search(self, request: SearchRequest) -> SearchResult:
        """One page of hits.  Raises QuerySyntaxError for a bad query, ValueError for a bad
        cursor, StoreUnavailable / StoreError for the backend."""
        ...

    def stats(self, request: SearchRequest | None = None) -> Stats:
        """Counts by source, language, topic and day (of the request's hits, else of all).
        Raises as :meth:`search`."""
        ...

    def count(self) -> int:
        """Number of stored articles.  Raises StoreUnavailable / StoreError."""
        ...


@runtime_checkable
class FeedStateStore(Protocol):
    """Each feed's cursor: validators, URL after a 301, backoff, disabled (see FeedState)."""

    def get_feed_states(self) -> dict[str, FeedState]:
        """Every stored state by feed id.  Raises StoreUnavailable / StoreError."""
        ...

    def save_feed_states(self, states: Iterable[FeedState]) -> None:
        """Replace the states of these feeds (saving the same state twice is a no-op).
        Raises StoreUnavailable / StoreError; then no cursor advanced (SQLite: one transaction;
        Elasticsearch: each state is one document, a retry writes them again)."""
        ...


@runtime_checkable
class TranslationCache(Protocol):
    """Translations by (model + settings, language, text hash): a text is never translated twice."""

    def get_translations(self, keys: Iterable[TranslationKey]) -> dict[TranslationKey, str]:
        """The cached translations among ``keys``.  Raises StoreUnavailable / StoreError."""
        ...

    def put_translations(self, items: Iterable[tuple[TranslationKey, str]]) -> None:
        """Cache these translations (an existing key is overwritten).  Raises StoreUnavailable /
        StoreError; the translation stage logs it and goes on without the cache."""
        ...


@runtime_checkable
class AlertLog(Protocol):
    """The durable alert queue and the sent-log, keyed by (rule_id, article_id); the contract is
    spelled out below the protocols.  Every method raises StoreUnavailable / StoreError."""

    def alert_enqueue(self, entries: Iterable["AlertEntry"]) -> int:
        """Queue new pairs as pending; pairs already queued or sent are skipped.  Returns how many were new."""
        ...

    def alert_pending(self, rule_id: str) -> list["AlertEntry"]:
        """The rule's pending pairs (not ``failed``, not in the sent-log), oldest queued first."""
        ...

    def alert_record_attempt(self, rule_id: str, article_ids: Iterable[str], *, at: datetime,
                             error: str | None, failed: bool = False, count: bool = True) -> None:
        """Note a delivery attempt (``failed``: permanent, the pairs stop being pending)."""
        ...

    def alert_claim(self, rule_id: str, article_ids: Iterable[str], *, at: datetime, stale_before: datetime,
                    marker: str) -> set[str]:
        """Claim pairs for one send, atomically per pair: a pair is claimed (its ``last_error``
        set to ``marker``, ``last_attempt_at`` to ``at``, one attempt counted) only when it is
        pending, not in the sent-log, and not claimed already after ``stale_before``.  Returns the
        pairs this call claimed; of two concurrent claimers exactly one gets each pair."""
        ...

    def alert_mark_sent(self, rule_id: str, article_ids: Iterable[str], *, message_id: str,
                        sent_at: datetime) -> int:
        """Sent-log rows + queue removal + one email-log row, in one step.  Returns pairs newly logged."""
        ...

    def alert_mark_summarised(self, rule_id: str, article_ids: Iterable[str], *, at: datetime, note: str) -> int:
        """Pending pairs an email only counted (a source over its per-email share): status
        ``summarised``, never pending again, not in the sent-log.  Returns how many."""
        ...

    def alert_emails_since(self, rule_id: str, since: datetime) -> int:
        """Emails sent for the rule since ``since`` (the throttle)."""
        ...

    def alert_sent_ids(self, rule_id: str, article_ids: Iterable[str]) -> set[str]:
        """The subset of ``article_ids`` already mailed for the rule."""
        ...

    def alert_summary(self) -> dict[str, dict[str, int]]:
        """Per rule: pending, failed and sent counts (``mediamon alerts list``)."""
        ...

    def alert_retry_failed(self, rule_id: str) -> int:
        """Put the rule's failed pairs back to pending.  Returns how many."""
        ...


@runtime_checkable
class AlertStore(ArticleStore, AlertLog, Protocol):
    """What alert delivery uses: the alert log, and the articles its emails show."""


class Closing:
    """Lifecycle shared by the stores: ``with open_store(settings) as store: ...`` closes it."""

    def close(self) -> None:  # pragma: no cover - every store overrides it
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@runtime_checkable
class Store(ArticleStore, FeedStateStore, TranslationCache, AlertLog, Protocol):
    """One backend playing every role (SQLite embedded, Elasticsearch), usable as a context manager."""

    def close(self) -> None:
        """Release the connection; idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...


class NullTranslationCache:
    """A :class:`TranslationCache` that keeps nothing (``mediamon translate --no-cache``)."""

    def get_translations(self, keys: Iterable[TranslationKey]) -> dict[TranslationKey, str]:
        return {}

    def put_translations(self, items: Iterable[tuple[TranslationKey, str]]) -> None:
        for _ in items:  # consume, as a real cache would
            pass


# --- alerts -----------------------------------------------------------------------------------
#
# Contract of the AlertLog methods (implemented by every store; pipeline/alerts/ is the only caller):
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
# * ``alert_claim`` is the exception on purpose: claim -> send -> confirm (``alert_mark_sent``).
#   A claim younger than the claim timeout (``pipeline.alerts.deliver.CLAIM_TIMEOUT``) keeps every
#   other cycle off the pair; an older one is taken as a crashed sender and claimed again.


__all__ = ["AlertEntry", "AlertLog", "AlertStore", "ArticleStore", "Closing", "FeedStateStore", "IndexResult",
           "NullTranslationCache", "SearchRequest", "SearchResult", "Stats", "Store", "StoredVersion",
           "TranslationCache", "TranslationKey"]
