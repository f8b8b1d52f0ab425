"""Injected faults through the real code paths, then recovery (issue 9).

Real parts everywhere: a loopback feed server, a real SQLite file (a real trigger makes it refuse
inserts; ``PRAGMA max_page_count`` makes it report SQLITE_FULL), the real transformers translator on
a tiny random Marian model, a real SMTP server (aiosmtpd) that drops the connection after DATA, and
a real child process killed with ``os._exit`` after each stage of the cycle.

After recovery every test checks the same three things: every article stored exactly once, every
(rule, article) alert mailed exactly once (except the one documented duplicate window, asserted as
such), and the feed state consistent with what was stored.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections import Counter
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest
from xml.sax.saxutils import escape as xml_escape

from pipeline.config import AlertConfig, FeedConfig
from pipeline.cycle import STAGES, run_cycle
from pipeline.errors import StoreUnavailable
from pipeline.store.sqlite import SQLiteStore

from .conftest import ROOT, make_settings
from .smtp_catcher import SMTPCatcher

RECIPIENTS = ("analyst@example.org",)
RULE = AlertConfig(id="oreshnik", query="Орешник OR Oreshnik", recipients=RECIPIENTS, mode="immediate")
LINK_RE = re.compile(r"https://news\.example/[a-z0-9/-]+")


def rss(feed_no: int, n: int, *, start: int = 0) -> bytes:
    """n items; every third one mentions Орешник (matches RULE)."""
    now = datetime.now(timezone.utc)
    out = ['<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
           '<link>https://news.example/</link><description>d</description>']
    for i in range(start, start + n):
        topic = "Орешник на дежурстве" if i % 3 == 0 else "Погода и курс рубля"
        out.append(f"<item><title>{xml_escape(f'{topic}: сообщение {feed_no}-{i}')}</title>"
                   f"<link>https://news.example/f{feed_no}/{i}</link><guid>f{feed_no}-{i}</guid>"
                   f"<description>Текст {i}.</description>"
                   f"<pubDate>{format_datetime(now - timedelta(minutes=i + 1))}</pubDate></item>")
    out.append("</channel></rss>")
    return "".join(out).encode()


class AcceptThenDrop(SMTPCatcher):
    """``"ACCEPT_DROP"`` in ``data_replies``: keep the message, then close without the final 250
    (the reply is lost on the way: the classic SMTP duplicate window)."""

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.data_replies and self.data_replies[0] == "ACCEPT_DROP":
                self.data_replies.pop(0)
                self.data_calls += 1
                import email
                from email import policy

                self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                      email.message_from_bytes(envelope.content, policy=policy.default)))
                server.transport.close()
                return "421 closing"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp():
    server = AcceptThenDrop().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def env(tmp_path, feed_server, smtp):
    settings = make_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_from="mediamon@example.org",
                             smtp_retry_wait=0.0, smtp_retry_attempts=1, smtp_timeout=5.0)
    feeds = [FeedConfig(id=f"f{k}", url=feed_server.add(f"/f{k}.xml", rss(k, 6)), source=f"Feed {k}",
                        language="ru") for k in range(3)]
    return settings, feeds, smtp


def expected_links(n_feeds: int = 3, n: int = 6) -> tuple[set[str], set[str]]:
    every = {f"https://news.example/f{k}/{i}" for k in range(n_feeds) for i in range(n)}
    return every, {u for u in every if int(u.rsplit("/", 1)[1]) % 3 == 0}


def check_recovered(settings, smtp, *, duplicates_allowed: int = 0) -> None:
    """Everything stored once, every matching item mailed once, feed state consistent."""
    every, matching = expected_links()
    store = SQLiteStore(settings.store_path)
    try:
        rows = store.connection.execute("SELECT id, canonical_url FROM articles").fetchall()
        urls = [r[1] for r in rows]
        assert len(urls) == len(set(urls)) and set(urls) == every
        sent = store.connection.execute("SELECT rule_id, article_id FROM alert_sent").fetchall()
        assert len(sent) == len(set(sent)) == len(matching)
        id_by_url = {r[1]: r[0] for r in rows}
        assert {a for _, a in sent} == {id_by_url[u] for u in matching}
        assert store.alert_pending(RULE.id) == []
        states = store.get_feed_states()
        for k in range(3):
            st = states[f"f{k}"]
            assert st.consecutive_failures == 0 and st.etag and st.last_success_at and not st.disabled
            assert st.items_total <= 6
    finally:
        store.close()
    mailed = Counter()
    for _, rcpts, msg in smtp.messages:
        assert rcpts == list(RECIPIENTS)
        mailed.update(set(LINK_RE.findall(msg.get_body(("plain",)).get_content())))
    assert set(mailed) == matching
    assert sum(mailed.values()) - len(matching) <= duplicates_allowed
    if not duplicates_allowed:
        assert all(v == 1 for v in mailed.values()), mailed


def test_store_refuses_inserts_mid_batch_then_recovers(env):
    """A real trigger makes SQLite refuse every insert after the 7th: those items are dead-lettered,
    their feeds keep their old state (so the items come back), their alerts wait; the rest goes on."""
    settings, feeds, smtp = env
    store = SQLiteStore(settings.store_path)
    store.connection.execute(
        "CREATE TEMP TRIGGER refuse_after_7 BEFORE INSERT ON main.articles"
        " WHEN (SELECT count(*) FROM main.articles) >= 7"
        " BEGIN SELECT RAISE(ABORT, 'injected: refusing the insert'); END")
    try:
        r1 = run_cycle(settings, store=store, feeds=feeds, topics=[], alerts=[RULE])
        c1 = r1.counters_dict()
        assert c1["new"] == 18 and c1["indexed"] == 7 and c1["index_failed"] == 11
        assert all("injected" in why for why in r1.dead_letters.values())
        assert store.count() == 7
        states = store.get_feed_states()
        stored = Counter(r[0] for r in store.connection.execute("SELECT feed_id FROM articles"))
        # feeds are stored in the order their polls complete: one feed got all 6 items in, the
        # next one item; a feed with every item stored advances, one that lost items keeps no
        # validators, counts a failure, and will be fetched again
        assert sorted(stored.values()) == [1, 6]
        for k in range(3):
            fid = f"f{k}"
            if stored[fid] == 6:
                assert states[fid].etag and states[fid].consecutive_failures == 0
            else:
                assert not states[fid].etag and states[fid].consecutive_failures == 1
        sent_first = len(smtp.messages)
        assert sent_first == 1  # the stored matches went out; the others wait in the queue
        store.connection.execute("DROP TRIGGER refuse_after_7")
        c2 = run_cycle(settings, store=store, feeds=feeds, topics=[], alerts=[RULE], force=True).counters_dict()
        assert c2["indexed"] == 11 and c2["index_failed"] == 0 and c2["not_modified"] == 1
        c3 = run_cycle(settings, store=store, feeds=feeds, topics=[], alerts=[RULE], force=True).counters_dict()
        assert c3["new"] == 0 and c3.get("alert_emails_sent", 0) == 0
    finally:
        store.close()
    check_recovered(settings, smtp)


def test_disk_full_fails_the_cycle_cleanly_then_recovers(env):
    """SQLITE_FULL (``PRAGMA max_page_count``): the cycle stops with StoreUnavailable naming the
    cause, nothing half-written, no email, no feed state; with space again everything goes once."""
    settings, feeds, smtp = env
    store = SQLiteStore(settings.store_path)
    try:
        pages = store.connection.execute("PRAGMA page_count").fetchone()[0]
        store.connection.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreUnavailable, match="full"):
            run_cycle(settings, store=store, feeds=feeds, topics=[], alerts=[RULE])
        assert store.count() == 0 and store.get_feed_states() == {} and smtp.messages == []
        assert not store.connection.in_transaction
        store.connection.execute("PRAGMA max_page_count = 1073741823")
        c = run_cycle(settings, store=store, feeds=feeds, topics=[], alerts=[RULE]).counters_dict()
        assert c["indexed"] == 18 and c["alert_emails_sent"] == 1
    finally:
        store.close()
    check_recovered(settings, smtp)


@pytest.mark.slow
def test_translator_failing_on_one_item_fails_it_alone(tmp_path, feed_server, smtp, tiny_marian_dir):
    from pipeline.translate import get_translator

    settings = make_settings(tmp_path, translation_backend="transformers", translation_model=str(tiny_marian_dir),
                             smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_from="mediamon@example.org",
                             smtp_retry_wait=0.0, smtp_retry_attempts=1)
    feeds = [FeedConfig(id=f"f{k}", url=feed_server.add(f"/f{k}.xml", rss(k, 6)), source=f"Feed {k}",
                        language="ru") for k in range(3)]
    translator = get_translator(settings)
    real = translator.model.generate
    tok = translator.tokenizer
    poisoned = "сообщение 1-3"  # one item's title (a matching one: its alert must still go out)

    def flaky(*args, **kwargs):
        texts = tok.batch_decode(kwargs["input_ids"], skip_special_tokens=True)
        if any(poisoned in t for t in texts):
            raise RuntimeError("injected translator failure")
        return real(*args, **kwargs)

    translator.model.generate = flaky
    try:
        c = run_cycle(settings, feeds=feeds, topics=[], alerts=[RULE]).counters_dict()
        c2 = run_cycle(settings, feeds=feeds, topics=[], alerts=[RULE], force=True).counters_dict()
    finally:
        translator.model.generate = real
    assert c["indexed"] == 18 and c["translation_failed"] == 1 and c["alert_emails_sent"] == 1
    assert c2["new"] == 0 and c2.get("alert_emails_sent", 0) == 0
    store = SQLiteStore(settings.store_path)
    try:
        [bad] = [a for a in store.get_articles([r[0] for r in store.connection.execute("SELECT id FROM articles")])
                 if poisoned in a.title]
        assert bad.translation.status == "failed" and "injected" in bad.translation.error and bad.title_en is None
        statuses = Counter(r[0] for r in store.connection.execute("SELECT translation_status FROM articles"))
        assert statuses == {"ok": 17, "failed": 1}
    finally:
        store.close()
    check_recovered(settings, smtp)


def test_smtp_drops_the_connection_after_data_then_next_cycle_delivers_once(env):
    settings, feeds, smtp = env
    smtp.data_replies = ["DROP"]  # connection closed before any reply: not delivered
    c1 = run_cycle(settings, feeds=feeds, topics=[], alerts=[RULE]).counters_dict()
    assert c1["indexed"] == 18 and c1["alert_emails_deferred"] == 1 and smtp.messages == []
    store = SQLiteStore(settings.store_path)
    try:
        pending = store.alert_pending(RULE.id)
        assert len(pending) == 6 and all(p.last_error.startswith("transient") for p in pending)
        assert all(s.etag for s in store.get_feed_states().values())  # mail trouble never holds feeds back
    finally:
        store.close()
    c2 = run_cycle(settings, feeds=feeds, topics=[], alerts=[RULE]).counters_dict()  # nothing new: 304s
    assert c2["not_modified"] == 3 and c2["alert_emails_sent"] == 1 and c2["alert_items_sent"] == 6
    run_cycle(settings, feeds=feeds, topics=[], alerts=[RULE], force=True)
    check_recovered(settings, smtp)


def test_reply_lost_after_the_server_accepted_is_the_one_duplicate_window(env):
    """The server keeps the message but the connection drops before its 250 reaches us: we cannot
    know, so the items stay pending and go again next cycle — one duplicate email, never a loss."""
    settings, feeds, smtp = env
    smtp.data_replies = ["ACCEPT_DROP"]
    c1 = run_cycle(settings, feeds=feeds, topics=[], alerts=[RULE]).counters_dict()
    assert c1["alert_emails_deferred"] == 1 and len(smtp.messages) == 1
    c2 = run_cycle(settings, feeds=feeds, topics=[], alerts=[RULE]).counters_dict()
    assert c2["alert_emails_sent"] == 1 and len(smtp.messages) == 2
    for _ in range(2):
        run_cycle(settings, feeds=feeds, topics=[], alerts=[RULE], force=True)
    assert len(smtp.messages) == 2  # never a third
    check_recovered(settings, smtp, duplicates_allowed=6)  # the 6 pairs of that one email, once more


KILL_SCRIPT = """
import os, sys
sys.path.insert(0, {root!r})
from pipeline.config import AlertConfig, FeedConfig
from pipeline.settings import Settings
from pipeline.cycle import run_cycle
s = Settings.model_validate_json({settings!r})
feeds = [FeedConfig.model_validate_json(f) for f in {feeds!r}]
rule = AlertConfig.model_validate_json({rule!r})
def hook(name):
    if name == {stage!r}:
        os._exit(137)
run_cycle(s, feeds=feeds, topics=[], alerts=[rule], hook=hook)
"""


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_killed_after_each_stage_then_everything_once(env, stage):
    """A real child process runs the cycle and is killed (os._exit) right after ``stage``; the next
    cycles store every item once and mail every match once, and the feed state is consistent."""
    settings, feeds, smtp = env
    script = KILL_SCRIPT.format(root=str(ROOT), settings=settings.model_dump_json(),
                                feeds=[f.model_dump_json() for f in feeds], rule=RULE.model_dump_json(),
                                stage=stage)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 137, proc.stderr[-2000:]
    store = SQLiteStore(settings.store_path)
    try:
        stored_before = store.count()
        committed = store.get_feed_states() != {}
    finally:
        store.close()
    # what the kill left behind is what the stage order promises
    after = STAGES.index(stage)
    assert stored_before == (18 if after >= STAGES.index("indexed") else 0)
    assert committed == (stage == "committed")
    assert len(smtp.messages) == (1 if after >= STAGES.index("alerted") else 0)
    run_cycle(settings, feeds=feeds, topics=[], alerts=[RULE])
    run_cycle(settings, feeds=feeds, topics=[], alerts=[RULE], force=True)
    check_recovered(settings, smtp)
