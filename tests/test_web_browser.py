"""`mediamon serve` in a real browser: Playwright driving Debian's Chromium (headless, the system
executable; no browser download) against a server on a loopback port over a store filled by one
cycle from the real feeds in ../shared/feeds, plus two feeds written here: a hostile one (script
tags, a ``javascript:`` link, bidi overrides in a title) and one Russian item with an English
translation (the cycle runs without a translation model).

Screenshots go to ``test-artifacts/`` (git-ignored).  Without Chromium or Playwright the tests skip
visibly; with ``CI=true`` they fail instead, so CI cannot skip them silently.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import threading
import time

import pytest

from pipeline.cycle import run_cycle
from pipeline.models import Translation
from pipeline.store.base import SearchRequest
from pipeline.store.sqlite import SQLiteStore

from .conftest import ROOT, SHARED_FEEDS, make_settings, write_feeds_yaml

pytestmark = [pytest.mark.slow]

ARTIFACTS = ROOT / "test-artifacts"
RLO, LRI, PDI = "\u202e", "\u2066", "\u2069"
BELARUS_RE = re.compile(r"^(Беларус|Белорус|Belarus|Byelorus|Білорус)", re.I)


def _need(what: str, ok: bool) -> None:
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required in CI (apt-get install -y chromium; pip install playwright)")
    pytest.skip(f"{what} not available (apt-get install -y chromium; pip install playwright)")


HOSTILE_FEED = f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Hostile</title><link>https://hostile.example/</link>
<description>test</description>
<item><title>&lt;script&gt;alert('title')&lt;/script&gt; Минск {RLO}gpj.exe{LRI} учения</title>
<link>javascript:alert('link')</link><guid isPermaLink="false">hostile-1</guid>
<description>&lt;img src=x onerror="alert('img')"&gt;&lt;script&gt;alert('summary')&lt;/script&gt;
&lt;a href="javascript:alert('a')"&gt;click&lt;/a&gt; Учения в Минске.</description>
<pubDate>Mon, 23 Nov 2026 10:00:00 GMT</pubDate></item>
</channel></rss>"""

