"""``mediamon run``: exit codes cron and Airflow can act on, and a summary that leads with failures
(issue 18)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.exitcodes import ALL_FEEDS_FAILED, MAIL_DEFERRED, OK

from .conftest import FEED_FIXTURES, write_feeds_yaml

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_consoles(monkeypatch):
    from pipeline.commands import _common

    for c in (_common.console, _common.err_console):
        monkeypatch.setattr(c, "_width", 1000)


def _env(tmp_path, **extra):
    cfg = tmp_path / "config"
    cfg.mkdir(exist_ok=True)
    env = {"MEDIAMON_CONFIG_DIR": str(cfg), "MEDIAMON_DATA_DIR": str(tmp_path / "data"),
           "MEDIAMON_TRANSLATION_BACKEND": "none", "MEDIAMON_ALLOW_PRIVATE_NETWORKS": "true"}
    env.update(extra)
    return env


def test_every_due_feed_failed_exits_3_and_leads_with_the_failures(tmp_path):
    env = _env(tmp_path)
    write_feeds_yaml(tmp_path / "config", [
        {"id": "gone1", "url": str(tmp_path / "missing1.xml"), "source": "Missing 1"},
        {"id": "gone2", "url": str(tmp_path / "missing2.xml"), "source": "Missing 2"}])
    res = runner.invoke(app, ["run"], env=env)
    assert res.exit_code == ALL_FEEDS_FAILED, res.output
    assert res.output.index("2 of 2 due feed(s) failed") < res.output.index("mediamon run")
    assert "every due feed failed" in res.output
    res = runner.invoke(app, ["run", "--json", "--force"], env=env)
    assert res.exit_code == ALL_FEEDS_FAILED
    assert json.loads(res.stdout.strip().splitlines()[-1])["failed_feeds"] == 2


def test_some_feeds_failed_exits_0_and_the_table_shows_only_non_zero_counters(tmp_path):
    env = _env(tmp_path)
    write_feeds_yaml(tmp_path / "config", [
        {"id": "ru", "url": str(FEED_FIXTURES / "ru_news.xml"), "source": "RU", "language": "ru"},
        {"id": "gone", "url": str(tmp_path / "missing.xml"), "source": "Missing"}])
    res = runner.invoke(app, ["run"], env=env)
    assert res.exit_code == OK, res.output
    assert res.output.index("1 of 2 due feed(s) failed") < res.output.index("mediamon run")
    rows = {line.split("│")[1].strip() for line in res.output.splitlines() if line.count("│") == 3}
    assert {"feeds", "due", "failed_feeds", "new", "indexed"} <= rows
    assert not rows & {"not_modified", "duplicates", "index_failed", "skipped"}
    # --json keeps every counter, zeros included
    res = runner.invoke(app, ["run", "--json", "--force"], env=env)
    counters = json.loads(res.stdout.strip().splitlines()[-1])
    assert counters["index_failed"] == 0 and "not_modified" in counters


def test_store_unreachable_exits_3(tmp_path):
    env = _env(tmp_path)
    write_feeds_yaml(tmp_path / "config", [{"id": "ru", "url": str(FEED_FIXTURES / "ru_news.xml"), "source": "RU"}])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mediamon.sqlite3").mkdir()  # sqlite cannot open a directory
    res = runner.invoke(app, ["run"], env=env)
    assert res.exit_code == ALL_FEEDS_FAILED, res.output
    assert "store unreachable" in res.output


def _smtp_setup(tmp_path, smtp_server, rule: dict) -> dict:
    """One Russian fixture feed, one alert ``rule`` mailing to the test SMTP server (one attempt,
    no wait); the fixture's old items are within the first-run look-back.  Returns the env."""
    env = _env(tmp_path, MEDIAMON_SMTP_HOST="127.0.0.1", MEDIAMON_SMTP_PORT=str(smtp_server.port),
               MEDIAMON_SMTP_RETRY_ATTEMPTS="1", MEDIAMON_SMTP_RETRY_WAIT="0",
               MEDIAMON_ALERT_FIRST_RUN_LOOKBACK=str(3650 * 86400))
    write_feeds_yaml(tmp_path / "config", [
        {"id": "ru", "url": str(FEED_FIXTURES / "ru_news.xml"), "source": "RU", "language": "ru"}])
    (tmp_path / "config" / "alerts.yaml").write_text(yaml.safe_dump({"alerts": [rule]}))
    return env


def test_deferred_alert_email_exits_4_naming_the_smtp_host_and_port(tmp_path, smtp_server):
    env = _smtp_setup(tmp_path, smtp_server,
                      {"id": "oreshnik", "query": "Орешник", "recipients": ["analyst@example.org"]})
    smtp_server.data_replies = ["451 4.3.0 try again later"] * 5
    res = runner.invoke(app, ["run"], env=env)
    assert res.exit_code == MAIL_DEFERRED, res.output
    assert f"SMTP server 127.0.0.1:{smtp_server.port}" in res.output
    assert res.output.index("mail deferred") < res.output.index("mediamon run")
    res = runner.invoke(app, ["run", "--json"], env=env)
    assert res.exit_code == MAIL_DEFERRED and f"127.0.0.1:{smtp_server.port}" in res.stderr
    # the server accepts again: delivered, exit 0
    smtp_server.data_replies = []
    res = runner.invoke(app, ["run", "--json"], env=env)
    assert res.exit_code == OK, res.output
    assert len(smtp_server.messages) == 1


def test_deferred_digest_exits_4_naming_the_smtp_host_and_port(tmp_path, smtp_server):
    env = _smtp_setup(tmp_path, smtp_server, {"id": "daily", "query": "Орешник",
                                              "recipients": ["analyst@example.org"], "mode": "digest"})
    assert runner.invoke(app, ["run"], env=env).exit_code == OK  # digests are queued, not sent, by run
    smtp_server.data_replies = ["451 4.3.0 try again later"]
    res = runner.invoke(app, ["alerts", "digest"], env=env)
    assert res.exit_code == MAIL_DEFERRED, res.output
    assert f"deferred by the SMTP server 127.0.0.1:{smtp_server.port}" in res.output
    res = runner.invoke(app, ["alerts", "digest"], env=env)
    assert res.exit_code == OK and len(smtp_server.messages) == 1
