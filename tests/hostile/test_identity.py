"""Story identity (issue 16, item 1): a feed claims the global id of a URL only when it is entitled
to the URL's host (its own registrable domain or its declared ``domains:``); anything else is
stored under a feed-scoped id and never shadows the outlet's own item."""

from __future__ import annotations

import pytest

from pipeline.config import AlertConfig, FeedConfig, load_feeds
from pipeline.errors import ConfigError
from pipeline.identity import article_id, entitled, registrable_domain
from pipeline.normalize import canonical_url
from pipeline.store.base import SearchRequest
from pipeline.store.sqlite import SQLiteStore

from . import generators as gen
from .conftest import cycle, feed

HOSTILE_LINK = "https://TASS.example:443/politika/100100?utm_source=x#top"
REAL_TITLE = "Россия разместила комплекс «Орешник» в Белоруссии"


# Dated items: an undated item on its feed's first poll is never alerted (it may be years old:
# pipeline.alerts.match.alert_floors), and these tests are about identity, not dates.
PUB = "Mon, 23 Nov 2026 12:00:00 GMT"


def item(*args, **kwargs):
    kwargs.setdefault("pub", PUB)
    return gen.item(*args, **kwargs)


def _mail_settings(settings, smtp):
    return settings.model_copy(update=dict(smtp_host="127.0.0.1", smtp_port=smtp.port,
                                           smtp_from="mediamon@example.org", smtp_retry_wait=0.0,
                                           smtp_timeout=5.0))


def test_a_hostile_feed_cannot_suppress_the_outlets_story(hserver, hsettings, smtp, warm):
    """The hostile feed publishes TASS's URL first as "Weather update"; TASS's real item at that
    URL, a cycle later, is stored under the URL's global id, searchable and alerted; the hostile
    copy is stored under the hostile feed's own id and credited to it."""
    settings = _mail_settings(hsettings, smtp)
    hserver.expect_request("/hostile").respond_with_data(
        gen.rss([item("Weather update", HOSTILE_LINK, guid="w-1", description="Sunny.")]).encode(),
        content_type="application/rss+xml")
    hserver.expect_request("/tass").respond_with_data(
        gen.rss([item(REAL_TITLE, "https://tass.example/politika/100100", guid="tass-100100",
                          description="Министерство обороны сообщило о размещении.")]).encode(),
        content_type="application/rss+xml")
    hostile = feed("hostile", hserver.url_for("/hostile"), language="en")
    tass = FeedConfig(id="tass", url=hserver.url_for("/tass"), source="TASS", language="ru",
                      domains=("tass.example",))
    rule = AlertConfig(id="oreshnik", query="Орешник", recipients=("analyst@example.org",), mode="immediate")

    o1 = cycle(settings, [hostile], alerts=[rule])
    assert o1.report.counters_dict()["new"] == 1
    o2 = cycle(settings, [hostile, tass], alerts=[rule])
    c2 = o2.report.counters_dict()
    assert c2["new"] == 1 and c2["duplicates"] == 1, c2

    canonical = canonical_url(HOSTILE_LINK)
    assert canonical == "https://tass.example/politika/100100"
    by_feed = {a.feed_id: a for a in o2.articles}
    assert set(by_feed) == {"hostile", "tass"}
    real, fake = by_feed["tass"], by_feed["hostile"]
    assert real.id == article_id(canonical, tass.url, None, "", "")  # the URL's global id
    assert real.title == REAL_TITLE and real.source == "TASS"
    assert fake.id == article_id(canonical, hostile.url, None, "", "", scope="hostile") != real.id
    assert fake.title == "Weather update" and fake.source == "Hostile hostile"

    with SQLiteStore(settings.store_path) as store:
        hits = store.search(SearchRequest(query="Орешник")).hits
    assert [h.id for h in hits] == [real.id]
    assert c2["alert_items_sent"] == 1 and len(smtp.messages) == 1
    body = smtp.messages[0][2].get_body(("plain",)).get_content()
    assert "Орешник" in body and "Weather update" not in body


