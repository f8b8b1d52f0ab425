"""Issue 16, item 6: typed input that used to end in a traceback — far ``--since``/``--until``
(OverflowError) and a terminal's undecodable bytes in a query or filter (UnicodeEncodeError) —
is clamped or refused with a clear message, through the CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.store.sqlite import SQLiteStore

from .query_cases import make_article

runner = CliRunner()


@pytest.fixture
def env(tmp_path):
    cfg = tmp_path / "config"
    cfg.mkdir()
    with SQLiteStore(tmp_path / "data" / "mediamon.sqlite3") as store:
        store.index([make_article("a0", title="ракета", source="S")])  # published 2026-11-20
    return {"MEDIAMON_CONFIG_DIR": str(cfg), "MEDIAMON_DATA_DIR": str(tmp_path / "data"),
            "MEDIAMON_TRANSLATION_BACKEND": "none"}


@pytest.mark.parametrize("args", [
    ["--since", "999999999d"], ["--since", "99999999999999999999w"], ["--since", "9" * 5000 + "m"],
    ["--until", "9999-12-31T23:59:59-05:00"], ["--since", "0001-01-01T00:00:00+01:00"],
    ["--until", "9999-12-31"], ["--since", "1900-01-01"],
], ids=["999999999d", "20-digit-weeks", "5000-digit-minutes", "far-until-with-zone", "year-1-with-zone",
        "until-9999", "since-1900"])
def test_far_dates_are_clamped_not_a_traceback(env, args):
    res = runner.invoke(app, ["search", "ракета", "--json", *args], env=env)
    assert res.exit_code == 0, (res.output, res.exception)
    assert [h["id"] for h in json.loads(res.output.strip().splitlines()[-1])] == ["a0"]
    res = runner.invoke(app, ["stats", "--json", "--since", args[1]], env=env)
    assert res.exit_code == 0, (res.output, res.exception)


@pytest.mark.parametrize("query", ["source:\udcff", "title:\udcffab", "ракета AND source:S\udce2\udc80"])
def test_undecodable_bytes_in_a_query_are_a_clear_query_error(env, query):
    res = runner.invoke(app, ["search", query], env=env)
    assert res.exit_code == 2 and not isinstance(res.exception, UnicodeError), (res.output, res.exception)
    assert "not valid UTF-8" in res.output


@pytest.mark.parametrize("option", ["--source", "--language", "--topic"])
def test_undecodable_bytes_in_a_filter_are_a_usage_error(env, option):
    res = runner.invoke(app, ["search", "ракета", option, "S\udcff"], env=env)
    assert res.exit_code == 2 and not isinstance(res.exception, UnicodeError), (res.output, res.exception)
    assert "not valid UTF-8" in res.output
