"""Issue 18 ("read and explain", "dates you can trust"): `mediamon show`, `topics explain ID`,
`mediamon search` output formats, sort and paging, and inferred dates on the CLI.

One store is built per module by `mediamon run` over the test fixtures and, when ../shared is
present, two real feeds that give no dates (Japan Times 2017, AiF 2006)."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
from rich.console import Console
from typer.testing import CliRunner

from pipeline.cli import app

from .conftest import FEED_FIXTURES, ROOT, SHARED_FEEDS, write_feeds_yaml

runner = CliRunner()
UNDATED_FEEDS = {"jt": "oddity_japantimes_latest_no_dates.xml", "aif": "aif_health_2006.xml"}
ORESHNIK_EN = "Russia says Oreshnik missiles will be stationed in Belarus"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("issue18")
    cfg = tmp / "config"
    cfg.mkdir()
    for name in ("topics.yaml", "alerts.yaml", "aliases.yaml"):
        shutil.copy(ROOT / "config" / name, cfg / name)
    feeds = [{"id": "ru", "url": str(FEED_FIXTURES / "ru_news.xml"), "source": "RU Example", "language": "ru"},
             {"id": "en", "url": str(FEED_FIXTURES / "en_news.xml"), "source": "EN Example", "language": "en"}]
    if SHARED_FEEDS.is_dir():
        feeds += [{"id": fid, "url": str(SHARED_FEEDS / name), "source": fid.upper(), "language":
                   "ru" if fid == "aif" else "en"} for fid, name in UNDATED_FEEDS.items()]
    write_feeds_yaml(cfg, feeds)
    e = {"MEDIAMON_CONFIG_DIR": str(cfg), "MEDIAMON_DATA_DIR": str(tmp / "data"),
         "MEDIAMON_TRANSLATION_BACKEND": "none", "MEDIAMON_ALLOW_PRIVATE_NETWORKS": "true"}
    res = runner.invoke(app, ["run", "--json"], env=e)
    assert res.exit_code == 0, res.output
    return e


def _invoke(env, *args):
    return runner.invoke(app, list(args), env=env)


def _search_json(env, *args) -> list[dict]:
    res = _invoke(env, "search", *args, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def _id_of(env, title: str) -> str:
    return next(h["id"] for h in _search_json(env, "Oreshnik", "-n", "50") if h["title"] == title)


# --- mediamon show ----------------------------------------------------------------------------------

def test_show_plain_prints_the_whole_article_and_why_it_matched(env):
    res = _invoke(env, "show", _id_of(env, ORESHNIK_EN))
    assert res.exit_code == 0, res.output
    out = res.output
    assert ORESHNIK_EN in out and "nuclear-capable Oreshnik" in out  # title and summary in full
    for label in ("source:", "feed:", "url:", "language:", "published:", "fetched:", "translation:"):
        assert label in out
    assert "EN Example" in out and "declared en" in out and "(from the feed)" in out
    # every matching topic and alert rule, with the clause, the words as written, and how
    assert "topic missile_deployment" in out and "alert rule oreshnik-belarus" in out
    assert "missile* -> missiles, missile (in title, summary) [by prefix" in out
    assert "alias oreshnik:" in out
    assert "\x1b[" not in out  # plain when not a terminal


def test_show_json_fields(env):
    aid = _id_of(env, ORESHNIK_EN)
    res = _invoke(env, "show", aid, "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["id"] == aid and d["title"] == ORESHNIK_EN and d["date_inferred"] is False
    for key in ("summary", "content", "title_en", "summary_en", "translation", "feed_id", "source", "url",
                "language", "language_tag", "published_at", "fetched_at", "language_decided", "matched_terms",
                "rules"):
        assert key in d, key
    rules = {(r["kind"], r["id"]): r for r in d["rules"]}
    topic = rules[("topic", "missile_deployment")]
    assert topic["matched_now"] and "missiles" in topic["terms"]
    # a generic missile word counts in the title only: the summary's "missile" is not reported there
    clause = next(c for c in topic["clauses"] if c["clause"] == "title:missile*")
    assert clause["terms"] == ["missiles"] and clause["matched_by"] == "prefix"
    assert clause["where"] == ["title"]
    clause = next(c for c in topic["clauses"] if c["clause"] == "Oreshnik")
    assert clause["where"] == ["title", "summary"]
    alert = rules[("alert", "oreshnik-belarus")]
    assert alert["method"] == "immediate" and isinstance(alert["sent"], bool)
    assert "Oreshnik" in d["matched_terms"]


def test_show_russian_item_side_by_side_on_a_terminal(env, monkeypatch):
    import pipeline.commands.show as show_mod

    hit = next(h for h in _search_json(env, "Орешник") if h["language"] == "ru")
    buf = io.StringIO()
    monkeypatch.setattr(show_mod, "console", Console(file=buf, force_terminal=True, width=140))
    res = _invoke(env, "show", hit["id"])
    assert res.exit_code == 0, res.output
    out = buf.getvalue()
    assert "original (ru)" in out and "English" in out  # the two columns
    assert "(no translation: skipped)" in out or "(no translation:" in out  # never silently missing
    assert "Орешник" in out and "\x1b[" in out  # the matched words styled


def test_show_missing_id_is_a_clear_error(env):
    res = _invoke(env, "show", "0000000000000000000000000000000000000000")
    assert res.exit_code == 1
    assert "no stored article with id 0000000000000000000000000000000000000000" in res.output
    assert "Traceback" not in res.output


def test_show_with_a_query_marks_its_words(env):
    aid = _id_of(env, ORESHNIK_EN)
    d = json.loads(_invoke(env, "show", aid, "--json", "-q", "stationed").output)
    assert d["search_terms"] == ["stationed"]
    res = _invoke(env, "show", aid, "-q", "title:(")
    assert res.exit_code == 2 and "query error" in res.output


# --- topics explain ID ---------------------------------------------------------------------------------

def test_topics_explain_an_article_id_shows_the_deciding_clauses(env):
    aid = _id_of(env, ORESHNIK_EN)
    res = _invoke(env, "topics", "explain", "missile_deployment", aid)
    assert res.exit_code == 0, res.output
    assert "MATCH" in res.output and ORESHNIK_EN in res.output and "title:missile*" in res.output
    assert "Iskander" not in res.output  # an alternative that did not decide the match
    assert "--all" in res.output
    full = _invoke(env, "topics", "explain", "missile_deployment", aid, "--all")
    assert full.exit_code == 0 and "Iskander" in full.output
    d = json.loads(_invoke(env, "topics", "explain", "missile_deployment", aid, "--json").output)
    assert d["matched"] and d["article_id"] == aid
    assert {c["clause"] for c in d["deciding"]} >= {"Oreshnik", "title:missile*"}


def test_topics_explain_needs_an_id_or_text_and_a_known_id(env):
    res = _invoke(env, "topics", "explain", "missile_deployment")
    assert res.exit_code == 2 and "either an article id or --text" in res.output
    res = _invoke(env, "topics", "explain", "missile_deployment", "nope")
    assert res.exit_code == 1 and "no stored article with id nope" in res.output


# --- mediamon search: snippet, formats, sort, paging, table width ----------------------------------

needs_shared = pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason="../shared/feeds is absent")


def test_search_json_has_snippet_matched_terms_and_date_inferred(env):
    hits = _search_json(env, "Belarus OR Белоруссия")
    en = next(h for h in hits if h["title"] == ORESHNIK_EN)
    assert en["matched_terms"] == ["Belarus"] and en["date_inferred"] is False
    (s, e), = en["snippet_marks"]
    assert en["snippet"][s:e] == "Belarus" and "Oreshnik" in en["snippet"]
    ru = next(h for h in hits if h["language"] == "ru")
    assert any(t.startswith("Белорусси") for t in ru["matched_terms"])  # as written in the text
    assert all(ru["snippet"][s:e] in ru["matched_terms"] for s, e in ru["snippet_marks"])


def test_search_formats_json_array_jsonl_csv(env):
    as_json = _search_json(env, "Oreshnik")
    res = _invoke(env, "search", "Oreshnik", "--format", "jsonl")
    assert res.exit_code == 0
    assert [json.loads(line) for line in res.output.splitlines()] == as_json
    assert json.loads(_invoke(env, "search", "Oreshnik", "--format", "json").output) == as_json
    res = _invoke(env, "search", "Oreshnik", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(res.output)))
    assert [r["id"] for r in rows] == [h["id"] for h in as_json]
    assert set(rows[0]) >= {"snippet", "matched_terms", "date_inferred", "published_at"}
    bad = _invoke(env, "search", "x", "--format", "xml")
    assert bad.exit_code == 2 and "table, json, jsonl, csv" in bad.output


def test_search_sort_and_offset_paging(env):
    newest = _search_json(env, "-n", "50")
    assert [h["id"] for h in _search_json(env, "-n", "3", "--offset", "2")] == [h["id"] for h in newest[2:5]]
    dated = [h for h in newest if not h["date_inferred"]]
    stamps = [h["published_at"] for h in dated]
    assert stamps == sorted(stamps, reverse=True)
    oldest = [h for h in _search_json(env, "--sort", "oldest", "-n", "50") if not h["date_inferred"]]
    assert [h["published_at"] for h in oldest] == sorted(stamps)
    assert _search_json(env, "--oldest", "-n", "50") == _search_json(env, "--sort", "oldest", "-n", "50")
    # relevance: BM25; the item with the query word in title and summary ranks first
    rel = _search_json(env, "Oreshnik OR Орешник", "--sort", "relevance")
    assert {h["id"] for h in rel} == {h["id"] for h in _search_json(env, "Oreshnik OR Орешник")}
    assert _search_json(env, "Oreshnik OR Орешник", "--sort", "relevance", "-n", "1", "--offset", "1") == rel[1:2]
    bad = _invoke(env, "search", "x", "--sort", "best")
    assert bad.exit_code == 2 and "newest, oldest, relevance" in bad.output


def test_search_table_keeps_rows_short_at_80_columns(env, monkeypatch):
    import pipeline.commands.core as core

    buf = io.StringIO()
    monkeypatch.setattr(core, "console", Console(file=buf, width=80, force_terminal=False))
    res = _invoke(env, "search", "-n", "8")
    assert res.exit_code == 0, res.output
    lines = buf.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    # a row is its title and its snippet (two lines) however long the title: 8 rows, a header, a title
    body = [line for line in lines if line.strip() and "hit(s)" not in line and "date inferred" not in line]
    assert len(body) <= 8 * 2 + 2, "\n".join(lines)
    assert any("…" in line for line in lines)  # long titles cut with an ellipsis
    ids = [line.split()[0] for line in body[2:] if line[:2].strip()]
    top = _search_json(env, "-n", "8")
    assert ids == [h["id"][:8] for h in top]


def test_show_takes_the_short_id_of_the_table(env):
    aid = _id_of(env, ORESHNIK_EN)
    d = json.loads(_invoke(env, "show", aid[:8], "--json").output)
    assert d["id"] == aid


# --- dates you can trust: real undated feeds (Japan Times 2017, AiF 2006) ----------------------------

@needs_shared
def test_undated_items_come_after_dated_ones_newest_first(env):
    hits = _search_json(env, "-n", "500")
    flags = [h["date_inferred"] for h in hits]
    assert sum(flags) >= 130  # 118 Japan Times + 17 AiF, all stamped with the time first seen
    assert flags == sorted(flags), "an undated item was listed before a dated one"
    assert hits[0]["feed_id"] in ("ru", "en")
    # paging across the boundary between dated and undated items loses nothing and repeats nothing
    dated = flags.index(True)
    page = _search_json(env, "-n", "4", "--offset", str(dated - 2))
    assert [h["id"] for h in page] == [h["id"] for h in hits[dated - 2:dated + 2]]
    oldest = _search_json(env, "--sort", "oldest", "-n", "500")
    assert [h["date_inferred"] for h in oldest] == flags


@needs_shared
def test_since_windows_leave_out_undated_items_unless_asked(env):
    window = _search_json(env, "--since", "7d", "-n", "500")
    assert window and not any(h["date_inferred"] for h in window)
    assert not any(h["feed_id"] in UNDATED_FEEDS for h in window)
    wide = _search_json(env, "--since", "7d", "--include-undated", "-n", "500")
    assert {h["feed_id"] for h in wide} >= set(UNDATED_FEEDS)
    st = json.loads(_invoke(env, "stats", "--since", "7d", "--json").output)
    assert st["total"] == len(window) and "JT" not in st["by_source"] and "AIF" not in st["by_source"]
    assert st["undated_left_out"] == len(wide) - len(window) >= 135
    table = _invoke(env, "stats", "--since", "7d")
    assert f"{len(wide) - len(window)} item(s) whose feed gave no date left out" in table.output
    st_all = json.loads(_invoke(env, "stats", "--since", "7d", "--include-undated", "--json").output)
    assert st_all["total"] == len(wide) and st_all["by_source"]["JT"] == 118
    # without a window nothing is left out
    assert json.loads(_invoke(env, "stats", "--json").output)["total"] == len(_search_json(env, "-n", "500"))


@needs_shared
def test_show_and_search_table_mark_an_inferred_date(env, monkeypatch):
    import pipeline.commands.core as core

    jt = next(h for h in _search_json(env, "-n", "500") if h["feed_id"] == "jt")
    res = _invoke(env, "show", jt["id"])
    assert "published:" in res.output and "(inferred: the feed gave no date; time first seen)" in res.output
    assert json.loads(_invoke(env, "show", jt["id"], "--json").output)["date_inferred"] is True
    buf = io.StringIO()
    monkeypatch.setattr(core, "console", Console(file=buf, width=100))
    _invoke(env, "search", "-s", "JT", "-n", "2")
    assert "*" in buf.getvalue() and "date inferred: the feed gave none" in buf.getvalue()


@needs_shared
@pytest.mark.parametrize("name", sorted(UNDATED_FEEDS.values()))
def test_feeds_check_flags_a_feed_whose_items_are_all_undated(env, name):
    res = _invoke(env, "feeds", "check", str(SHARED_FEEDS / name), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["all_undated"] is True
    assert any("no item of this feed has a usable date" in w for w in out["warnings"])
    dated = json.loads(_invoke(env, "feeds", "check", str(FEED_FIXTURES / "en_news.xml"), "--json").output)
    assert dated["all_undated"] is False
    assert not any("usable date" in w for w in dated["warnings"])


def test_kibana_saved_searches_show_date_inferred_and_list_undated_last():
    from pipeline.config import load_topics
    from pipeline.kibana import topic_search

    lines = [json.loads(line) for line in (ROOT / "config" / "kibana" / "mediamon.ndjson").read_text().splitlines()
             if line.strip()]
    searches = [o for o in lines if o["type"] == "search" and "published_at" in json.dumps(o["attributes"]["sort"])]
    searches += [topic_search(t, "mediamon") for t in load_topics(ROOT / "config")]
    assert searches
    for o in searches:
        assert "date_inferred" in o["attributes"]["columns"]
        assert o["attributes"]["sort"][0] == ["date_inferred", "asc"]


# --- the embedded store: undated last, cursor paging across the boundary, schema 7 -----------------

def _art(i: int, *, days: int, inferred: bool):
    from datetime import datetime, timedelta, timezone

    from pipeline.models import Article

    t0 = datetime(2026, 11, 20, tzinfo=timezone.utc)
    return Article(id=f"id{i:03d}", feed_id="f", url=None, canonical_url=None, guid=None, source="S",
                   feed_language="en", language="en", title=f"Item {i}", summary="", published_at=t0 + timedelta(days=days),
                   fetched_at=t0, content_hash=f"h{i}", date_inferred=inferred)


def test_sqlite_pages_dated_then_undated_by_offset_and_by_cursor(tmp_path):
    from pipeline.store.base import SearchRequest
    from pipeline.store.sqlite import SQLiteStore

    s = SQLiteStore(tmp_path / "s.sqlite3")
    try:
        # undated items carry the newest stamps (the time first seen), dated ones are older
        s.index([_art(i, days=-i, inferred=False) for i in range(1, 6)] +
                [_art(10 + i, days=5 + i, inferred=True) for i in range(1, 5)])
        expect = ["id001", "id002", "id003", "id004", "id005", "id014", "id013", "id012", "id011"]
        assert [a.id for a in s.search(SearchRequest(limit=50)).hits] == expect
        got, cursor = [], None
        while True:
            page = s.search(SearchRequest(limit=2, cursor=cursor))
            got += [a.id for a in page.hits]
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        assert got == expect
        assert [[a.id for a in s.search(SearchRequest(limit=3, offset=o)).hits] for o in (0, 3, 6)] == \
            [expect[0:3], expect[3:6], expect[6:9]]
        assert [a.id for a in s.search(SearchRequest(limit=50, sort="oldest")).hits] == \
            expect[4::-1] + expect[:4:-1]
        windowed = s.search(SearchRequest(limit=50, include_undated=False))
        assert windowed.total == 5 and [a.id for a in windowed.hits] == expect[:5]
    finally:
        s.close()


def test_a_schema_6_store_gets_the_date_inferred_column_filled(tmp_path):
    import sqlite3

    from pipeline.store.base import SearchRequest
    from pipeline.store.sqlite import MIGRATIONS, SQLiteStore

    path = tmp_path / "v6.sqlite3"
    s = SQLiteStore(path)
    s.index([_art(1, days=0, inferred=False), _art(2, days=3, inferred=True)])
    s.close()
    db = sqlite3.connect(path, isolation_level=None)  # back to schema 6, as written by the previous version
    db.executescript("BEGIN; DROP INDEX articles_undated; ALTER TABLE articles DROP COLUMN date_inferred;"
                     "DROP INDEX articles_version; ALTER TABLE articles DROP COLUMN guid;"  # schema 8 (issue 16)
                     "PRAGMA user_version=6; COMMIT;")
    db.close()
    assert len(MIGRATIONS) >= 7
    s = SQLiteStore(path)
    try:
        assert s.connection.execute("SELECT id, date_inferred FROM articles ORDER BY id").fetchall() == \
            [("id001", 0), ("id002", 1)]
        assert [a.id for a in s.search(SearchRequest()).hits] == ["id001", "id002"]
    finally:
        s.close()


def test_the_email_says_an_inferred_date_is_the_time_first_seen(tmp_path):
    """The email is one of the places an inferred date must be visible (text and HTML parts)."""
    from datetime import datetime, timezone

    from pipeline.alerts.render import build_message, group_stories
    from pipeline.config import AlertConfig

    from .conftest import make_settings

    rule = AlertConfig(id="r", query="Item", recipients=["analyst@example.org"])
    msg = build_message(rule, group_stories([_art(1, days=0, inferred=True)]), settings=make_settings(tmp_path),
                        now=datetime(2026, 11, 28, tzinfo=timezone.utc))
    parts = [p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"]
    assert len(parts) == 2 and all("feed gave no date; time first seen" in p for p in parts)
    dated = build_message(rule, group_stories([_art(2, days=0, inferred=False)]), settings=make_settings(tmp_path),
                          now=datetime(2026, 11, 28, tzinfo=timezone.utc))
    assert "feed gave no date" not in dated.as_string()


def test_known_published_at_is_none_for_an_inferred_date():
    from pipeline.undated import all_undated_warning, known_published_at

    dated, undated = _art(1, days=0, inferred=False), _art(2, days=0, inferred=True)
    assert known_published_at(dated) == dated.published_at and known_published_at(undated) is None
    assert all_undated_warning([undated, undated]) and all_undated_warning([undated, dated]) is None
    assert all_undated_warning([]) is None


def test_elasticsearch_finds_a_short_id_with_a_prefix_query_on_the_keyword_id():
    from pipeline.store.elasticsearch import ElasticsearchStore

    from .test_es_template import mapped_field

    body = ElasticsearchStore(client=None).build_ids_with_prefix("d901aa90", 2)
    assert body["query"] == {"prefix": {"id": "d901aa90"}} and body["size"] == 2
    assert mapped_field("id")["type"] == "keyword"


def test_topics_explain_a_miss_shows_the_failed_branches_short(env):
    hit = next(h for h in _search_json(env, "-n", "500") if "nuclear_weapons" not in h["topics"])
    res = _invoke(env, "topics", "explain", "nuclear_weapons", hit["id"])
    assert res.exit_code == 0 and "no match" in res.output
    assert "none of its" in res.output and "alternatives matched" in res.output
    assert len(res.output.splitlines()) < 15
    full = _invoke(env, "topics", "explain", "nuclear_weapons", hit["id"], "--all")
    assert len(full.output.splitlines()) > 50
