"""First run of an alert rule (issue 18): a new store does not mail the feeds' backlog."""

from __future__ import annotations

import email
import json
from datetime import timedelta
from email import policy
from email.utils import format_datetime

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_alerts
from pipeline.exitcodes import OK
from pipeline.models import utcnow

from .conftest import write_feeds_yaml

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_consoles(monkeypatch):
    from pipeline.commands import _common

    for c in (_common.console, _common.err_console):
        monkeypatch.setattr(c, "_width", 1000)


def _rss(items: list[tuple[str, str, object]]) -> str:
    """items: (guid, title, published datetime or None for no date)."""
    out = ['<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'
           '<link>https://news.example/</link><description>d</description>']
    for guid, title, pub in items:
        date = f"<pubDate>{format_datetime(pub)}</pubDate>" if pub is not None else ""
        out.append(f"<item><title>{title}</title><link>https://news.example/{guid}</link>"
                   f"<guid>{guid}</guid><description>{title}</description>{date}</item>")
    out.append("</channel></rss>")
    return "".join(out)


def _setup(tmp_path, rule: dict):
    cfg = tmp_path / "config"
    cfg.mkdir(exist_ok=True)
    env = {"MEDIAMON_CONFIG_DIR": str(cfg), "MEDIAMON_DATA_DIR": str(tmp_path / "data"),
           "MEDIAMON_TRANSLATION_BACKEND": "none", "MEDIAMON_ALLOW_PRIVATE_NETWORKS": "true"}
    write_feeds_yaml(cfg, [{"id": "wire", "url": str(tmp_path / "feed.xml"), "source": "Wire", "language": "en"}])
    (cfg / "alerts.yaml").write_text(yaml.safe_dump({"alerts": [
        {"id": "oreshnik", "query": "Oreshnik", "recipients": ["analyst@example.org"], **rule}]}))
    return env


def _mailed_titles(tmp_path) -> list[set[str]]:
    """The titles in each outbox email, oldest email first."""
    out = []
    for f in sorted((tmp_path / "data" / "outbox").glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        msg = email.message_from_bytes(f.read_bytes(), policy=policy.default)
        text = msg.get_body(("plain",)).get_content()
        out.append({t for t in ("fresh", "backlog", "undated", "late", "later undated") if f"Oreshnik {t} " in text})
    return out


def test_first_run_mails_only_items_within_the_look_back_and_says_so(tmp_path):
    env = _setup(tmp_path, {})
    now = utcnow()
    (tmp_path / "feed.xml").write_text(_rss([
        ("1", "Oreshnik fresh item", now - timedelta(hours=2)),
        ("2", "Oreshnik backlog item", now - timedelta(days=400)),
        ("3", "Oreshnik undated item", None)]), encoding="utf-8")
    res = runner.invoke(app, ["run"], env=env)
    assert res.exit_code == OK, res.output
    assert "2 alert match(es) published before the rule's first run look-back (24 h" in res.output
    assert _mailed_titles(tmp_path) == [{"fresh"}]
    # stored and searchable all the same
    hits = json.loads(runner.invoke(app, ["search", "Oreshnik", "--json"], env=env).stdout)
    assert len(hits) == 3

    # the rule has now alerted: a new item counts, however old its date, and an undated one by its fetch time
    (tmp_path / "feed.xml").write_text(_rss([
        ("4", "Oreshnik late item", now - timedelta(days=3)),
        ("5", "Oreshnik later undated item", None)]), encoding="utf-8")
    res = runner.invoke(app, ["run", "--json", "--force"], env=env)
    counters = json.loads(res.stdout.strip().splitlines()[-1])
    assert counters.get("alert_backlog_skipped", 0) == 0 and counters["alert_items_sent"] == 2
    assert _mailed_titles(tmp_path)[1] == {"late", "later undated"}


def test_undated_items_wait_for_the_feeds_second_poll_not_for_the_rules_first_match(tmp_path):
    """An undated item is held back on its feed's first poll (its age is unknown: every item is
    first seen then); once the feed has been polled, an undated item that appears is new and is
    mailed by its fetch time, even for a rule that has never matched anything (before, such a rule
    stayed on its "first run" and held every undated item back until its first dated match)."""
    env = _setup(tmp_path, {})
    (tmp_path / "feed.xml").write_text(_rss([("0", "Weather report", None),
                                             ("3", "Oreshnik undated item", None)]), encoding="utf-8")
    res = runner.invoke(app, ["run", "--json"], env=env)
    counters = json.loads(res.stdout.strip().splitlines()[-1])
    assert counters["alert_backlog_skipped"] == 1 and counters.get("alert_items_sent", 0) == 0
    (tmp_path / "feed.xml").write_text(_rss([("0", "Weather report", None),
                                             ("5", "Oreshnik later undated item", None)]), encoding="utf-8")
    res = runner.invoke(app, ["run", "--json", "--force"], env=env)
    counters = json.loads(res.stdout.strip().splitlines()[-1])
    assert counters.get("alert_backlog_skipped", 0) == 0 and counters["alert_items_sent"] == 1
    assert _mailed_titles(tmp_path) == [{"later undated"}]


def test_look_back_is_configurable(tmp_path):
    env = _setup(tmp_path, {})
    env["MEDIAMON_ALERT_FIRST_RUN_LOOKBACK"] = str(3 * 86400)
    now = utcnow()
    (tmp_path / "feed.xml").write_text(_rss([
        ("1", "Oreshnik fresh item", now - timedelta(hours=30)),
        ("2", "Oreshnik backlog item", now - timedelta(days=5))]), encoding="utf-8")
    res = runner.invoke(app, ["run", "--json"], env=env)
    counters = json.loads(res.stdout.strip().splitlines()[-1])
    assert counters["alert_backlog_skipped"] == 1 and counters["alert_items_sent"] == 1


def test_since_on_the_rule_is_a_floor_on_every_run(tmp_path):
    now = utcnow()
    env = _setup(tmp_path, {"since": (now - timedelta(days=10)).date().isoformat()})
    env["MEDIAMON_ALERT_FIRST_RUN_LOOKBACK"] = str(3650 * 86400)  # the look-back alone would let all through
    (tmp_path / "feed.xml").write_text(_rss([
        ("1", "Oreshnik fresh item", now - timedelta(days=2)),
        ("2", "Oreshnik backlog item", now - timedelta(days=400))]), encoding="utf-8")
    runner.invoke(app, ["run"], env=env)
    (tmp_path / "feed.xml").write_text(_rss([
        ("4", "Oreshnik late item", now - timedelta(days=30))]), encoding="utf-8")
    res = runner.invoke(app, ["run", "--json", "--force"], env=env)
    assert json.loads(res.stdout.strip().splitlines()[-1])["alert_backlog_skipped"] == 1
    assert _mailed_titles(tmp_path) == [{"fresh"}]


def test_since_is_validated_and_read_as_utc(tmp_path):
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump({"alerts": [
        {"id": "r", "query": "x", "recipients": ["a@b.example"], "since": "2026-11-01"}]}))
    [rule] = load_alerts(tmp_path)
    assert rule.since is not None and rule.since.isoformat() == "2026-11-01T00:00:00+00:00"
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump({"alerts": [
        {"id": "r", "query": "x", "recipients": ["a@b.example"], "since": "last week"}]}))
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="entry 1 .id 'r'.: field 'since'"):
        load_alerts(tmp_path)