BILINGUAL_FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Fixture</title><link>https://fixture.example/</link>
<description>test</description>
<item><title>Минобороны: войска Белоруссии и России начали совместные учения у границы</title>
<link>https://fixture.example/news/1</link><guid>https://fixture.example/news/1</guid>
<description>Учения продлятся неделю; в них участвуют подразделения ПВО Беларуси и ракетные части.</description>
<pubDate>Tue, 24 Nov 2026 08:00:00 GMT</pubDate></item>
</channel></rss>"""
BILINGUAL_EN = ("Defence ministry: Belarusian and Russian troops begin joint exercises near the border",
                "The exercises will last a week, with air defence units of Belarus and missile units taking part.")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not SHARED_FEEDS.is_dir():
        pytest.skip("../shared/feeds not present")
    tmp = tmp_path_factory.mktemp("webui")
    settings = make_settings(tmp)
    for name in ("topics.yaml", "aliases.yaml", "alerts.yaml"):
        shutil.copy(ROOT / "config" / name, settings.config_dir / name)
    (tmp / "hostile.xml").write_text(HOSTILE_FEED, encoding="utf-8")
    (tmp / "bilingual.xml").write_text(BILINGUAL_FEED, encoding="utf-8")
    feeds = [{"id": "s-" + p.stem.lower().replace("_", "-")[:50], "url": str(p), "source": p.stem}
             for p in sorted(SHARED_FEEDS.glob("*.xml"))]
    feeds += [{"id": "hostile", "url": str(tmp / "hostile.xml"), "source": "Hostile <b>Source</b>"},
              {"id": "fixture", "url": str(tmp / "bilingual.xml"), "source": "Fixture RU", "language": "ru"}]
    write_feeds_yaml(settings.config_dir, feeds)
    t0 = time.perf_counter()
    run_cycle(settings)
    store = SQLiteStore(settings.store_path)
    # the cycle ran without a translation model: give the fixture item its English text
    fx = store.search(SearchRequest(feed_ids=("fixture",))).hits[0]
    store.index([fx.replace(title_en=BILINGUAL_EN[0], summary_en=BILINGUAL_EN[1],
                            translation=Translation(status="ok", model="test-fixture (hand-written English)"))])
    build_s = time.perf_counter() - t0

    import uvicorn

    from pipeline.web.app import create_app

    app = create_app(settings, store=store)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    th = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    while not srv.started:
        time.sleep(0.02)
    yield {"url": f"http://127.0.0.1:{port}", "store": store, "fixture_id": fx.id, "build_s": build_s}
    srv.should_exit = True
    th.join(10)
    store.close()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright", False)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    _need("Debian chromium", bool(chromium))
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True, locale="ru-RU")
    pg = ctx.new_page()
    pg.dialogs = []
    pg.requests = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.on("request", lambda r: pg.requests.append(r.url))
    yield pg
    base = server["url"]
    assert pg.dialogs == [], "a dialog fired"
    assert all(u.startswith(base + "/") for u in pg.requests), [u for u in pg.requests if not u.startswith(base)]
    ctx.close()


def _hit_ids(pg) -> list[str]:
    return [h.split("/article/")[1].split("?")[0]
            for h in pg.locator("ol.hits li.hit h3 a").evaluate_all("els => els.map(e => e.getAttribute('href'))")]


def test_russian_search_with_morphology(page, server):
    pg = page
    pg.goto(server["url"] + "/")
    pg.fill("#q", "Беларусь")
    pg.select_option("select[name=language]", "ru")
    pg.press("#q", "Enter")
    pg.wait_for_url("**/?q=*")
    total = int(pg.locator("#total").inner_text().replace("\u202f", ""))
    assert total >= 40, total
    marks = pg.locator("ol.hits mark").all_inner_texts()
    assert marks and all(BELARUS_RE.match(m) for m in marks), marks
    # other case forms and the other spelling were found through lemmas and aliases
    assert {m.lower() for m in marks} - {"беларусь"}, marks
    assert pg.locator("ol.hits li.hit h3 a[lang=ru]").count() == len(_hit_ids(pg))
    assert pg.locator("figure.chart svg rect.bar").count() >= 1
    pg.screenshot(path=str(ARTIFACTS / "search-laptop.png"), full_page=False)


def test_syntax_error_is_shown_with_its_position(page, server):
    pg = page
    pg.goto(server["url"] + "/")
    pg.fill("#q", "ракета AND title:(")
    pg.press("#q", "Enter")
    err = pg.locator("#qerror")
    err.wait_for()
    assert "position 18" in err.inner_text()
    assert pg.locator("#qerror mark.errpos").count() == 1
    assert pg.get_attribute("#q", "aria-invalid") == "true"
    assert pg.input_value("#q") == "ракета AND title:("


def test_filters_sort_and_paging(page, server):
    pg = page
    pg.goto(server["url"] + "/")
    pg.select_option("select[name=language]", "en")
    pg.select_option("select[name=sort]", "oldest")
    pg.fill("input[name=since]", "2026-01-01")
    pg.press("#q", "Enter")
    pg.wait_for_url("**language=en**")
    first = _hit_ids(pg)
    metas = pg.locator("ol.hits li.hit p.meta").all_inner_texts()
    assert len(first) == 20 and all(" · en" in m for m in metas), metas[:3]
    dates = pg.locator("ol.hits time").evaluate_all("els => els.map(e => e.getAttribute('datetime'))")
    assert dates == sorted(dates) and dates[0] >= "2026-01-01"
    pg.click("a[rel=next]")
    pg.wait_for_url("**page=2**")
    assert "page 2 of" in pg.locator("nav.pager").inner_text()
    second = _hit_ids(pg)
    assert second and not set(second) & set(first)
    assert pg.get_attribute("ol.hits", "start") == "21"
    # a source filter narrows to that source
    pg.goto(server["url"] + "/?source=bbc_world")
    metas = pg.locator("ol.hits li.hit p.meta").all_inner_texts()
    assert metas and all("bbc_world" in m for m in metas)


def test_article_page_both_languages_and_matched_terms(page, server):
    pg = page
    pg.goto(server["url"] + "/?q=" + "Беларусь AND учения")
    pg.click(f"a[href^='/article/{server['fixture_id']}']")
    pg.wait_for_url("**/article/**")
    orig = pg.locator("section.side.orig")
    en = pg.locator("section.side.en")
    assert orig.locator("[lang=ru]").count() >= 2 and pg.get_attribute("section.side.en", "lang") == "en"
    assert "Белоруссии" in orig.inner_text() and "Belarus" in en.inner_text()
    assert set(orig.locator("mark").all_inner_texts()) >= {"Белоруссии", "Беларуси", "учения"}
    assert "Belarus" in en.locator("mark").all_inner_texts()
    assert "test-fixture" in pg.locator("dd.prov").inner_text()
    rules = pg.locator("section.rules .rule")
    assert rules.count() >= 1 and "belarus" in pg.locator("section.rules").inner_text().lower()
    link = pg.locator("a.out")
    assert link.get_attribute("rel") == "noopener noreferrer" and link.get_attribute("href").startswith("https://")
    pg.screenshot(path=str(ARTIFACTS / "article-laptop.png"), full_page=True)


def test_export_rows_match_the_page(page, server):
    pg = page
    pg.goto(server["url"] + "/?q=ракета OR missile&sort=newest")
    ids = _hit_ids(pg)
    total = int(pg.locator("#total").inner_text().replace("\u202f", ""))
    with pg.expect_download() as dl:
        pg.click("text=CSV")
    path = dl.value.path()
    rows = list(csv.DictReader(open(path, encoding="utf-8", newline="")))
    assert len(rows) == total and [r["id"] for r in rows[:len(ids)]] == ids
    titles = pg.locator("ol.hits li.hit h3 a").all_inner_texts()
    assert [r["title"].replace("\n", " ").strip() for r in rows[:3]] == [t.strip() for t in titles[:3]]
    with pg.expect_download() as dl:
        pg.click("text=JSONL")
    lines = [json.loads(x) for x in open(dl.value.path(), encoding="utf-8")]
    assert [x["id"] for x in lines] == [r["id"] for r in rows]


def test_hostile_item_renders_inert(page, server):
    pg = page
    pg.goto(server["url"] + "/?q=Минск&feed=hostile")
    assert pg.locator("ol.hits li.hit").count() == 1
    title = pg.locator("ol.hits li.hit h3 a").inner_text()
    assert "<script>" in title  # shown as text
    assert RLO not in title and LRI not in title
    pg.click("ol.hits li.hit h3 a")
    pg.wait_for_url("**/article/**")
    assert pg.locator("script").count() == 0 and pg.locator("img").count() == 0
    assert pg.locator("[onerror], [onclick]").count() == 0
    hrefs = pg.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert not [h for h in hrefs if h and h.strip().lower().startswith("javascript")], hrefs
    assert RLO not in pg.locator("h1").inner_text()
    assert "no http(s) link" in pg.locator("dl.meta").inner_text()
    # even a script that got into the DOM could not run under the page's CSP
    pg.evaluate("() => { const d = document.createElement('div'); d.innerHTML = '<img src=x onerror=alert(1)>'; "
                "document.body.appendChild(d); }")
    pg.wait_for_timeout(200)
    assert pg.dialogs == []


def test_phone_layout_topics_and_alerts(browser, server):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    pg = ctx.new_page()
    try:
        pg.goto(server["url"] + "/?q=Беларусь")
        assert pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        pg.screenshot(path=str(ARTIFACTS / "search-phone.png"))
        pg.goto(server["url"] + f"/article/{server['fixture_id']}")
        assert pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        pg.screenshot(path=str(ARTIFACTS / "article-phone.png"), full_page=True)
        pg.goto(server["url"] + "/topics")
        pg.click("text=Belarus–Russia military cooperation")
        assert pg.locator("figure.chart svg rect.bar").count() >= 1 and pg.locator("ol.hits li.hit").count() >= 1
        pg.goto(server["url"] + "/alerts")
        assert pg.locator("section.rule").count() >= 1
        assert "Pending" in pg.locator("section.rule").first.inner_text()
    finally:
        ctx.close()