def test_a_claim_stored_before_the_rule_is_taken_back_by_the_outlet(hserver, hsettings, smtp, warm):
    """A store written before the identity rule holds the hostile copy under the URL's global id;
    TASS's own item reclaims the id (stored over it, credited to TASS, searchable, alerted)."""
    from datetime import datetime, timezone

    from pipeline.models import Article

    settings = _mail_settings(hsettings, smtp)
    canonical = canonical_url(HOSTILE_LINK)
    at = datetime(2026, 11, 20, tzinfo=timezone.utc)
    legacy = Article(id=article_id(canonical, "", None, "", ""), feed_id="hostile", url=HOSTILE_LINK,
                     canonical_url=canonical, guid="w-1", source="Hostile hostile", feed_language="en",
                     language="en", title="Weather update", summary="Sunny.", published_at=at, fetched_at=at,
                     content_hash="legacy")
    with SQLiteStore(settings.store_path) as store:
        store.index([legacy])
    hserver.expect_request("/hostile").respond_with_data(
        gen.rss([item("Weather update", HOSTILE_LINK, guid="w-1", description="Sunny.")]).encode(),
        content_type="application/rss+xml")
    hserver.expect_request("/tass").respond_with_data(
        gen.rss([item(REAL_TITLE, "https://tass.example/politika/100100", guid="tass-100100")]).encode(),
        content_type="application/rss+xml")
    hostile = feed("hostile", hserver.url_for("/hostile"), language="en")
    tass = FeedConfig(id="tass", url=hserver.url_for("/tass"), source="TASS", language="ru",
                      domains=("tass.example",))
    rule = AlertConfig(id="oreshnik", query="Орешник", recipients=("analyst@example.org",), mode="immediate")
    o = cycle(settings, [hostile, tass], alerts=[rule])
    c = o.report.counters_dict()
    assert c["reclaimed"] == 1 and c["new"] == 1, c  # the hostile feed's copy is new under its own id
    by_id = {a.id: a for a in o.articles}
    real = by_id[legacy.id]
    assert real.feed_id == "tass" and real.title == REAL_TITLE
    assert {a.feed_id for a in o.articles} == {"tass", "hostile"} and len(o.articles) == 2
    assert c["alert_items_sent"] == 1
    o2 = cycle(settings, [hostile, tass], alerts=[rule], force=True)
    c2 = o2.report.counters_dict()
    assert c2.get("reclaimed", 0) == 0 and c2["duplicates"] == 2 and c2.get("alert_items_sent", 0) == 0, c2


def test_an_upgrade_stores_and_mails_nothing_twice(hserver, hsettings, smtp, warm):
    """A store written before the rule holds an aggregator's items under their URLs' global ids
    (simulated: the first cycle runs with the feed entitled); under the rule the feed's ids are
    feed-scoped, yet its own earlier copies are recognised: nothing stored or mailed again, and an
    update of such an item is still an update."""
    settings = _mail_settings(hsettings, smtp)
    for title in ("Oreshnik moved west", "Oreshnik moved west", "Oreshnik moved west again"):
        hserver.expect_ordered_request("/agg").respond_with_data(
            gen.rss([item(title, "https://tass.example/politika/7", guid="agg-7")]).encode(),
            content_type="application/rss+xml")
    rule = AlertConfig(id="oreshnik", query="Oreshnik", recipients=("analyst@example.org",), mode="immediate")
    before = FeedConfig(id="agg", url=hserver.url_for("/agg"), source="Agg", domains=("tass.example",))
    after = FeedConfig(id="agg", url=hserver.url_for("/agg"), source="Agg")
    o1 = cycle(settings, [before], alerts=[rule])
    o2 = cycle(settings, [after], alerts=[rule], force=True)
    o3 = cycle(settings, [after], alerts=[rule], force=True)
    c2, c3 = o2.report.counters_dict(), o3.report.counters_dict()
    assert c2["new"] == 0 and c2["duplicates"] == 1 and len(o2.articles) == 1, c2
    assert c3["updated"] == 1 and c3["new"] == 0 and [a.id for a in o3.articles] == [o1.articles[0].id], c3
    assert len(smtp.messages) == 1  # mailed once, in the first cycle


