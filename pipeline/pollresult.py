"""One feed's poll: its result record and the parse + normalise step.

:class:`PollResult` (what fetching and parsing one feed produced) and :class:`FeedOutcome` (its
summary line in a cycle report) are shared by the poll engine (``pipeline.poll``), the parser pool
(``pipeline.parsepool``, whose worker processes run :func:`parse_and_normalize`) and the stages
that count and commit polls (``pipeline.steps``).  This module sits below all of them, so none of
them imports another in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import FeedConfig
from .errors import FeedError, FeedParseError
from .fetch import FetchResult
from .logs import get_logger, log
from .models import Article
from .identity import DISTINCT_SAME_LINK
from .normalize import LanguageDetector, normalize_feed
from .parse import parse_feed
from .settings import Settings

logger = get_logger(__name__)


@dataclass
class FeedOutcome:
    feed_id: str
    status: str  # ok | not_modified | failed | skipped
    http_status: int | None = None
    items: int = 0
    new: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"feed_id": self.feed_id, "status": self.status, "http_status": self.http_status,
                "items": self.items, "new": self.new, "error": self.error, "warnings": self.warnings,
                "seconds": round(self.seconds, 3)}


@dataclass
class PollResult:
    feed: FeedConfig
    fetch: FetchResult
    articles: list[Article] = field(default_factory=list)
    error: FeedError | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> FeedOutcome:
        if self.error is not None:
            status = "failed"
        elif self.fetch.not_modified:
            status = "not_modified"
        else:
            status = "ok"
        return FeedOutcome(self.feed.id, status, self.fetch.status, len(self.articles), 0,
                           str(self.error) if self.error else None, list(self.warnings), self.fetch.elapsed)



def parse_and_normalize(feed: FeedConfig, fetch: FetchResult, settings: Settings,
                        detector: LanguageDetector | None) -> PollResult:
    """Bytes of one feed → Articles.  Never raises for bad input: the error is in the result."""
    if fetch.error is not None or fetch.content is None:
        return PollResult(feed, fetch, error=fetch.error)
    try:
        parsed = parse_feed(fetch.content, url=fetch.final_url, content_type=fetch.content_type,
                            max_items=settings.max_items_per_feed, content_language=fetch.content_language)
        articles, problems = normalize_feed(parsed, feed, fetch.fetched_at, detector)
    except FeedError as exc:
        log(logger, 30, "parse_failed", feed_id=feed.id, error=str(exc))
        return PollResult(feed, fetch, error=exc)
    except Exception as exc:  # noqa: BLE001 - one bad feed never fails the batch
        err = FeedParseError(f"could not parse: {exc.__class__.__name__}: {exc}")
        err.__cause__ = exc
        log(logger, 40, "parse_crashed", feed_id=feed.id, error=str(exc))
        return PollResult(feed, fetch, error=err)
    for w in parsed.warnings:
        log(logger, 20, "parse_warning", feed_id=feed.id, warning=w)
    for w in problems:
        if w.startswith(DISTINCT_SAME_LINK):
            log(logger, 30, DISTINCT_SAME_LINK, feed_id=feed.id, warning=w)
    return PollResult(feed, fetch, articles=articles, warnings=list(parsed.warnings) + problems)
