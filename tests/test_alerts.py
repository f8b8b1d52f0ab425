"""pipeline.alerts: real SQLiteStore, real SMTP server on loopback (aiosmtpd), real templates."""

from __future__ import annotations

import email
import json
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import datetime, timedelta, timezone
from email import policy
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

from pipeline.alerts import alert_stage, group_stories, highlight, queue_matches, safe_link, send_digest
from pipeline.config import AlertConfig, ThrottleConfig
from pipeline.models import Article
from pipeline.store.sqlite import SQLiteStore

from .conftest import ROOT, make_settings

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
RECIPIENTS = ("analyst@example.org", "desk@example.org")


def art(i: int, title: str, *, feed: str = "belta", hours_ago: float = 1.0, url: str | None = None,
        canonical: str | None = None, title_en: str | None = None, summary: str = "", language: str = "ru",
        topics: tuple[str, ...] = ()) -> Article:
    return Article(id=f"a{i:04d}", feed_id=feed, url=url if url is not None else f"https://news.example/{feed}/{i}",
                   canonical_url=canonical, guid=None, source=f"Outlet {feed}", feed_language=language,
                   language=language, title=title, summary=summary, published_at=NOW - timedelta(hours=hours_ago),
                   fetched_at=NOW, content_hash=f"h{i}", title_en=title_en, topics=topics)


def rule(**kw) -> AlertConfig:
    base = dict(id="oreshnik", query="(Орешник OR Oreshnik) AND (Беларус* OR Белорусс* OR Belarus)",
                recipients=RECIPIENTS, mode="immediate", timezone="Europe/Minsk")
    base.update(kw)
    return AlertConfig(**base)


@pytest.fixture
def env(tmp_path, smtp_server):  # noqa: F811
    settings = make_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=smtp_server.port,
                             smtp_from="mediamon@example.org", smtp_retry_wait=0.0, smtp_retry_attempts=2,
                             smtp_timeout=5.0)
    store = SQLiteStore(settings.store_path)
    yield settings, store, smtp_server
    store.close()


def run_stage(settings, store, articles, rules, now=NOW, **kw):
    """What a cycle does with these articles: queue their matches, index them, deliver."""
    counts = Counter(queue_matches(articles, store=store, rules=rules, now=now))
    if articles:
        store.index(articles)
    counts.update(alert_stage(settings=settings, store=store, rules=rules, now=now, **kw))
    return dict(counts)


def parts(msg) -> tuple[str, str]:
    # SMTP line endings are CRLF; compare with \n.  A bare CR left after that would be a leak.
    return (msg.get_body(("plain",)).get_content().replace("\r\n", "\n"),
            msg.get_body(("html",)).get_content().replace("\r\n", "\n"))


class TagCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_immediate_one_email_per_rule_with_grouped_sources_then_nothing(env):
    settings, store, smtp = env
    articles = [
        art(1, "«Орешник» развернут в Белоруссии", feed="belta", hours_ago=2,
            title_en="Oreshnik deployed in Belarus"),
        art(2, "«Орешник» развернут в Белоруссии", feed="ria", hours_ago=1),  # same story, other feed
        art(3, "Oreshnik system on combat duty in Belarus", feed="reuters", language="en", hours_ago=3),
        art(4, "Погода в Минске", feed="belta"),  # no match
    ]
    counts = run_stage(settings, store, articles, [rule()])
    assert counts["alert_matches"] == 3 and counts["alert_queued"] == 3
    assert counts["alert_emails_sent"] == 1 and counts["alert_items_sent"] == 3
    [(mail_from, rcpts, msg)] = smtp.messages
    assert mail_from == "mediamon@example.org" and rcpts == list(RECIPIENTS)
    assert msg["Subject"] == "[mediamon] oreshnik: 2 new items"
    assert msg["To"] == ", ".join(RECIPIENTS)
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith("@example.org>")
    assert msg["Date"] and msg["List-Unsubscribe"] and "oreshnik" in msg["List-Id"]
    text, html = parts(msg)
    assert text.count("\n* ") == 2
    assert "Outlet belta" in text and "Outlet ria" in text and "Outlet reuters" in text
    assert "English: Oreshnik deployed in Belarus" in text
    assert "13:00 +03 Europe/Minsk" in text and "10:00 UTC" in text  # local and UTC times
    assert "<mark>Орешник</mark>" in html and "<mark>Белоруссии</mark>" in html
    assert 'href="https://news.example/ria/2"' in html and 'href="https://news.example/belta/1"' in html
    assert 'alert rule\n&ldquo;oreshnik&rdquo;' in html or "oreshnik" in html.split("<hr>")[1]
    # newest story first
    assert text.index("Орешник") < text.index("combat duty")

    # running again — with or without the same articles — sends nothing
    assert run_stage(settings, store, articles, [rule()])["alert_emails_sent"] == 0
    assert run_stage(settings, store, [], [rule()])["alert_emails_sent"] == 0
    assert len(smtp.messages) == 1
    assert store.alert_sent_ids("oreshnik", ["a0001", "a0002", "a0003", "a0004"]) == {"a0001", "a0002", "a0003"}


def test_filters_topics_and_languages(env):
    settings, store, smtp = env
    articles = [art(1, "Орешник в Беларуси", topics=("missiles",)), art(2, "Орешник в Беларуси снова", feed="x"),
                art(3, "Oreshnik in Belarus", language="en", topics=("missiles",), feed="y")]
    r = rule(topics=("missiles",), languages=("ru",))
    counts = run_stage(settings, store, articles, [r])
    assert counts["alert_matches"] == 1
    assert store.alert_sent_ids("oreshnik", [a.id for a in articles]) == {"a0001"}


def test_transient_failure_stays_pending_and_rolls_into_next_email(env):
    settings, store, smtp = env
    smtp.data_replies = ["451 4.3.0 try later"] * 2  # both tries of this cycle
    counts = run_stage(settings, store, [art(1, "Орешник в Беларуси")], [rule()])
    assert counts["alert_emails_deferred"] == 1 and counts["alert_emails_sent"] == 0
    [pending] = store.alert_pending("oreshnik")
    assert pending.attempts == 1 and "451" in pending.last_error
    counts = run_stage(settings, store, [art(2, "Oreshnik again in Belarus", feed="z", language="en")], [rule()],
                       now=NOW + timedelta(minutes=15))
    assert counts["alert_emails_sent"] == 1 and counts["alert_items_sent"] == 2
    [(_, _, msg)] = smtp.messages
    assert msg["Subject"] == "[mediamon] oreshnik: 2 new items"
    assert counts["alert_possible_duplicates"] == 0  # a 451 is a clean failure, not an unknown outcome
    assert store.alert_pending("oreshnik") == []


def test_451_once_then_accept_delivers_exactly_once(env):
    settings, store, smtp = env
    smtp.data_replies = ["451 4.7.1 greylisted"]
    counts = run_stage(settings, store, [art(1, "Орешник в Беларуси")], [rule()])
    assert counts["alert_emails_sent"] == 1 and smtp.data_calls == 2 and len(smtp.messages) == 1
    run_stage(settings, store, [], [rule()], now=NOW + timedelta(hours=1))
    assert len(smtp.messages) == 1


