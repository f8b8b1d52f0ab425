"""Alert emails that tell the truth (issue 18): the translation state per item, times without
"UTC (UTC)", an unsubscribe path that works (the mute list, SMTP and outbox), and one log line
when the translation model is unavailable."""

from __future__ import annotations

import email
import logging
from collections import Counter
from datetime import datetime, timedelta, timezone
from email import policy

from typer.testing import CliRunner

from pipeline.alerts import alert_stage, build_message, group_stories, queue_matches
from pipeline.alerts.mutes import load_mutes, mute
from pipeline.cli import app
from pipeline.config import AlertConfig
from pipeline.cycle import run_cycle
from pipeline.models import Article, Translation
from pipeline.store.sqlite import SQLiteStore

from .conftest import FEED_FIXTURES, make_settings, write_feeds_yaml

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
runner = CliRunner()


def _art(i: int, title: str, *, language: str = "ru", title_en: str | None = None,
         translation: Translation | None = None) -> Article:
    return Article(id=f"a{i}", feed_id="f", url=f"https://news.example/{i}", canonical_url=None, guid=None,
                   source="Outlet", feed_language=language, language=language, title=title, summary="",
                   published_at=NOW - timedelta(hours=1), fetched_at=NOW, content_hash=f"h{i}", title_en=title_en,
                   translation=translation or Translation())


def _rule(**kw) -> AlertConfig:
    base = dict(id="oreshnik", query="Орешник OR Oreshnik", recipients=("a@example.org", "b@example.org"))
    base.update(kw)
    return AlertConfig(**base)


def _text(msg) -> str:
    return msg.get_body(("plain",)).get_content().replace("\r\n", "\n")


def _html(msg) -> str:
    return msg.get_body(("html",)).get_content().replace("\r\n", "\n")


def test_no_duplicated_utc_when_the_rule_has_no_timezone(tmp_path):
    settings = make_settings(tmp_path)
    msg = build_message(_rule(), group_stories([_art(1, "Орешник", title_en="Oreshnik")], {}),
                        settings=settings, now=NOW)
    for body in (_text(msg), _html(msg)):
        assert "UTC (2026" not in body and "UTC / 2026" not in body and "UTC &middot; 2026" not in body
        assert "2026-11-23 11:00 UTC" in body
    msg = build_message(_rule(timezone="Europe/Minsk"), group_stories([_art(1, "Орешник", title_en="Oreshnik")], {}),
                        settings=settings, now=NOW)
    assert "14:00 +03 Europe/Minsk / 2026-11-23 11:00 UTC" in _text(msg)


def test_email_says_per_item_when_the_translation_is_unavailable(tmp_path):
    settings = make_settings(tmp_path)
    stories = group_stories([
        _art(1, "Орешник в Беларуси", translation=Translation(status="unavailable", error="no model")),
        _art(2, "Орешник снова", title_en="Oreshnik again", translation=Translation(status="ok")),
        _art(3, "Oreshnik in English", language="en", title_en="Oreshnik in English",
             translation=Translation(status="skipped"))], {})
    msg = build_message(_rule(), stories, settings=settings, now=NOW)
    text, html = _text(msg), _html(msg)
    assert text.count("English: (translation unavailable") == 1
    assert "English: Oreshnik again" in text
    assert html.count("translation unavailable") == 1


def test_footer_and_list_unsubscribe_describe_the_mute_path(tmp_path):
    settings = make_settings(tmp_path, smtp_from="desk@example.org")
    msg = build_message(_rule(), group_stories([_art(1, "Орешник")], {}), settings=settings, now=NOW)
    assert msg["List-Unsubscribe"] == "<mailto:desk@example.org?subject=unsubscribe%20oreshnik>"
    assert 'subject "unsubscribe oreshnik"' in _text(msg)
    assert "mediamon alerts mute YOUR-ADDRESS --rule oreshnik" in " ".join(_text(msg).split())
    assert "mediamon alerts mute YOUR-ADDRESS --rule oreshnik" in " ".join(_html(msg).split())


def _deliver(settings, articles, rules, now=NOW):
    with SQLiteStore(settings.store_path) as store:
        counts = Counter(queue_matches(articles, store=store, rules=rules, now=now))
        store.index(articles)
        counts.update(alert_stage(settings=settings, store=store, rules=rules, now=now))
        return counts, store.alert_summary()


def test_muted_recipient_is_left_out_over_smtp(tmp_path, smtp_server):
    settings = make_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=smtp_server.port,
                             smtp_from="desk@example.org", smtp_retry_wait=0.0)
    mute(settings, "B@Example.org", "oreshnik")
    mute(settings, "a@example.org", "other-rule")  # another rule's mute does not apply
    counts, _ = _deliver(settings, [_art(1, "Орешник")], [_rule()])
    assert counts["alert_emails_sent"] == 1
    [(_, rcpts, msg)] = smtp_server.messages
    assert rcpts == ["a@example.org"] and msg["To"] == "a@example.org"


