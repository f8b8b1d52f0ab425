"""Story updates (issue 16, item 2): an item whose content changed is an update (stored again,
translated, classified, re-indexed, alerted if a rule matches now and had not been sent for it),
and distinct stories that share a link stay distinct."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from pipeline.config import AlertConfig, FeedConfig, TopicConfig
from pipeline.cycle import run_cycle
from pipeline.normalize import canonical_url
from pipeline.store.base import SearchRequest
from pipeline.store.sqlite import SQLiteStore

from . import generators as gen
from .conftest import bounded, cycle, stored

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
LINK = "https://tass.example/armiya/200200"


def _doc(title: str) -> bytes:
    return gen.rss([
        gen.item(title, LINK, guid="tass-200200", description="Министерство обороны сообщило подробности."),
        gen.item("Погода в Москве", "https://tass.example/obschestvo/1", guid="tass-1", description="Тепло."),
    ]).encode()


def test_a_changed_title_is_an_update_reclassified_reindexed_and_alerted(hserver, hsettings, smtp, warm):
    settings = hsettings.model_copy(update=dict(smtp_host="127.0.0.1", smtp_port=smtp.port,
                                                smtp_from="mediamon@example.org", smtp_retry_wait=0.0,
                                                smtp_timeout=5.0))
    for title in ("Учения в Белоруссии", "Учения в Белоруссии: показан «Орешник»",
                  "Учения в Белоруссии: показан «Орешник»", "Учения в Белоруссии: показан «Орешник» (видео)"):
        hserver.expect_ordered_request("/tass").respond_with_data(_doc(title), content_type="application/rss+xml")
    tass = FeedConfig(id="tass", url=hserver.url_for("/tass"), source="TASS", language="ru",
                      domains=("tass.example",))
    topic = TopicConfig(id="oreshnik", name="Oreshnik", query="Орешник")
    rule = AlertConfig(id="oreshnik", query="Орешник", recipients=("analyst@example.org",), mode="immediate")

    def run(n: int):
        report = run_cycle(settings, feeds=[tass], topics=[topic], alerts=[rule], force=True,
                           now=T0 + timedelta(hours=n))
        return report.counters_dict(), {a.canonical_url: a for a in stored(settings)[0]}

    c1, s1 = run(0)
    assert c1["new"] == 2 and c1["updated"] == 0 and not smtp.messages
    first = s1[LINK]
    assert first.topics == ()
    time.sleep(1.1)  # the next fetch is at least a second later (fetched_at has whole seconds)

    c2, s2 = run(1)  # same guid and link, new title
    assert c2["new"] == 0 and c2["updated"] == 1 and c2["duplicates"] == 1, c2
    now = s2[LINK]
    assert now.id == first.id and now.title == "Учения в Белоруссии: показан «Орешник»"
    assert now.fetched_at == first.fetched_at  # first seen, kept
    assert now.published_at == first.published_at and now.date_inferred  # no date in the feed: the first one
    assert datetime.now(timezone.utc) - first.fetched_at >= timedelta(seconds=1)
    assert now.topics == ("oreshnik",)  # classified again
    assert now.title_en is None  # (translation is off in tests; English: see the next test)
    with SQLiteStore(settings.store_path) as store:
        assert [a.id for a in store.search(SearchRequest(query="Орешник")).hits] == [first.id]
        assert store.count() == 2
    assert c2["alert_items_sent"] == 1 and len(smtp.messages) == 1
    assert "Орешник" in smtp.messages[0][2].get_body(("plain",)).get_content()

    c3, _ = run(2)  # unchanged: nothing to do
    assert c3["updated"] == 0 and c3["duplicates"] == 2 and c3["new"] == 0
    c4, s4 = run(3)  # updated again, still matching: already sent for this item, no second email
    assert c4["updated"] == 1 and s4[LINK].title.endswith("(видео)")
    assert c4.get("alert_items_sent", 0) == 0 and len(smtp.messages) == 1


def test_an_update_is_translated_again(hserver, hsettings, warm):
    """The English text of an update is the new one (the translation stage ran again; for English
    it copies the original), never the first version's."""
    for title in ("Drills in Belarus", "Drills in Belarus show the Oreshnik"):
        hserver.expect_ordered_request("/en").respond_with_data(
            gen.rss([gen.item(title, LINK, guid="g", description="The ministry said so.")]).encode(),
            content_type="application/rss+xml")
    f = FeedConfig(id="en", url=hserver.url_for("/en"), source="TASS", language="en", domains=("tass.example",))
    o1 = cycle(hsettings, [f])
    o2 = cycle(hsettings, [f], force=True)
    [a1], [a2] = o1.articles, o2.articles
    assert a1.title_en == "Drills in Belarus" and o2.report.counters_dict()["updated"] == 1
    assert a2.id == a1.id and a2.title_en == "Drills in Belarus show the Oreshnik"
    assert a2.translation.status == "skipped"  # English: nothing to translate


def test_another_feeds_copy_never_overwrites_the_stored_story(hserver, hsettings, warm):
    """Two feeds entitled to one URL with different text: the first stored copy stays, the other
    is a duplicate (no update ping-pong between an outlet's feeds, cycle after cycle)."""
    hserver.expect_request("/a").respond_with_data(
        gen.rss([gen.item("Version of feed A", LINK, guid="g")]).encode(), content_type="application/rss+xml")
    hserver.expect_request("/b").respond_with_data(
        gen.rss([gen.item("Version of feed B", LINK, guid="g")]).encode(), content_type="application/rss+xml")
    feeds = [FeedConfig(id=f, url=hserver.url_for(f"/{f}"), source="TASS", domains=("tass.example",))
             for f in ("a", "b")]
    o1 = cycle(hsettings, feeds)
    o2 = cycle(hsettings, feeds, force=True)
    assert [a.title for a in o2.articles] == [a.title for a in o1.articles]
    c2 = o2.report.counters_dict()
    assert len(o2.articles) == 1 and c2["updated"] == 0 and c2["duplicates"] == 2, c2