def test_550_recorded_and_not_retried_until_asked(env):
    settings, store, smtp = env
    smtp.data_replies = ["550 5.7.1 message rejected"]
    counts = run_stage(settings, store, [art(1, "Орешник в Беларуси"), art(2, "Oreshnik, Belarus", feed="q")],
                       [rule()])
    assert counts["alert_emails_failed"] == 1 and smtp.data_calls == 1
    assert store.alert_summary()["oreshnik"] == {"failed": 2}
    for k in range(3):  # later cycles do not retry it
        run_stage(settings, store, [], [rule()], now=NOW + timedelta(hours=k + 1))
    assert smtp.data_calls == 1 and smtp.messages == []
    # a new match still goes out on its own; the failed ones are kept, visible, until retried
    run_stage(settings, store, [art(3, "Орешник: Беларусь", feed="r")], [rule()], now=NOW + timedelta(hours=5))
    assert len(smtp.messages) == 1 and smtp.messages[0][2]["Subject"] == "[mediamon] oreshnik: 1 new item"
    assert store.alert_retry_failed("oreshnik") == 2
    run_stage(settings, store, [], [rule()], now=NOW + timedelta(hours=6))
    assert len(smtp.messages) == 2 and smtp.messages[1][2]["Subject"] == "[mediamon] oreshnik: 2 new items"


CRASH_SCRIPT = textwrap.dedent("""
    import os, sys
    from datetime import datetime, timezone
    from pipeline.alerts import alert_stage
    from pipeline.config import AlertConfig
    from pipeline.settings import Settings
    from pipeline.store.sqlite import SQLiteStore
    data_dir, port = sys.argv[1], int(sys.argv[2])
    settings = Settings(data_dir=data_dir, smtp_host="127.0.0.1", smtp_port=port, smtp_from="mediamon@example.org",
                        smtp_retry_wait=0)
    store = SQLiteStore(settings.store_path)
    def crash(*a, **k):
        os._exit(9)  # the process dies after the server accepted, before the sent-log commit
    store.alert_mark_sent = crash
    rule = AlertConfig(id="oreshnik", query="Орешник", recipients=["analyst@example.org"])
    alert_stage(settings=settings, store=store, rules=[rule], now=datetime(2026, 11, 23, 12, tzinfo=timezone.utc))
""")


def test_crash_between_send_and_sent_log_gives_at_most_one_duplicate(env):
    settings, store, smtp = env
    r = rule(query="Орешник", recipients=("analyst@example.org",))
    articles = [art(1, "Орешник в Беларуси")]
    store.index(articles)
    from pipeline.models import AlertEntry

    store.alert_enqueue([AlertEntry("oreshnik", "a0001", ("Орешник",), NOW)])  # queued by an earlier cycle
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(settings.data_dir), str(smtp.port)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    assert len(smtp.messages) == 1  # the server has it
    [pending] = store.alert_pending("oreshnik")  # ... but our log does not
    assert pending.last_error.startswith("interrupted")

    # recovery: the next cycle resends once (the documented window) and flags it
    counts = run_stage(settings, store, [], [r], now=NOW + timedelta(minutes=15))
    assert counts["alert_emails_sent"] == 1 and counts["alert_possible_duplicates"] == 1
    assert len(smtp.messages) == 2
    for k in range(2):
        run_stage(settings, store, articles, [r], now=NOW + timedelta(hours=k + 1))
    assert len(smtp.messages) == 2  # never a third


def test_store_failure_after_send_keeps_items_pending_and_cycle_going(env, monkeypatch):
    settings, store, smtp = env
    from pipeline.errors import StoreUnavailable

    def full(*a, **k):
        raise StoreUnavailable("database or disk is full")

    monkeypatch.setattr(store, "alert_mark_sent", full)
    other = rule(id="other", query="Belarus")
    counts = run_stage(settings, store, [art(1, "Орешник в Беларуси", title_en="Oreshnik in Belarus")],
                       [rule(), other])
    assert counts["alert_errors"] == 2 and len(smtp.messages) == 2  # both rules tried, neither stopped the other
    assert len(store.alert_pending("oreshnik")) == 1 and len(store.alert_pending("other")) == 1


