"""Pure functions that turn a fetch outcome into the next feed state.

Rules (issue 2):

* 200/304: validators (ETag, Last-Modified) are taken from the response; failures reset.
* a chain of 301/308 redirects updates the stored URL; 302/303/307 do not.
* 410 Gone disables the feed; changing its URL in feeds.yaml re-enables it (``reconcile``: a new URL
  starts afresh).  ``mediamon feeds list`` shows it as DISABLED.
* 429/503 honour Retry-After (capped); without it they back off like other failures.
* any other failure backs off exponentially (base * 2**(n-1), capped) and never disables the feed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .config import FeedConfig
from .fetch import FetchResult, redact_url
from .models import FeedState
from .settings import Settings


def initial_state(feed: FeedConfig) -> FeedState:
    # a feed state never holds a password: https://user:***@host/ (the fetch puts it back)
    url = redact_url(feed.url)
    return FeedState(feed_id=feed.id, url=url, configured_url=url)


def reconcile(feed: FeedConfig, state: FeedState | None) -> FeedState:
    """The stored state for ``feed``, reset when the configured URL changed (a new URL in
    feeds.yaml means the analyst fixed or replaced the feed: start fresh, re-enabled).  URLs are
    compared redacted (a changed password alone is not a new feed); a state saved before
    redaction existed gets its URLs redacted."""
    if state is None or redact_url(state.configured_url or state.url) != redact_url(feed.url):
        return initial_state(feed) if state is None else initial_state(feed).replace(
            items_total=state.items_total)
    if redact_url(state.url) != state.url or (state.configured_url and redact_url(state.configured_url) != state.configured_url):
        return state.replace(url=redact_url(state.url),
                             configured_url=redact_url(state.configured_url) if state.configured_url else None)
    return state


def is_due(feed: FeedConfig, state: FeedState | None, now: datetime, settings: Settings, *,
           respect_interval: bool = False) -> tuple[bool, str | None]:
    """(due, reason when not due)."""
    if not feed.enabled:
        return False, "disabled in config"
    if state is None:
        return True, None
    if state.disabled:
        return False, f"disabled: {state.disabled_reason or 'gone'}"
    if state.next_fetch_at is not None and state.next_fetch_at > now:
        return False, f"backing off until {state.next_fetch_at.isoformat(timespec='seconds')}"
    if respect_interval and state.last_fetch_at is not None:
        interval = feed.interval or settings.default_interval
        if state.last_fetch_at + timedelta(seconds=interval) > now:
            return False, "not due yet"
    return True, None


def backoff_seconds(failures: int, settings: Settings) -> float:
    return min(settings.backoff_base * (2 ** max(0, failures - 1)), settings.backoff_cap)


def next_state(state: FeedState, result: FetchResult, now: datetime, settings: Settings,
               new_items: int = 0) -> FeedState:
    """The state after ``result``.  Call only once the feed's new items are stored."""
    err = result.error
    if err is None:
        return state.replace(
            url=result.permanent_url or state.url,
            etag=result.etag,
            last_modified=result.last_modified,
            last_fetch_at=now,
            last_success_at=now,
            last_status=result.status,
            consecutive_failures=0,
            next_fetch_at=None,
            items_total=state.items_total + new_items,
            last_new_items=new_items,
        )
    failures = state.consecutive_failures + 1
    base = dict(last_fetch_at=now, last_error_at=now, last_error=str(err), last_status=err.status,
                consecutive_failures=failures, last_new_items=0)
    if err.status == 410:
        return state.replace(**base, disabled=True, disabled_reason="HTTP 410 Gone", next_fetch_at=None)
    delay = backoff_seconds(failures, settings)
    if err.status in (429, 503) and err.retry_after is not None:
        delay = min(max(err.retry_after, 1.0), settings.retry_after_cap)
    return state.replace(**base, next_fetch_at=now + timedelta(seconds=delay))
