"""Issue 18 ("read and explain", "dates you can trust"): `mediamon show`, `topics explain ID`,
`mediamon search` output formats, sort and paging, and inferred dates on the CLI.

One store is built per module by `mediamon run` over the test fixtures and, when ../shared is
present, two real feeds that give no dates (Japan Times 2017, AiF 2006)."""

from __future__ import annotations

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
    clause = next(c for c in topic["clauses"] if c["clause"] == "missile*")
    assert clause["terms"] == ["missiles", "missile"] and clause["matched_by"] == "prefix"
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
    assert "MATCH" in res.output and ORESHNIK_EN in res.output and "missiles, missile" in res.output
    assert "Iskander" not in res.output  # an alternative that did not decide the match
    assert "--all" in res.output
    full = _invoke(env, "topics", "explain", "missile_deployment", aid, "--all")
    assert full.exit_code == 0 and "Iskander" in full.output
    d = json.loads(_invoke(env, "topics", "explain", "missile_deployment", aid, "--json").output)
    assert d["matched"] and d["article_id"] == aid
    assert {c["clause"] for c in d["deciding"]} >= {"Oreshnik", "missile*"}


def test_topics_explain_needs_an_id_or_text_and_a_known_id(env):
    res = _invoke(env, "topics", "explain", "missile_deployment")
    assert res.exit_code == 2 and "either an article id or --text" in res.output
    res = _invoke(env, "topics", "explain", "missile_deployment", "nope")
    assert res.exit_code == 1 and "no stored article with id nope" in res.output
