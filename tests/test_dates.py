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


def test_far_durations_and_dates_are_clamped_to_the_documented_range():
    from pipeline.dates import QUERY_DATE_MAX, QUERY_DATE_MIN

    assert parse_since("999999999d", NOW) == QUERY_DATE_MIN
    assert parse_since("99999999999999999999999w", NOW) == QUERY_DATE_MIN
    assert parse_since("9" * 5000 + "m", NOW) == QUERY_DATE_MIN
    assert parse_since("0001-01-01T00:00:00+01:00", NOW) == QUERY_DATE_MIN
    assert parse_since("1900-01-01", NOW) == QUERY_DATE_MIN
    assert parse_since("9999-12-31T23:59:59-05:00", NOW) == QUERY_DATE_MAX
    assert parse_since("9999-12-31", NOW) == QUERY_DATE_MAX
    # inside the range nothing changes
    assert parse_since("20000d", NOW) == NOW - timedelta(days=20000)
    assert parse_since("1970-01-02", NOW) == datetime(1970, 1, 2, tzinfo=timezone.utc)
