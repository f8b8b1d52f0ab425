"""The CLI: run / search / stats / feeds, help texts, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import typer
from typer.testing import CliRunner

from pipeline.cli import app

from .conftest import FEED_FIXTURES, write_feeds_yaml

runner = CliRunner()


def _env(tmp_path):
    cfg = tmp_path / "config"
    cfg.mkdir(exist_ok=True)
    return {"MEDIAMON_CONFIG_DIR": str(cfg), "MEDIAMON_DATA_DIR": str(tmp_path / "data"),
            "MEDIAMON_TRANSLATION_BACKEND": "none", "MEDIAMON_ALLOW_PRIVATE_NETWORKS": "true"}


def _all_commands(group: typer.Typer, prefix=()):
    click_group = typer.main.get_command(group)

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, path + (name,))
        else:
            yield path

    yield from walk(click_group, prefix)


def test_every_command_has_help_with_an_example():
    paths = list(_all_commands(app))
    assert ("run",) in paths and ("search",) in paths and ("feeds", "list") in paths
    for path in paths:
        res = runner.invoke(app, [*path, "--help"])
        assert res.exit_code == 0, path
        assert "Example" in res.output, f"mediamon {' '.join(path)} --help has no example"


def test_run_json_search_stats_feeds(tmp_path):
    env = _env(tmp_path)
    write_feeds_yaml(tmp_path / "config", [
        {"id": "ru", "url": str(FEED_FIXTURES / "ru_news.xml"), "source": "RU Example", "language": "ru"},
        {"id": "en", "url": str(FEED_FIXTURES / "en_news.xml"), "source": "EN Example", "language": "en"},
        {"id": "gone", "url": str(tmp_path / "missing.xml"), "source": "Missing"}])
    res = runner.invoke(app, ["run", "--json"], env=env)
    assert res.exit_code == 0, res.output
    counters = json.loads(res.output.strip().splitlines()[-1])
    for key in ("feeds", "fetched", "not_modified", "failed_feeds", "items_seen", "new", "duplicates",
                "indexed", "errors"):
        assert key in counters
    assert counters["feeds"] == 3 and counters["failed_feeds"] == 1 and counters["new"] == 7

    res = runner.invoke(app, ["search", "ракета", "--json"], env=env)
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output)
    assert {h["title"] for h in hits} >= {"ПВО сбили восемь ракет над Черным морем"}
    assert set(hits[0]) >= {"id", "title", "title_en", "source", "language", "published_at", "topics", "url",
                            "date_inferred", "snippet", "matched_terms"}

    res = runner.invoke(app, ["search", "missiles", "--language", "en", "--since", "2026-11-01", "--json"], env=env)
    titles = {h["title"] for h in json.loads(res.output)}
    assert "Russia says Oreshnik missiles will be stationed in Belarus" in titles
    assert all(h["language"] == "en" for h in json.loads(res.output))

    res = runner.invoke(app, ["search", "title:(", "--json"], env=env)
    assert res.exit_code == 2 and "position" in res.output

    res = runner.invoke(app, ["stats", "--json"], env=env)
    st = json.loads(res.output)
    assert st["total"] == 7 and st["by_language"] == {"ru": 4, "en": 3}

    res = runner.invoke(app, ["feeds", "list", "--json"], env=env)
    rows = [json.loads(line) for line in res.output.splitlines()]
    gone = next(r for r in rows if r["id"] == "gone")
    assert gone["last_error"] and gone["failures"] == 1 and gone["backoff_until"]

    res = runner.invoke(app, ["run"], env=env)
    assert res.exit_code == 0 and "not_modified" in res.output


def test_feeds_check_local_and_broken(tmp_path):
    env = _env(tmp_path)
    res = runner.invoke(app, ["feeds", "check", str(FEED_FIXTURES / "ru_cp1251_labelled_utf8.xml"), "--json"],
                        env=env)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert len(out["items"]) == 2 and any("detected" in w for w in out["warnings"])
    bad = tmp_path / "bad.xml"
    bad.write_text("<html>nope</html>")
    res = runner.invoke(app, ["feeds", "check", str(bad)], env=env)
    assert res.exit_code == 1 and "error" in res.output


def test_invalid_config_exits_2_naming_file_entry_field(tmp_path):
    env = _env(tmp_path)
    (tmp_path / "config" / "feeds.yaml").write_text("feeds:\n  - {id: x, url: 'https://x'}\n")
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run"], env={**env, "PATH": ""},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "feeds.yaml" in proc.stderr and "entry 1 (id 'x')" in proc.stderr and "'source'" in proc.stderr


def test_log_json_gives_one_json_object_per_line(tmp_path):
    """MEDIAMON_LOG_JSON (Settings.log_json) switches the CLI's log lines to JSON."""
    env = _env(tmp_path)
    write_feeds_yaml(tmp_path / "config", [
        {"id": "en", "url": str(FEED_FIXTURES / "en_news.xml"), "source": "EN Example", "language": "en"}])
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--json", "-v"],
                          env={**env, "MEDIAMON_LOG_JSON": "true"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    done = [r for r in records if r["event"] == "cycle_done"]
    assert len(done) == 1 and done[0]["level"] == "info" and done[0]["feeds"] == 1