def test_every_recipient_muted_sends_nothing_and_marks_items_failed(tmp_path):
    settings = make_settings(tmp_path)  # outbox
    mute(settings, "a@example.org", None)
    mute(settings, "b@example.org", None)
    counts, summary = _deliver(settings, [_art(1, "Орешник")], [_rule()])
    assert counts["alert_emails_muted"] == 1 and counts.get("alert_emails_sent", 0) == 0
    assert not list((tmp_path / "data" / "outbox").glob("*.eml"))
    assert summary["oreshnik"].get("failed") == 1


def test_unreadable_mute_list_mails_nobody(tmp_path):
    settings = make_settings(tmp_path)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "mutes.json").write_text("{not json")
    counts, summary = _deliver(settings, [_art(1, "Орешник")], [_rule()])
    assert counts["alert_errors"] == 1 and counts.get("alert_emails_sent", 0) == 0
    assert summary["oreshnik"].get("pending") == 1  # kept for when the file is fixed


def test_alerts_mute_unmute_mutes_commands(tmp_path):
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "alerts.yaml").write_text("alerts:\n  - {id: oreshnik, query: Oreshnik, recipients: [a@example.org]}\n")
    env = {"MEDIAMON_CONFIG_DIR": str(cfg), "MEDIAMON_DATA_DIR": str(tmp_path / "data")}
    res = runner.invoke(app, ["alerts", "mute", "A@example.org", "--rule", "oreshnik"], env=env)
    assert res.exit_code == 0 and "muted for rule oreshnik" in res.output
    res = runner.invoke(app, ["alerts", "mute", "a@example.org", "--rule", "nope"], env=env)
    assert res.exit_code == 2 and "oreshnik" in res.output
    res = runner.invoke(app, ["alerts", "mute", "not-an-address"], env=env)
    assert res.exit_code == 2
    res = runner.invoke(app, ["alerts", "mutes", "--json"], env=env)
    assert '"email": "a@example.org"' in res.output and '"rule": "oreshnik"' in res.output
    settings = make_settings(tmp_path)
    assert [(m.email, m.rule) for m in load_mutes(settings)] == [("a@example.org", "oreshnik")]
    res = runner.invoke(app, ["alerts", "unmute", "a@example.org"], env=env)
    assert res.exit_code == 0 and load_mutes(settings) == []
    res = runner.invoke(app, ["alerts", "unmute", "a@example.org"], env=env)
    assert res.exit_code == 1 and "was not muted" in res.output


def test_unavailable_model_is_logged_once_per_cycle_however_many_batches(tmp_path, caplog):
    from pipeline.translate.stage import clear_translator_cache

    clear_translator_cache()
    settings = make_settings(tmp_path, translation_backend="transformers",
                             translation_model=str(tmp_path / "no-such-model"), cycle_batch_items=1)
    write_feeds_yaml(settings.config_dir, [  # two feeds: two batches with items to translate
        {"id": "ru", "url": str(FEED_FIXTURES / "ru_news.xml"), "source": "RU", "language": "ru"},
        {"id": "ru2", "url": str(FEED_FIXTURES / "ru_cp1251.xml"), "source": "RU 2", "language": "ru"}])
    with caplog.at_level(logging.DEBUG, logger="mediamon"):
        report = run_cycle(settings)
    errors = [r for r in caplog.records if r.getMessage() == "translation_unavailable" and r.levelno >= logging.ERROR]
    assert report.counters["translation_unavailable"] >= 2
    assert len(errors) == 1
    clear_translator_cache()


def test_outbox_email_of_a_run_without_model_says_translation_unavailable(tmp_path):
    from pipeline.translate.stage import clear_translator_cache

    clear_translator_cache()
    settings = make_settings(tmp_path, translation_backend="transformers",
                             translation_model=str(tmp_path / "no-such-model"), alert_first_run_lookback=3650 * 86400.0)
    write_feeds_yaml(settings.config_dir, [
        {"id": "ru", "url": str(FEED_FIXTURES / "ru_news.xml"), "source": "RU", "language": "ru"}])
    (settings.config_dir / "alerts.yaml").write_text(
        "alerts:\n  - {id: oreshnik, query: Орешник, recipients: [a@example.org]}\n", encoding="utf-8")
    run_cycle(settings)
    [eml] = (settings.data_dir / "outbox").glob("*.eml")
    msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert "English: (translation unavailable" in _text(msg)
    clear_translator_cache()