def test_hostile_item_is_inert_in_html_and_cannot_touch_headers(env):
    settings, store, smtp = env
    hostile = art(
        1, 'Орешник <script>alert("x")</script>\r\nBcc: victim@evil.example\r\nSubject: pwned Беларусь',
        url="javascript:alert(document.cookie)",
        summary='<img src=x onerror="alert(1)"> <a href="javascript:alert(2)">Беларусь</a> \x00\x1b[31m',
        title_en="Oreshnik <b onmouseover=alert(3)>Belarus</b>\nBcc: x@evil.example")
    counts = run_stage(settings, store, [hostile], [rule()])
    assert counts["alert_emails_sent"] == 1
    [(_, rcpts, msg)] = smtp.messages
    assert rcpts == list(RECIPIENTS)
    assert msg["Subject"] == "[mediamon] oreshnik: 1 new item"
    assert msg["Bcc"] is None and msg.get_all("Subject") == ["[mediamon] oreshnik: 1 new item"]
    assert msg["To"] == ", ".join(RECIPIENTS)
    text, html = parts(msg)
    tags = TagCollector()
    tags.feed(html)
    allowed = {"html", "head", "meta", "title", "body", "h2", "h3", "p", "br", "code", "ol", "li", "div", "a", "mark",
               "span", "hr", "strong"}
    assert {t for t, _ in tags.tags} <= allowed
    for tag, attrs in tags.tags:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        if tag == "a":
            assert attrs["href"].startswith(("http://", "https://"))
    assert "<script" not in html.lower() and "javascript:alert" not in [a.get("href") for _, a in tags.tags]
    assert "&lt;script&gt;" in html and "javascript:alert(document.cookie)" in html  # shown as text
    assert "\x00" not in text and "\x1b" not in text and "\r" not in text and "\r" not in html
    assert "Bcc: victim@evil.example" in text  # harmless text in the body, on the title's line
    title_line = next(line for line in text.splitlines() if line.startswith("* "))
    assert "victim@evil.example" in title_line


def test_throttle_100_matches_one_email_then_nothing_lost_next_period(env):
    settings, store, smtp = env
    r = rule(query="Орешник", throttle=ThrottleConfig(max_emails=1, per_seconds=3600))
    batch = [art(i, f"Орешник: новость номер {i}", feed=f"f{i}", hours_ago=i / 10) for i in range(100)]
    counts = run_stage(settings, store, batch, [r])
    assert counts["alert_emails_sent"] == 1 and counts["alert_items_sent"] == 100
    [(_, _, msg)] = smtp.messages
    assert msg["Subject"] == "[mediamon] oreshnik: 100 new items"
    text, _ = parts(msg)
    assert all(f"новость номер {i}\n" in text for i in range(100))

    later = [art(100 + i, f"Орешник: поздняя новость {i}", feed=f"g{i}", hours_ago=0) for i in range(5)]
    counts = run_stage(settings, store, later, [r], now=NOW + timedelta(minutes=30))
    assert counts["alert_throttled"] == 1 and counts["alert_emails_sent"] == 0
    assert len(store.alert_pending("oreshnik")) == 5
    counts = run_stage(settings, store, [], [r], now=NOW + timedelta(minutes=61))
    assert counts["alert_emails_sent"] == 1 and counts["alert_items_sent"] == 5
    assert len(smtp.messages) == 2
    ids = [a.id for a in batch + later]
    assert store.alert_sent_ids("oreshnik", ids) == set(ids) and store.alert_pending("oreshnik") == []


def test_items_per_email_cap_states_the_rest_and_drains_in_order(env):
    settings, store, smtp = env
    settings = settings.model_copy(update={"alert_max_items_per_email": 30})
    r = rule(query="Орешник")
    batch = [art(i, f"Орешник {i}", feed=f"f{i}", hours_ago=i / 10) for i in range(70)]
    counts = run_stage(settings, store, batch, [r])
    assert counts["alert_items_sent"] == 30
    text, html = parts(smtp.messages[0][2])
    assert "40 more items matched and stay queued: at most 30 items" in text
    assert "<strong>40 more items</strong>" in html
    run_stage(settings, store, [], [r], now=NOW + timedelta(minutes=15))
    run_stage(settings, store, [], [r], now=NOW + timedelta(minutes=30))
    subjects = [m["Subject"] for _, _, m in smtp.messages]
    assert subjects == ["[mediamon] oreshnik: 30 new items"] * 2 + ["[mediamon] oreshnik: 10 new items"]
    assert "more items" not in parts(smtp.messages[2][2])[0]
    assert store.alert_sent_ids("oreshnik", [a.id for a in batch]) == {a.id for a in batch}