def test_feeds_entitled_to_one_outlet_share_its_story(hserver, hsettings, warm):
    """Two feeds of one outlet (the same registrable domain as the URL, or declaring it) give its
    URL one document; the second copy is a duplicate."""
    doc = gen.rss([item("Same story", "https://www.tass.example/a/1?utm_medium=rss", guid="a1")]).encode()
    hserver.expect_request("/one").respond_with_data(doc, content_type="application/rss+xml")
    hserver.expect_request("/two").respond_with_data(doc, content_type="application/rss+xml")
    feeds = [FeedConfig(id="one", url=hserver.url_for("/one"), source="TASS", domains=("tass.example",)),
             FeedConfig(id="two", url=hserver.url_for("/two"), source="TASS", domains=("www.tass.example",))]
    o = cycle(hsettings, feeds)
    c = o.report.counters_dict()
    assert c["new"] == 1 and c["duplicates"] == 1 and len(o.articles) == 1, c


@pytest.mark.parametrize("host,expected", [
    ("news.tass.ru", "tass.ru"),
    ("TASS.RU.", "tass.ru"),
    ("www.bbc.co.uk", "bbc.co.uk"),
    ("a.github.io", "a.github.io"),  # a private suffix: a.github.io and b.github.io are two owners
    ("co.uk", None),  # a public suffix has no registrable domain
    ("x.tass.example", "tass.example"),  # unknown TLD: the list's implicit "*" rule
    ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
    ("127.0.0.1", "127.0.0.1"),
    ("localhost", "localhost"),
])
def test_registrable_domain(host, expected):
    assert registrable_domain(host) == expected


@pytest.mark.parametrize("feed_url,domains,url,expected", [
    ("https://tass.ru/rss/v2.xml", (), "https://tass.ru/politika/1", True),
    ("https://feeds.tass.ru/rss", (), "https://www.tass.ru/politika/1", True),
    ("https://tass.ru/rss", (), "https://ria.ru/politika/1", False),
    ("https://a.github.io/feed", (), "https://b.github.io/post", False),
    ("https://feeds.example.net/tass", ("tass.ru",), "https://tass.ru/x", True),
    ("https://feeds.example.net/tass", ("tass.ru",), "https://en.tass.ru/x", True),
    ("https://feeds.example.net/tass", ("tass.ru",), "https://nottass.ru/x", False),
    ("http://127.0.0.1:8000/f.xml", (), "https://tass.example/x", False),
    ("/srv/feeds/local.xml", (), "https://tass.example/x", False),
    ("/srv/feeds/local.xml", ("tass.example",), "https://tass.example/x", True),
    ("https://tass.ru/rss", (), "https://TASS.RU./x", True),
])
def test_entitlement(feed_url, domains, url, expected):
    f = FeedConfig(id="f", url=feed_url, source="S", domains=domains)
    assert entitled(f, url) is expected


