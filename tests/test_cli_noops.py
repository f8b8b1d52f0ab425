"""No silent no-ops, no tracebacks (issue 18): config mistakes exit 2, read-only commands create
nothing, filters that cannot match are named, bad input is reported line by line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.exitcodes import ERROR, OK, USAGE

from .conftest import FEED_FIXTURES, copy_default_topics, write_feeds_yaml

runner = CliRunner()


def _out(res) -> str:
    return res.output


@pytest.fixture(autouse=True)
def _wide_consoles(monkeypatch):
    """No line breaks from rich at 80 columns inside the messages under test."""
    from pipeline.commands import _common

    for c in (_common.console, _common.err_console):
        monkeypatch.setattr(c, "_width", 1000)


def _env(tmp_path):
    cfg = tmp_path / "config"
    cfg.mkdir(exist_ok=True)
    return {"MEDIAMON_CONFIG_DIR": str(cfg), "MEDIAMON_DATA_DIR": str(tmp_path / "data"),
            "MEDIAMON_TRANSLATION_BACKEND": "none", "MEDIAMON_ALLOW_PRIVATE_NETWORKS": "true"}


def _stored(tmp_path) -> dict:
    env = _env(tmp_path)
    write_feeds_yaml(tmp_path / "config", [
        {"id": "ru", "url": str(FEED_FIXTURES / "ru_news.xml"), "source": "RU Example", "language": "ru"},
        {"id": "en", "url": str(FEED_FIXTURES / "en_news.xml"), "source": "EN Example", "language": "en"}])
    res = runner.invoke(app, ["run", "--json"], env=env)
    assert res.exit_code == OK, _out(res)
    return env


@pytest.mark.parametrize("text, expected", [
    ("feed:\n  - {id: a, url: 'http://example.org/rss', source: A}\n", "unknown top-level key(s) 'feed'"),
    ("", "the file is empty"),
    ("feeds:\n", "'feeds:' is empty"),
])
def test_misspelt_or_empty_feeds_yaml_is_a_config_error(tmp_path, text, expected):
    env = _env(tmp_path)
    (tmp_path / "config" / "feeds.yaml").write_text(text, encoding="utf-8")
    for cmd in (["run"], ["feeds", "list"]):
        res = runner.invoke(app, cmd, env=env)
        assert res.exit_code == USAGE, (cmd, _out(res))
        assert "feeds.yaml" in _out(res) and expected in _out(res)
    assert not (tmp_path / "data").exists()


def test_misspelt_top_level_key_in_alerts_yaml_is_named(tmp_path):
    env = _env(tmp_path)
    write_feeds_yaml(tmp_path / "config", [{"id": "a", "url": str(FEED_FIXTURES / "en_news.xml"), "source": "A"}])
    (tmp_path / "config" / "alerts.yaml").write_text("alert:\n  - {id: x, query: a, recipients: [a@b.c]}\n")
    res = runner.invoke(app, ["run"], env=env)
    assert res.exit_code == USAGE and "alerts.yaml" in _out(res) and "'alert'" in _out(res)


def test_missing_feeds_yaml_is_a_config_error(tmp_path):
    res = runner.invoke(app, ["run"], env=_env(tmp_path))
    assert res.exit_code == USAGE and "feeds.yaml: file not found" in _out(res)


@pytest.mark.parametrize("cmd", [["search", "x"], ["stats"]])
def test_read_only_commands_create_no_data_dir_and_say_the_store_is_missing(tmp_path, cmd):
    env = _env(tmp_path)
    res = runner.invoke(app, cmd, env=env)
    assert res.exit_code == ERROR, _out(res)
    assert "no mediamon store" in _out(res) and "mediamon run" in _out(res)
    assert not (tmp_path / "data").exists()
    # an existing but empty data dir: still no store file created
    (tmp_path / "data").mkdir()
    res = runner.invoke(app, cmd, env=env)
    assert res.exit_code == ERROR and "no mediamon store" in _out(res)
    assert list((tmp_path / "data").iterdir()) == []


def test_feeds_list_before_the_first_run_lists_config_and_creates_nothing(tmp_path):
    env = _env(tmp_path)
    write_feeds_yaml(tmp_path / "config", [{"id": "a", "url": str(FEED_FIXTURES / "en_news.xml"), "source": "A"}])
    res = runner.invoke(app, ["feeds", "list", "--json"], env=env)
    assert res.exit_code == OK, _out(res)
    row = json.loads([line for line in res.output.splitlines() if line.startswith("{")][0])
    assert row["id"] == "a" and row["last_success"] is None
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("cmd", [["search", "x"], ["stats"], ["run"]])
def test_data_dir_that_is_a_file_is_one_clear_line(tmp_path, cmd):
    env = _env(tmp_path)
    write_feeds_yaml(tmp_path / "config", [{"id": "a", "url": str(FEED_FIXTURES / "en_news.xml"), "source": "A"}])
    (tmp_path / "data").write_text("not a directory")
    res = runner.invoke(app, cmd, env=env)
    assert res.exit_code != OK
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "is a file, not a directory" in _out(res)


def test_unknown_language_and_topic_are_usage_errors_naming_valid_values(tmp_path):
    env = _stored(tmp_path)
    res = runner.invoke(app, ["search", "", "-l", "russian"], env=env)
    assert res.exit_code == USAGE and "russian" in _out(res) and "en, ru" in _out(res)
    res = runner.invoke(app, ["search", "", "-t", "missile"], env=env)
    assert res.exit_code == USAGE and "unknown topic 'missile'" in _out(res)


def test_unknown_source_and_absent_language_warn_with_valid_values(tmp_path):
    env = _stored(tmp_path)
    res = runner.invoke(app, ["search", "", "-s", "Lenta", "--json"], env=env)
    assert res.exit_code == OK
    assert "no stored item has source 'Lenta'" in _out(res) and "EN Example, RU Example" in _out(res)
    res = runner.invoke(app, ["search", "", "-s", "ru example", "--json"], env=env)
    assert "did you mean 'RU Example'" in _out(res)
    res = runner.invoke(app, ["search", "", "-l", "de"], env=env)
    assert res.exit_code == OK and "no stored item has language 'de'" in _out(res)
    # a search that finds something prints no warning
    res = runner.invoke(app, ["search", "", "-s", "RU Example", "--json"], env=env)
    assert res.exit_code == OK and "warning" not in _out(res) and json.loads(res.stdout)


def test_since_after_until_is_an_empty_window_usage_error(tmp_path):
    env = _stored(tmp_path)
    res = runner.invoke(app, ["search", "", "--since", "2026-11-20", "--until", "2026-11-10"], env=env)
    assert res.exit_code == USAGE and "window is empty" in _out(res)


def test_classify_missing_input_file_is_a_usage_error_not_a_traceback(tmp_path):
    env = _env(tmp_path)
    copy_default_topics(tmp_path / "config")
    res = runner.invoke(app, ["classify", str(tmp_path / "nope.jsonl")], env=env)
    assert res.exit_code == USAGE, _out(res)
    assert "nope.jsonl" in _out(res) and "Traceback" not in _out(res)
    assert isinstance(res.exception, SystemExit)


def test_classify_reports_bad_lines_processes_the_rest_and_exits_non_zero(tmp_path):
    env = _env(tmp_path)
    copy_default_topics(tmp_path / "config")
    src = tmp_path / "items.jsonl"
    src.write_text('{"id": "1", "title": "Орешник в Белоруссии", "summary": ""}\n'
                   "{not json\n"
                   '["a list"]\n'
                   '{"title": "no id"}\n'
                   '{"id": "5", "title": "Putin on nuclear weapons", "summary": ""}\n', encoding="utf-8")
    res = runner.invoke(app, ["classify", str(src)], env=env)
    assert res.exit_code == ERROR, _out(res)
    ids = [json.loads(line)["id"] for line in res.stdout.splitlines() if line.startswith("{")]
    assert ids == ["1", "5"]
    for n in (2, 3, 4):
        assert f"line {n}:" in _out(res)
    assert "3 bad line(s)" in _out(res)


def test_alerts_list_and_test_are_read_only(tmp_path):
    env = _env(tmp_path)
    (tmp_path / "config" / "alerts.yaml").write_text(
        "alerts:\n  - {id: oreshnik, query: Oreshnik, recipients: [a@example.org]}\n")
    res = runner.invoke(app, ["alerts", "list", "--json"], env=env)
    assert res.exit_code == OK and json.loads(res.stdout)[0]["pending"] == 0
    res = runner.invoke(app, ["alerts", "test", "oreshnik"], env=env)
    assert res.exit_code == ERROR and "no mediamon store" in _out(res)
    assert not (tmp_path / "data").exists()