def test_digest_queues_then_sends_grouped_by_topic(env):
    settings, store, smtp = env
    d = rule(id="nuclear", query="ядерн* OR nuclear", mode="digest", topics=("nuclear", "missiles"))
    articles = [art(1, "Ядерное оружие в Беларуси", topics=("nuclear",), hours_ago=5),
                art(2, "Ракеты и ядерный щит", topics=("missiles", "nuclear"), hours_ago=1, feed="x"),
                art(3, "Nuclear drills", topics=("nuclear",), language="en", hours_ago=2, feed="y")]
    counts = run_stage(settings, store, articles, [d])
    assert counts["alert_queued"] == 3 and smtp.messages == []
    seen = []
    assert send_digest(settings=settings, store=store, rules=[d], now=NOW, dry_run=True,
                       on_outcome=seen.append)["alert_emails_would_send"] == 1
    assert smtp.messages == [] and len(store.alert_pending("nuclear")) == 3
    assert seen[0].message["Subject"] == "[mediamon] nuclear: 3 new items (digest)"
    counts = send_digest(settings=settings, store=store, rules=[d], now=NOW)
    assert counts["alert_emails_sent"] == 1 and counts["alert_items_sent"] == 3
    text, _ = parts(smtp.messages[0][2])
    assert text.index("== Topic: nuclear (2) ==") < text.index("Nuclear drills") < text.index("Ядерное оружие")
    assert text.index("== Topic: missiles (1) ==") > text.index("Ядерное оружие")
    assert send_digest(settings=settings, store=store, rules=[d], now=NOW)["alert_emails_sent"] == 0


def test_outbox_eml_when_no_smtp_host(tmp_path):
    settings = make_settings(tmp_path)
    store = SQLiteStore(settings.store_path)
    try:
        counts = run_stage(settings, store, [art(1, "Орешник в Беларуси")], [rule()])
        assert counts["alert_emails_sent"] == 1
        [eml] = list(settings.outbox_dir.glob("*.eml"))
        msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert msg["Subject"] == "[mediamon] oreshnik: 1 new item" and msg["To"] == ", ".join(RECIPIENTS)
        assert "<mark>Орешник</mark>" in msg.get_body(("html",)).get_content()
        run_stage(settings, store, [], [rule()], now=NOW + timedelta(hours=1))
        assert len(list(settings.outbox_dir.glob("*.eml"))) == 1
    finally:
        store.close()


def test_same_story_grouping_rules():
    a = art(1, "Орешник в Беларуси", feed="a", hours_ago=1)
    same_title_other_feed = art(2, "ОРЕШНИК в Беларуси!", feed="b", hours_ago=3)
    same_title_same_feed = art(3, "Орешник в Беларуси", feed="a", hours_ago=2)
    too_late = art(4, "Орешник в Беларуси", feed="c", hours_ago=40)
    same_url = art(5, "A different headline", feed="d", canonical="https://news.example/a/1")
    a_canon = a.replace(canonical_url="https://news.example/a/1")
    stories = group_stories([a_canon, same_title_other_feed, same_title_same_feed, too_late, same_url])
    groups = sorted(sorted(s.ids) for s in stories)
    assert ["a0001", "a0002", "a0003", "a0005"] in groups  # a~2 by title, a~5 by URL, 3~2 by title (other feed)
    assert ["a0004"] in groups


