"""End to end: `mediamon run` polls a loopback feed server, stores, and mails alerts to a real
SMTP server on loopback (aiosmtpd).  The feed is generated here (including a hostile item)."""

from __future__ import annotations

import json
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from xml.sax.saxutils import escape as xml_escape

import yaml
from typer.testing import CliRunner

from pipeline.store.sqlite import SQLiteStore

from .conftest import make_settings, write_feeds_yaml

RECIPIENTS = ["analyst@example.org", "desk@example.org"]


def rss(items: list[dict]) -> bytes:
    now = datetime.now(timezone.utc)
    out = ['<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Test news</title>'
           '<link>https://news.example/</link><description>t</description>']
    for n, it in enumerate(items):
        out.append(f"<item><title>{xml_escape(it['title'])}</title><link>{xml_escape(it['link'])}</link>"
                   f"<guid>{xml_escape(it['link'])}</guid><description>{xml_escape(it.get('summary', ''))}</description>"
                   f"<pubDate>{format_datetime(now - timedelta(minutes=10 * (n + 1)))}</pubDate></item>")
    out.append("</channel></rss>")
    return "".join(out).encode("utf-8")


def test_mediamon_run_mails_alerts_once(tmp_path, feed_server, smtp_server, monkeypatch):  # noqa: F811
    from pipeline.cli import app

    settings = make_settings(tmp_path)
    ru = feed_server.add("/ru.xml", rss([
        {"title": "«Орешник» заступил на боевое дежурство в Белоруссии", "link": "https://news.example/ru/1",
         "summary": "Ракетный комплекс размещен в Беларуси."},
        {"title": "Орешник <script>alert(1)</script>\r\nBcc: victim@evil.example в Беларуси",
         "link": "javascript:alert(document.cookie)", "summary": "<img src=x onerror=alert(1)>"},
        {"title": "Погода в Минске", "link": "https://news.example/ru/3"},
    ]))
    en = feed_server.add("/en.xml", rss([
        {"title": "Oreshnik missile on combat duty in Belarus", "link": "https://news.example/en/1"},
        {"title": "Nuclear talks resume", "link": "https://news.example/en/2"},
    ]))
    write_feeds_yaml(settings.config_dir, [
        {"id": "ru-news", "url": ru, "source": "RU News", "language": "ru"},
        {"id": "en-news", "url": en, "source": "EN News", "language": "en"},
    ])
    (settings.config_dir / "alerts.yaml").write_text(yaml.safe_dump({"alerts": [
        {"id": "oreshnik-belarus", "query": "(Орешник OR Oreshnik) AND (Беларус* OR Белорусс* OR Belarus)",
         "recipients": RECIPIENTS, "mode": "immediate", "timezone": "Europe/Minsk"},
        {"id": "nuclear", "query": "nuclear OR ядерн*", "recipients": ["research@example.org"], "mode": "digest"},
    ]}, allow_unicode=True), encoding="utf-8")
    for k, v in {"CONFIG_DIR": settings.config_dir, "DATA_DIR": settings.data_dir, "ALLOW_PRIVATE_NETWORKS": "1",
                 "TRANSLATION_BACKEND": "none", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp_server.port,
                 "SMTP_FROM": "mediamon@example.org", "SMTP_RETRY_WAIT": "0"}.items():
        monkeypatch.setenv(f"MEDIAMON_{k}", str(v))
    runner = CliRunner()

    res = runner.invoke(app, ["run", "--json"])
    assert res.exit_code == 0, res.output
    counters = json.loads(res.stdout)
    assert counters["new"] == 5 and counters["alert_emails_sent"] == 1, counters
    [(_, rcpts, msg)] = smtp_server.messages
    assert rcpts == RECIPIENTS and msg["To"] == ", ".join(RECIPIENTS) and msg["Bcc"] is None
    assert msg["Subject"] == "[mediamon] oreshnik-belarus: 3 new items"
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "RU News" in text and "EN News" in text and "Погода" not in text
    assert "<script" not in html and 'href="javascript' not in html and "&lt;script&gt;" in html
    assert "onerror=" not in html.replace("onerror=alert(1)&gt;", "")  # only as escaped text, if at all

    # second run: nothing new (conditional GET), nothing mailed again
    res = runner.invoke(app, ["run", "--json", "--force"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout).get("alert_emails_sent", 0) == 0
    assert len(smtp_server.messages) == 1

    # the digest rule queued its match; the digest command mails it once
    res = runner.invoke(app, ["alerts", "digest", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["alert_emails_sent"] == 1
    assert smtp_server.messages[-1][2]["Subject"] == "[mediamon] nuclear: 1 new item (digest)"
    res = runner.invoke(app, ["alerts", "digest", "--json"])
    assert json.loads(res.stdout)["alert_emails_sent"] == 0 and len(smtp_server.messages) == 2

    store = SQLiteStore(settings.store_path)
    try:
        assert store.alert_summary()["oreshnik-belarus"]["sent"] == 3
    finally:
        store.close()