@pytest.mark.slow
def test_5000_distinct_stories_sharing_one_link_are_5000_items(hserver, hsettings, warm):
    n = 5000
    doc = gen.rss([gen.item(f"Story {i}", "https://tass.example/live", guid=f"live-{i}") for i in range(n)]).encode()
    hserver.expect_request("/live").respond_with_data(doc, content_type="application/rss+xml")
    f = FeedConfig(id="live", url=hserver.url_for("/live"), source="TASS", language="en", domains=("tass.example",))
    settings = hsettings.model_copy(update={"max_items_per_feed": n})
    with bounded(120, 400):
        o1 = cycle(settings, [f])
        o2 = cycle(settings, [f], force=True)
    c1, c2 = o1.report.counters_dict(), o2.report.counters_dict()
    assert c1["new"] == n and c1["distinct_same_link"] == n - 1 and len(o1.articles) == n
    assert len({a.guid for a in o1.articles}) == n
    assert c2["new"] == 0 and c2["duplicates"] == n and len(o2.articles) == n


def test_a_new_story_under_a_stored_link_is_a_new_item(hserver, hsettings, warm):
    """The link's first story is stored alone; a later one under the same link with another guid
    (or, without guids, another title) is a new item, counted, and both stay stable."""
    for items in ([gen.item("First", "https://tass.example/live", guid="a"),
                   gen.item("Untitled one", "https://tass.example/blog")],
                  [gen.item("Second", "https://tass.example/live", guid="b"),
                   gen.item("Untitled two", "https://tass.example/blog")],
                  [gen.item("Second", "https://tass.example/live", guid="b"),
                   gen.item("First", "https://tass.example/live", guid="a"),
                   gen.item("Untitled two", "https://tass.example/blog")]):
        hserver.expect_ordered_request("/live").respond_with_data(gen.rss(items).encode(),
                                                                   content_type="application/rss+xml")
    f = FeedConfig(id="live", url=hserver.url_for("/live"), source="TASS", domains=("tass.example",))
    o1 = cycle(hsettings, [f])
    o2 = cycle(hsettings, [f], force=True)
    o3 = cycle(hsettings, [f], force=True)
    c2, c3 = o2.report.counters_dict(), o3.report.counters_dict()
    assert c2["new"] == 2 and c2["updated"] == 0 and c2["distinct_same_link"] == 2, c2
    assert sorted(a.title for a in o2.articles) == ["First", "Second", "Untitled one", "Untitled two"]
    assert c3["new"] == 0 and c3["updated"] == 0 and c3["duplicates"] == 3, c3
    assert len(o3.articles) == len(o1.articles) + 2 == 4


def test_same_text_under_one_link_with_another_guid_is_another_story(hserver, hsettings, warm):
    """A live blog that repeats one headline under one link: each new guid is a new item."""
    for guid in ("a", "b", "b"):
        hserver.expect_ordered_request("/blog").respond_with_data(
            gen.rss([gen.item("Live: the latest", "https://tass.example/live", guid=guid)]).encode(),
            content_type="application/rss+xml")
    f = FeedConfig(id="blog", url=hserver.url_for("/blog"), source="TASS", domains=("tass.example",))
    cycle(hsettings, [f])
    o2 = cycle(hsettings, [f], force=True)
    o3 = cycle(hsettings, [f], force=True)
    assert o2.report.counters_dict()["new"] == 1 and sorted(a.guid for a in o2.articles) == ["a", "b"]
    c3 = o3.report.counters_dict()
    assert c3["new"] == 0 and c3["duplicates"] == 1 and len(o3.articles) == 2, c3


def test_hash_routed_links_are_distinct_stories(hserver, hsettings, warm):
    items = [gen.item(f"SPA story {i}", f"https://spa.example/#/news/{i}") for i in range(3)]
    items.append(gen.item("Anchor copy", "https://spa.example/page#comments"))
    items.append(gen.item("Anchor copy", "https://spa.example/page#top"))
    hserver.expect_request("/spa").respond_with_data(gen.rss(items).encode(), content_type="application/rss+xml")
    f = FeedConfig(id="spa", url=hserver.url_for("/spa"), source="SPA", domains=("spa.example",))
    o = cycle(hsettings, [f])
    c = o.report.counters_dict()
    assert c["new"] == 4 and c["items_seen"] == 4, c  # the two "#comments"/"#top" copies are one story
    assert sorted(a.canonical_url for a in o.articles) == [
        "https://spa.example/#/news/0", "https://spa.example/#/news/1", "https://spa.example/#/news/2",
        "https://spa.example/page"]


@pytest.mark.parametrize("url,expected", [
    ("https://spa.example/#/news/7", "https://spa.example/#/news/7"),
    ("https://spa.example/#!/news/7?utm_source=x", "https://spa.example/#!/news/7?utm_source=x"),
    ("https://tass.example/a#top", "https://tass.example/a"),
    ("https://tass.example/a#", "https://tass.example/a"),
])
def test_route_fragments_are_kept_anchors_dropped(url, expected):
    assert canonical_url(url) == expected
