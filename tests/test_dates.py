"""pipeline.dates.parse_since: the times a person types, counted back from a given now."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipeline.dates import parse_since

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def test_durations_dates_and_errors():
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since(" 24h ", NOW) == NOW - timedelta(hours=24)
    assert parse_since("30m", NOW) == NOW - timedelta(minutes=30)
    assert parse_since("2w", NOW) == NOW - timedelta(weeks=2)
    assert parse_since("2026-11-20", NOW) == datetime(2026, 11, 20, tzinfo=timezone.utc)
    assert parse_since("2026-11-20T10:00:00+03:00", NOW) == datetime(2026, 11, 20, 7, tzinfo=timezone.utc)
    assert parse_since("2026-11-20T10:00:00Z", NOW) == datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
    assert parse_since(None, NOW) is None and parse_since("", NOW) is None
    with pytest.raises(ValueError, match="duration like 7d"):
        parse_since("last week", NOW)