@pytest.mark.parametrize("value,message", [
    ("['ru']", "top-level domain"),
    ("['co.uk']", "public suffix"),
    ("['https://tass.ru/']", "host name only"),
    ("['*.tass.ru']", "host name only"),
    ("['tass.ru:443']", "host name only"),
    ("['tass..ru']", "not a valid host name"),
    ("[3]", "non-empty host name"),
    ("{a: b}", "list of host names"),
])
def test_declared_domains_are_validated(tmp_path, value, message):
    (tmp_path / "feeds.yaml").write_text(
        f"- {{id: ok, url: 'https://tass.ru/rss', source: TASS, domains: [tass.com]}}\n"
        f"- {{id: bad, url: 'https://tass.ru/rss', source: TASS, domains: {value}}}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_feeds(tmp_path)
    text = str(err.value)
    assert "feeds.yaml" in text and "'bad'" in text and "domains" in text and message in text, text


def test_declared_domains_are_normalised(tmp_path):
    (tmp_path / "feeds.yaml").write_text(
        "- {id: t, url: 'https://feeds.example.net/t', source: T, domains: [TASS.ru, пример.рф, tass.ru]}\n",
        encoding="utf-8")
    [f] = load_feeds(tmp_path)
    assert f.domains == ("tass.ru", "xn--e1afmkfd.xn--p1ai")


def test_cycles_with_a_hostile_feed_preclaiming_every_outlets_next_urls(hserver, hsettings, smtp, warm):
    """Several cycles: each cycle the hostile feed publishes the URLs the three outlets will publish
    *next* cycle (and repeats the current ones), as "Weather" items.  Every real story is stored
    under its URL's global id, credited to its outlet and mailed in the cycle it appears, exactly
    once; the hostile copies are all the hostile feed's own items and never mailed."""
    from werkzeug import Response

    settings = _mail_settings(hsettings, smtp)
    outlets = ("alpha", "beta", "gamma")
    state = {"k": 0}

    def url(o: str, k: int) -> str:
        return f"https://www.{o}.example/news/{k}"

    def outlet_doc(o: str):
        def handler(_request):
            items = [item(f"Oreshnik report {o} {k}", url(o, k), guid=f"{o}-{k}") for k in range(state["k"] + 1)]
            return Response(gen.rss(items), content_type="application/rss+xml")
        return handler

    def hostile_doc(_request):
        k = state["k"]
        items = [item("Weather", url(o, j) + "?utm_source=hostile#x", guid=f"h-{o}-{j}")
                 for o in outlets for j in (k, k + 1)]
        return Response(gen.rss(items), content_type="application/rss+xml")

    for o in outlets:
        hserver.expect_request(f"/{o}").respond_with_handler(outlet_doc(o))
    hserver.expect_request("/hostile").respond_with_handler(hostile_doc)
    feeds = [feed("hostile", hserver.url_for("/hostile"), language="en")]
    feeds += [FeedConfig(id=o, url=hserver.url_for(f"/{o}"), source=o.title(), language="en",
                         domains=(f"{o}.example",)) for o in outlets]
    # the hostile copies of next cycle's URLs are stored a cycle before the outlets publish them
    rule = AlertConfig(id="oreshnik", query="Oreshnik", recipients=("analyst@example.org",), mode="immediate")
    cycles = 4
    for k in range(cycles):
        state["k"] = k
        o = cycle(settings, feeds, alerts=[rule], force=True)
        c = o.report.counters_dict()
        assert c["new"] == (3 * 2 if k == 0 else 3) + 3 and c.get("reclaimed", 0) == 0, (k, c)
        assert c["alert_items_sent"] == 3, (k, c)  # this cycle's three real stories, in this cycle
    stored_items = o.articles
    real = [a for a in stored_items if a.feed_id in outlets]
    fake = [a for a in stored_items if a.feed_id == "hostile"]
    assert len(real) == 3 * cycles and len(fake) == 3 * (cycles + 1)
    assert all(a.id == article_id(a.canonical_url, "", None, "", "") for a in real)
    assert all(a.title == "Weather" and a.id != article_id(a.canonical_url, "", None, "", "") for a in fake)
    mailed = [line for _, _, m in smtp.messages for line in m.get_body(("plain",)).get_content().splitlines()
              if "Oreshnik report" in line]
    assert len(smtp.messages) == cycles and len(mailed) == len(set(mailed)) == 3 * cycles