def test_highlight_escapes_first_and_links_are_http_only():
    out = str(highlight('<b>Орешника</b> & "Oreshnik"', ["Орешник", "oreshnik"]))
    assert out == '&lt;b&gt;<mark>Орешника</mark>&lt;/b&gt; &amp; &#34;<mark>Oreshnik</mark>&#34;'
    assert str(highlight("<i>x</i>", [])) == "&lt;i&gt;x&lt;/i&gt;"
    assert safe_link("https://example.org/a?b=1") == "https://example.org/a?b=1"
    for bad in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,x", "//evil.example/x",
                "http://exa mple.org", "https://example.org/\r\nX: y", "vbscript:x", None, ""):
        assert safe_link(bad) is None


def test_bad_from_address_is_a_permanent_failure_not_a_crash(env):
    settings, store, smtp = env
    settings = settings.model_copy(update={"smtp_from": "not an address"})
    counts = run_stage(settings, store, [art(1, "Орешник в Беларуси")], [rule()])
    assert counts["alert_emails_failed"] == 1 and smtp.messages == []


def test_cli_list_test_digest(tmp_path, monkeypatch):
    from pipeline.cli import app

    settings = make_settings(tmp_path)
    (settings.config_dir / "alerts.yaml").write_text((ROOT / "config" / "alerts.yaml").read_text(encoding="utf-8"),
                                                     encoding="utf-8")
    store = SQLiteStore(settings.store_path)
    now = datetime.now(timezone.utc)
    store.index([art(1, "«Орешник» будет размещен в Белоруссии").replace(published_at=now),
                 art(2, "Ядерное оружие: учения", feed="x").replace(published_at=now)])
    store.close()
    monkeypatch.setenv("MEDIAMON_CONFIG_DIR", str(settings.config_dir))
    monkeypatch.setenv("MEDIAMON_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("MEDIAMON_SMTP_HOST", raising=False)
    runner = CliRunner()

    res = runner.invoke(app, ["alerts", "list", "--json"])
    assert res.exit_code == 0, res.output
    assert [r["id"] for r in json.loads(res.stdout)] == ["oreshnik-belarus", "nuclear-digest"]

    res = runner.invoke(app, ["alerts", "test", "oreshnik-belarus", "--json"])
    assert res.exit_code == 0, res.output
    [hit] = json.loads(res.stdout)
    assert hit["id"] == "a0001" and not hit["already_sent"] and hit["terms"]
    assert not settings.outbox_dir.exists()  # dry run: nothing sent

    res = runner.invoke(app, ["alerts", "test", "no-such-rule"])
    assert res.exit_code == 2 and "no alert rule" in res.output

    # queue the digest match through the stage, then digest --dry-run, then digest
    from pipeline.config import load_alerts
    from pipeline.settings import Settings

    s = Settings(config_dir=settings.config_dir, data_dir=settings.data_dir)
    store = SQLiteStore(s.store_path)
    try:
        rules = load_alerts(s.config_dir)
        queue_matches(store.get_articles(["a0001", "a0002"]), store=store, rules=rules, now=NOW)
        alert_stage(settings=s, store=store, rules=rules, now=NOW)
    finally:
        store.close()
    assert len(list(s.outbox_dir.glob("*oreshnik-belarus*.eml"))) == 1
    res = runner.invoke(app, ["alerts", "digest", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "dry_run" in res.output and not list(s.outbox_dir.glob("*nuclear-digest*.eml"))
    res = runner.invoke(app, ["alerts", "digest", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["alert_emails_sent"] == 1
    assert len(list(s.outbox_dir.glob("*nuclear-digest*.eml"))) == 1
    res = runner.invoke(app, ["alerts", "list", "--json"])
    by_id = {r["id"]: r for r in json.loads(res.stdout)}
    assert by_id["nuclear-digest"]["sent"] == 1 and by_id["oreshnik-belarus"]["sent"] == 1
