"""`mediamon serve` without a browser: pages, headers, access rules, export, relevance order,
highlighting (tests/test_web_browser.py drives the same app in Chromium)."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from pipeline.aliases import load_aliases
from pipeline.classify import classify_stage
from pipeline.cli import app as cli_app
from pipeline.config import load_topics
from pipeline.highlight import clean, highlight, snippet
from pipeline.models import Article, Translation
from pipeline.query import parse_query
from pipeline.store.base import SearchRequest
from pipeline.store.sqlite import SQLiteStore
from pipeline.web.app import CSP, create_app
from pipeline.web.views import chart, safe_link

from .conftest import ROOT, make_settings

NOW = datetime(2026, 11, 20, tzinfo=timezone.utc)
RLO = "\u202e"


def _article(i: int, title: str, summary: str = "", *, language: str = "ru", title_en: str | None = None,
             summary_en: str | None = None, url: str | None = None, source: str = "Test RU") -> Article:
    return Article(id=f"t{i:04d}", feed_id=f"feed-{source.split()[-1].lower()}", url=url or f"https://example.org/{i}",
                   canonical_url=None, guid=None, source=source, feed_language=language, language=language,
                   title=title, summary=summary, title_en=title_en, summary_en=summary_en,
                   translation=Translation(status="ok" if language != "en" else "skipped", model="fixture"),
                   published_at=NOW - timedelta(hours=i * 5), fetched_at=NOW, content_hash=str(i))


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    settings = make_settings(tmp)
    for name in ("topics.yaml", "aliases.yaml", "alerts.yaml"):
        shutil.copy(ROOT / "config" / name, settings.config_dir / name)
    arts = [_article(i, f"Учения в Белоруссии, день {i}", "Войска России и Беларуси провели учения.",
                     title_en=f"Exercises in Belarus, day {i}", summary_en="Russian and Belarusian troops held drills.")
            for i in range(30)]
    arts += [_article(100 + i, f"Weather report {i}", "Sunny.", language="en", source="Test EN") for i in range(5)]
    arts.append(_article(200, f"<script>alert(1)</script> {RLO}txt.exe Минск", "<img src=x onerror=alert(2)>",
                         url="javascript:alert(3)"))
    arts.append(_article(201, "=HYPERLINK(\"http://evil\") Минск", "formula"))
    arts, _ = classify_stage(arts, load_topics(settings.config_dir))
    store = SQLiteStore(settings.store_path)
    store.index(arts)
    client = TestClient(create_app(settings, store=store), base_url="http://127.0.0.1:8080")
    yield settings, store, client
    store.close()


def test_every_page_renders_with_strict_headers(web):
    _, _, c = web
    for path in ("/", "/?q=Беларусь", "/article/t0001", "/topics", "/topics/belarus_russia_military", "/alerts",
                 "/static/style.css"):
        r = c.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-security-policy"] == CSP
        assert "script-src" not in CSP and "default-src 'none'" in CSP and "unsafe" not in CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "app;dur=" in r.headers["server-timing"] and "cpu;dur=" in r.headers["server-timing"]
        if path != "/static/style.css":
            assert "<script" not in r.text.lower() and " on" + "error=" not in r.text and "style=" not in r.text


def test_russian_search_highlights_lemma_and_alias_matches(web):
    _, _, c = web
    r = c.get("/", params={"q": "Беларусь"})
    assert r.status_code == 200
    assert '<strong id="total">30</strong>' in r.text
    # lemma (Белоруссии/Беларуси) and alias (Belarus) matches are marked; "Russian" is not
    assert "<mark>Белоруссии</mark>" in r.text and "<mark>Беларуси</mark>" in r.text and "<mark>Belarus</mark>" in r.text
    assert "<mark>Russian</mark>" not in r.text
    assert 'lang="ru"' in r.text and 'lang="en"' in r.text


def test_syntax_error_is_shown_inline_with_its_position(web):
    _, _, c = web
    r = c.get("/", params={"q": "title:("})
    assert r.status_code == 400
    assert "at position 7" in r.text and 'class="errpos"' in r.text and 'aria-invalid="true"' in r.text
    r = c.get("/", params={"q": "ракет*", "since": "yesterday"})
    assert r.status_code == 400 and "since: expected a date" in r.text


def test_filters_paging_and_date_range(web):
    _, _, c = web
    r = c.get("/", params={"language": "en"})
    assert '<strong id="total">5</strong>' in r.text
    r = c.get("/", params={"source": "Test RU", "page": "2"})
    assert "page 2 of 2" in r.text and 'start="21"' in r.text
    r = c.get("/", params={"topic": "belarus_russia_military"})
    n = int(r.text.split('<strong id="total">')[1].split("<")[0])
    assert n >= 30 and r.text.count('class="tag">Belarus–Russia military cooperation<') == min(n, 20)
    day = (NOW - timedelta(hours=1)).date().isoformat()
    r = c.get("/", params={"since": day, "until": day})
    assert '<strong id="total">' in r.text and r.text.count('class="hit"') == 4  # 19:00, 14:00, 09:00, 04:00 on 2026-11-19


def test_hostile_text_is_escaped_and_link_refused(web):
    _, _, c = web
    r = c.get("/article/t0200")
    assert "<script>alert" not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert "<img" not in r.text
    assert RLO not in r.text
    assert 'href="javascript:' not in r.text and "no http(s) link" in r.text
    r = c.get("/", params={"q": "Минск"})
    assert RLO not in r.text and "<script>" not in r.text


def test_export_csv_and_jsonl_follow_the_page_order(web):
    _, _, c = web
    page = c.get("/", params={"q": "Беларусь", "sort": "newest"}).text
    ids = [s.split('"')[0].split("?")[0] for s in page.split('href="/article/')[1:]]
    r = c.get("/export.csv", params={"q": "Беларусь", "sort": "newest"})
    assert r.headers["content-type"].startswith("text/csv") and "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 30 and [x["id"] for x in rows[:20]] == ids[:20]
    j = [json.loads(x) for x in c.get("/export.jsonl", params={"q": "Беларусь"}).text.splitlines()]
    assert len(j) == 30 and {x["id"] for x in j} == {x["id"] for x in rows}
    # a cell that a spreadsheet would run as a formula stays text
    rows = list(csv.DictReader(io.StringIO(c.get("/export.csv", params={"q": "HYPERLINK"}).text)))
    assert rows[0]["title"].startswith("'=HYPERLINK")
    assert c.get("/export.csv", params={"q": "title:("}).status_code == 400
    assert c.get("/export.html").status_code == 404


def test_read_only_and_loopback_host_only(web):
    settings, store, c = web
    assert c.post("/", data={"q": "x"}).status_code == 405
    assert TestClient(c.app, base_url="http://attacker.example").get("/").status_code == 400
    assert TestClient(c.app, base_url="http://localhost:9999").get("/").status_code == 200
    assert TestClient(c.app, base_url="http://[::1]:9999").get("/").status_code == 200
    assert TestClient(c.app, base_url="http://127.0.0.1.evil.example").get("/").status_code == 400


def test_token_required_when_bound_beyond_loopback(web):
    settings, store, _ = web
    app = create_app(settings, store=store, token="s3cret-token-0123456789")
    c = TestClient(app, base_url="http://10.0.0.5:8080")
    assert c.get("/").status_code == 401 and "Basic" in c.get("/").headers["www-authenticate"]
    assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/", headers={"Authorization": "Bearer s3cret-token-0123456789"}).status_code == 200
    basic = base64.b64encode(b"analyst:s3cret-token-0123456789").decode()
    assert c.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 200


def test_serve_refuses_a_public_address_without_flag_and_token(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDIAMON_WEB_TOKEN", raising=False)
    runner = CliRunner()
    r = runner.invoke(cli_app, ["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and "--allow-remote" in r.output
    r = runner.invoke(cli_app, ["serve", "--host", "0.0.0.0", "--allow-remote", "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and "MEDIAMON_WEB_TOKEN" in r.output


def test_relevance_orders_by_bm25_in_sqlite(web):
    _, store, _ = web
    extra = [_article(300, "Искандер", "Искандер Искандер Искандер"), _article(301, "Новости", "и Искандер тоже")]
    store.index(extra)
    res = store.search(SearchRequest(query="Искандер", sort="relevance"))
    assert [a.id for a in res.hits] == ["t0300", "t0301"]
    res = store.search(SearchRequest(query="Искандер", sort="oldest"))
    assert [a.id for a in res.hits] == ["t0301", "t0300"]


def test_highlight_marks_exactly_the_matched_words():
    aliases = load_aliases(ROOT / "config")
    a = _article(1, "Лукашенко: учения в Белоруссии", "Белорусский министр и Беларусь.",
                 title_en="Lukashenko: drills in Belarus", summary_en="Belarusian minister and Belarus.")
    q = parse_query("Беларусь", aliases)
    terms = q.matched_terms(a)
    assert str(highlight(a.title, terms)) == "Лукашенко: учения в <mark>Белоруссии</mark>"
    assert str(highlight(a.summary_en, terms)) == "Belarusian minister and <mark>Belarus</mark>."
    # a phrase is marked where its words stand together only
    p = parse_query('"учения в Белоруссии"', aliases)
    assert str(highlight("учения в Белоруссии; учения", p.matched_terms(
        _article(2, "учения в Белоруссии; учения")))) == "<mark>учения в Белоруссии</mark>; учения"
    # hostile text: escaped piece by piece, bidi controls dropped
    assert str(highlight(f"<b>{RLO}Минск</b>", ["Минск"])) == "&lt;b&gt;<mark>Минск</mark>&lt;/b&gt;"
    assert clean("a\u2066b\u200fc\x07d") == "abcd"
    long = "слово " * 100 + "Минск " + "слово " * 100
    s = str(snippet(long, ["Минск"], width=120))
    assert s.startswith("…") and s.endswith("…") and "<mark>Минск</mark>" in s and len(s) < 160


def test_safe_link_and_chart():
    assert safe_link("https://example.org/a?b=1") == "https://example.org/a?b=1"
    for bad in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,x", "//evil", "https://a b",
                f"https://example.org/{RLO}", None, ""):
        assert safe_link(bad) is None, bad
    c = chart({"2026-11-01": 2, "2026-11-03": 4})
    assert [b["count"] for b in c["bars"]] == [2, 0, 4] and c["unit"] == "day"
    c = chart({"2025-01-01": 1, "2026-11-03": 4})
    assert c["unit"] == "week" and c["total"] == 5


@pytest.mark.slow
def test_mediamon_serve_command_serves_on_loopback(tmp_path):
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "config").mkdir()
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port),
                             "--data-dir", str(tmp_path / "data"), "--config-dir", str(tmp_path / "config")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/?q=test", timeout=5) as r:
                    assert r.status == 200 and r.headers["Content-Security-Policy"] == CSP
                    assert "0</strong> items" in r.read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(10)
