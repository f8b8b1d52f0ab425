"""pipeline.steps: the feed-interval policy, decided once, over a real SQLite store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pipeline.config import FeedConfig
from pipeline.models import FeedState
from pipeline.steps import plan, respects_interval
from pipeline.store.sqlite import SQLiteStore

from .conftest import make_settings

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def test_interval_policy_scheduled_runs_wait_on_demand_runs_poll(tmp_path):
    settings = make_settings(tmp_path, default_interval=900.0)
    feeds = [
        FeedConfig(id="fresh", url="https://a.example/rss", source="A", interval=3600),  # fetched 1 min ago
        FeedConfig(id="due", url="https://b.example/rss", source="B", interval=60),  # fetched 1 min ago
        FeedConfig(id="backing-off", url="https://c.example/rss", source="C"),
        FeedConfig(id="new", url="https://d.example/rss", source="D"),
        FeedConfig(id="off", url="https://e.example/rss", source="E", enabled=False),
    ]
    a_minute_ago = NOW - timedelta(seconds=61)
    with SQLiteStore(tmp_path / "s.sqlite3") as store:
        store.save_feed_states([
            FeedState(feed_id="fresh", url=feeds[0].url, configured_url=feeds[0].url, last_fetch_at=a_minute_ago),
            FeedState(feed_id="due", url=feeds[1].url, configured_url=feeds[1].url, last_fetch_at=a_minute_ago),
            FeedState(feed_id="backing-off", url=feeds[2].url, configured_url=feeds[2].url,
                      last_fetch_at=a_minute_ago, next_fetch_at=NOW + timedelta(hours=1), consecutive_failures=2),
        ])
        scheduled = plan(feeds, store, settings, NOW, scheduled=True)
        on_demand = plan(feeds, store, settings, NOW, scheduled=False)
        forced = plan(feeds, store, settings, NOW, force=True)

    assert respects_interval(scheduled=True) and not respects_interval(scheduled=False)
    assert [f.id for f in scheduled.due] == ["due", "new"]
    assert {o.feed_id: o.error for o in scheduled.skipped}["fresh"] == "not due yet"
    assert [f.id for f in on_demand.due] == ["fresh", "due", "new"]  # the interval is not asked
    assert {o.feed_id for o in on_demand.skipped} == {"backing-off", "off"}
    assert [f.id for f in forced.due] == ["fresh", "due", "backing-off", "new"]  # never a disabled one
    assert scheduled.counters() == {"feeds": 5, "due": 2, "skipped": 3}
    assert set(scheduled.states) == {f.id for f in feeds}
