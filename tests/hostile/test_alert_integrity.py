"""Issue 16: alerts are sent once, a flood cannot starve a real story, bad recipients fail alone.

Real SQLite stores, a real SMTP server on loopback (aiosmtpd, slowed down where a test needs a
send to take time), real `mediamon run` processes.  Elasticsearch parts run against a loopback
fake of the few document APIs the lease uses: not a real cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from pipeline import exitcodes
from pipeline.alerts import alert_stage, queue_matches
from pipeline.config import AlertConfig
from pipeline.lock import Locked, cycle_lock, lock_path
from pipeline.models import Article
from pipeline.store.sqlite import SQLiteStore

from ..conftest import ROOT, make_settings, write_feeds_yaml
from ..smtp_catcher import SMTPCatcher
from ..test_alerts_e2e import rss

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


class SlowSMTP(SMTPCatcher):
    """Takes ``delay`` seconds to answer DATA: a send that is still going when the other cycle looks."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay
        self.started = 0

    async def handle_DATA(self, server, session, envelope):
        self.started += 1
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_smtp():
    server = SlowSMTP(3.0).start()
    try:
        yield server
    finally:
        server.stop()


def art(i: int, title: str, *, feed: str = "belta", minutes_ago: float = 60.0, source: str | None = None,
        url: str | None = None) -> Article:
    return Article(id=f"a{i:05d}", feed_id=feed, url=url or f"https://{feed}.example/{i}", canonical_url=None,
                   guid=None, source=source or f"Outlet {feed}", feed_language="ru", language="ru", title=title,
                   summary="", published_at=NOW - timedelta(minutes=minutes_ago), fetched_at=NOW,
                   content_hash=f"h{i}")


def pairs_mailed(server: SMTPCatcher) -> Counter:
    """(rule, article link) -> how many emails carried it."""
    got: Counter = Counter()
    for _, _, msg in server.messages:
        text = msg.get_body(("plain",)).get_content()
        for line in text.splitlines():
            if line.strip().startswith("Source:") and "<" in line:
                got[(msg["X-Mediamon-Rule"], line.split("<", 1)[1].rstrip(">"))] += 1
    return got


# --- item 3: one cycle per store, claim -> send -> confirm ------------------------------------------------

def _env(settings, smtp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAMON_")}
    env.update({"PYTHONPATH": str(ROOT), "MEDIAMON_CONFIG_DIR": str(settings.config_dir),
                "MEDIAMON_DATA_DIR": str(settings.data_dir), "MEDIAMON_ALLOW_PRIVATE_NETWORKS": "1",
                "MEDIAMON_TRANSLATION_BACKEND": "none", "MEDIAMON_SMTP_HOST": "127.0.0.1",
                "MEDIAMON_SMTP_PORT": str(smtp_port), "MEDIAMON_SMTP_FROM": "mediamon@example.org",
                "MEDIAMON_SMTP_RETRY_WAIT": "0", "MEDIAMON_PARSE_WORKERS": "1"})
    return env


@pytest.mark.slow
def test_two_runs_at_once_one_is_refused_with_75_and_each_item_is_mailed_once(tmp_path, feed_server, slow_smtp):
    settings = make_settings(tmp_path)
    items = [{"title": f"Орешник в Беларуси, новость {i}", "link": f"https://news.example/ru/{i}"} for i in range(5)]
    url = feed_server.add("/ru.xml", rss(items))
    write_feeds_yaml(settings.config_dir, [{"id": "ru-news", "url": url, "source": "RU News", "language": "ru"}])
    rules = [{"id": f"rule{k}", "query": "Орешник", "recipients": ["analyst@example.org"], "mode": "immediate"}
             for k in range(2)]
    (settings.config_dir / "alerts.yaml").write_text(yaml.safe_dump({"alerts": rules}, allow_unicode=True),
                                                      encoding="utf-8")
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--json"]
    env = _env(settings, slow_smtp.port)
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while slow_smtp.started == 0 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the first run is inside its (slow) send now
        assert first.poll() is None, first.communicate()
        second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert second.returncode == exitcodes.LOCKED == 75, second.stderr
    assert "another mediamon cycle is running on this store" in second.stderr and "run:" in second.stderr
    assert json.loads(out)["alert_emails_sent"] == 2
    mailed = pairs_mailed(slow_smtp)
    assert len(mailed) == 10 and set(mailed.values()) == {1}, mailed  # 2 rules x 5 items, each once

    # the first run is gone: the lock went with it, a third run goes ahead and sends nothing again
    third = subprocess.run(cmd + ["--force"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert len(slow_smtp.messages) == 2


HOLD_SCRIPT = """
import sys, time
from pathlib import Path
from pipeline.lock import cycle_lock
from pipeline.settings import Settings
with cycle_lock(Settings(data_dir=Path(sys.argv[1]))):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_killed_holder_never_blocks_the_next_run(tmp_path):
    settings = make_settings(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(settings.data_dir)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(Locked, match="another mediamon cycle is running on this store"):
            with cycle_lock(settings):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert lock_path(settings).exists()  # the file survives the kill ...
    with cycle_lock(settings) as owner:  # ... and blocks nothing: the flock died with its process
        assert owner.startswith("run:")


def test_claims_keep_two_concurrent_senders_apart_even_without_the_lock(tmp_path, slow_smtp):
    """Two cycles deliver at the same time on one store (a lost lock): one email per (rule, item)."""
    settings = make_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=slow_smtp.port,
                             smtp_from="mediamon@example.org", smtp_retry_wait=0.0, smtp_timeout=10.0)
    rule = AlertConfig(id="oreshnik", query="Орешник", recipients=("analyst@example.org",))
    setup = SQLiteStore(settings.store_path)
    articles = [art(i, f"Орешник, новость {i}", feed=f"f{i}", minutes_ago=i) for i in range(120)]
    queue_matches(articles, store=setup, rules=[rule], now=NOW)
    setup.index(articles)
    setup.close()

    results: list[dict] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def cycle() -> None:
        store = SQLiteStore(settings.store_path)
        try:
            start.wait()
            results.append(alert_stage(settings=settings, store=store, rules=[rule], now=NOW))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=cycle) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    mailed = pairs_mailed(slow_smtp)
    assert len(mailed) == 120 and set(mailed.values()) == {1}, Counter(mailed.values())
    assert sum(r["alert_items_sent"] for r in results) == 120
    assert sorted(r["alert_possible_duplicates"] for r in results) == [0, 0]

    # and the claim is no trap: a claim whose sender died (older than CLAIM_TIMEOUT) is sent again
    store = SQLiteStore(settings.store_path)
    try:
        queue_matches([art(999, "Орешник, поздно")], store=store, rules=[rule], now=NOW)
        store.index([art(999, "Орешник, поздно")])
        assert store.alert_claim("oreshnik", ["a00999"], at=NOW, stale_before=NOW - timedelta(minutes=10),
                                 marker="interrupted: delivery started, outcome unknown") == {"a00999"}
        counts = alert_stage(settings=settings, store=store, rules=[rule], now=NOW + timedelta(minutes=5))
        assert counts["alert_emails_sent"] == 0 and counts["alert_items_in_flight"] == 1  # its sender may live
        counts = alert_stage(settings=settings, store=store, rules=[rule], now=NOW + timedelta(minutes=11))
        assert counts["alert_emails_sent"] == 1 and counts["alert_possible_duplicates"] == 1
    finally:
        store.close()


# --- item 3, Elasticsearch: the lease document (offline, loopback fake; no real cluster) -------------------

class FakeLeaseES:
    """The four document calls the lease makes (create, get, conditional index, conditional delete)
    on one document, with Elasticsearch's ``_seq_no`` / ``_primary_term`` rules and status codes."""

    INDEX = "mediamon-lease"

    def __init__(self, httpserver, *, index_exists: bool = True):
        self.doc: dict | None = None
        self.seq = -1
        self.index_exists = index_exists
        self.writes: list[tuple[str, dict]] = []
        httpserver.expect_request(f"/{self.INDEX}/_create/cycle").respond_with_handler(self.create)
        httpserver.expect_request(f"/{self.INDEX}/_doc/cycle").respond_with_handler(self.doc_call)

    @staticmethod
    def reply(body: dict, status: int = 200):
        from werkzeug import Response

        from ..test_es_bulk import ES_HEADERS
        return Response(json.dumps(body), status=status, headers=ES_HEADERS)

    def conflict(self):
        return self.reply({"error": {"type": "version_conflict_engine_exception", "reason": "conflict"},
                           "status": 409}, 409)

    def meta(self, result: str) -> dict:
        return {"_index": self.INDEX, "_id": "cycle", "_version": self.seq + 1, "result": result,
                "_seq_no": self.seq, "_primary_term": 1}

    def missing_index(self):
        return self.reply({"error": {"type": "index_not_found_exception", "reason": "no such index [mediamon-lease]"},
                           "status": 404}, 404)

    def create(self, request):
        if not self.index_exists:
            return self.missing_index()
        if self.doc is not None:
            return self.conflict()
        self.doc, self.seq = json.loads(request.get_data()), self.seq + 1
        self.writes.append(("create", self.doc))
        return self.reply(self.meta("created"), 201)

    def doc_call(self, request):
        if not self.index_exists:
            return self.missing_index()
        if request.method == "GET":
            if self.doc is None:
                return self.reply({"_index": self.INDEX, "_id": "cycle", "found": False}, 404)
            return self.reply({**self.meta("found"), "found": True, "_source": self.doc})
        if self.doc is None or int(request.args.get("if_seq_no", -2)) != self.seq:
            return self.conflict()
        if request.method == "DELETE":
            self.doc = None
            self.writes.append(("delete", {}))
            return self.reply(self.meta("deleted"))
        self.doc, self.seq = json.loads(request.get_data()), self.seq + 1
        self.writes.append(("index", self.doc))
        return self.reply(self.meta("updated"))


def _es_store(httpserver):
    from pipeline.settings import Settings
    from pipeline.store.elasticsearch import ElasticsearchStore

    settings = Settings(elasticsearch_url=httpserver.url_for("/").rstrip("/"))
    return settings, ElasticsearchStore(ElasticsearchStore.client_from_settings(settings, max_retries=0))


def test_es_lease_is_exclusive_expires_and_is_taken_over_once(httpserver):
    pytest.importorskip("elasticsearch")
    fake = FakeLeaseES(httpserver)
    _, a = _es_store(httpserver)
    _, b = _es_store(httpserver)
    ttl = timedelta(minutes=5)
    a.lease_acquire("run:a", ttl=ttl, now=NOW)
    assert fake.doc is not None and fake.doc["owner"] == "run:a" and fake.writes[0][0] == "create"
    with pytest.raises(Locked, match="holds the Elasticsearch lease.*run:a"):
        b.lease_acquire("run:b", ttl=ttl, now=NOW + timedelta(minutes=4))
    assert a.lease_renew("run:a", ttl=ttl, now=NOW + timedelta(minutes=4))  # renewed: now until 12:09
    with pytest.raises(Locked):
        b.lease_acquire("run:b", ttl=ttl, now=NOW + timedelta(minutes=8))
    # a stops renewing (dies); once expired, b takes it over with a conditional write
    b.lease_acquire("run:b", ttl=ttl, now=NOW + timedelta(minutes=10))
    assert fake.doc["owner"] == "run:b" and fake.writes[-1][0] == "index"
    assert not a.lease_renew("run:a", ttl=ttl, now=NOW + timedelta(minutes=10))  # a learns it lost it
    a.lease_release("run:a")  # and releasing deletes nothing of b's
    assert fake.doc["owner"] == "run:b"
    b.lease_release("run:b")
    assert fake.doc is None
    a.lease_acquire("run:a", ttl=ttl, now=NOW + timedelta(minutes=11))  # free again


@pytest.mark.slow
def test_es_cycle_lock_renews_while_held_and_releases(httpserver):
    pytest.importorskip("elasticsearch")
    fake = FakeLeaseES(httpserver)
    settings, a = _es_store(httpserver)
    _, b = _es_store(httpserver)
    with cycle_lock(settings, store=a, ttl=timedelta(seconds=3)) as owner:
        time.sleep(4.5)  # longer than its time to live, renewed every second: it never expires while held
        assert sum(1 for op, _ in fake.writes if op == "index") >= 2
        with pytest.raises(Locked):
            b.lease_acquire("run:b", ttl=timedelta(minutes=5), now=datetime.now(timezone.utc))
        assert fake.doc["owner"] == owner
    assert fake.doc is None and fake.writes[-1][0] == "delete"


def test_es_lease_without_its_index_asks_for_setup(httpserver):
    pytest.importorskip("elasticsearch")
    from pipeline.errors import StoreError

    FakeLeaseES(httpserver, index_exists=False)
    _, a = _es_store(httpserver)
    with pytest.raises(StoreError, match="mediamon setup"):
        a.lease_acquire("run:a", ttl=timedelta(minutes=5), now=NOW)


def test_es_claim_is_a_compare_and_set_per_pair(httpserver):
    """The claim's bulk carries the compare-and-set script; only pairs Elasticsearch reports as
    ``updated`` are ours (``noop``: claimed by someone else; 404: no longer queued)."""
    pytest.importorskip("elasticsearch")
    from werkzeug import Response

    from pipeline.store.elasticsearch import CLAIM_SCRIPT

    from ..test_es_bulk import ES_HEADERS

    bulks: list[list[dict]] = []

    def bulk(request):
        lines = [json.loads(x) for x in request.get_data().decode().splitlines() if x.strip()]
        bulks.append(lines)
        result = {"r:a1": (200, "updated"), "r:a2": (200, "noop"), "r:a3": (404, None)}
        items = []
        for line in lines[::2]:
            _id = line["update"]["_id"]
            status, res = result[_id]
            item = {"_index": "mediamon-alerts-queue", "_id": _id, "status": status}
            item.update({"result": res} if res else {"error": {"type": "document_missing_exception", "reason": "x"}})
            items.append({"update": item})
        return Response(json.dumps({"took": 1, "errors": True, "items": items}), headers=ES_HEADERS)

    httpserver.expect_request("/_bulk").respond_with_handler(bulk)
    httpserver.expect_request("/mediamon-alerts-sent/_mget").respond_with_response(
        Response(json.dumps({"docs": [{"_id": "r:a4", "found": True, "_source": {}}]}), headers=ES_HEADERS))
    httpserver.expect_request(
        "/mediamon-articles,mediamon-feed-state,mediamon-translations,mediamon-alerts-queue,"
        "mediamon-alerts-sent,mediamon-alerts-emails", method="HEAD").respond_with_response(
        Response(status=200, headers=ES_HEADERS))
    _, store = _es_store(httpserver)
    got = store.alert_claim("r", ["a1", "a2", "a3", "a4"], at=NOW, stale_before=NOW - timedelta(minutes=10),
                            marker="interrupted")
    assert got == {"a1"}
    [lines] = bulks
    assert [x["update"]["_id"] for x in lines[::2]] == ["r:a1", "r:a2", "r:a3"]  # a4 is in the sent-log already
    script = lines[1]["script"]
    assert script["source"] == CLAIM_SCRIPT and "ctx.op = 'noop'" in CLAIM_SCRIPT
    assert script["params"] == {"marker": "interrupted", "at": "2026-11-23T12:00:00Z",
                                "stale_before": "2026-11-23T11:50:00Z"}


def test_airflow_tasks_respect_the_lock(tmp_path):
    from pipeline.tasks import digest_task, plan_task

    settings = make_settings(tmp_path)
    write_feeds_yaml(settings.config_dir, [])
    with cycle_lock(settings):
        with pytest.raises(Locked):
            plan_task("manual__1", settings=settings, now=NOW)
        with pytest.raises(Locked):
            digest_task(settings=settings, now=NOW)
    assert plan_task("manual__1", settings=settings, now=NOW) == []  # free again: nothing due


# --- item 4: a flood cannot starve a real story -----------------------------------------------------------

def test_a_flood_feed_cannot_starve_the_real_story_and_its_backlog_stays_bounded(tmp_path, smtp_server):
    settings = make_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=smtp_server.port,
                             smtp_from="mediamon@example.org", smtp_retry_wait=0.0)
    assert (settings.alert_max_items_per_email, settings.alert_max_items_per_source) == (200, 25)
    rule = AlertConfig(id="oreshnik", query="Орешник", recipients=("analyst@example.org",))
    store = SQLiteStore(settings.store_path)
    try:
        def spam(cycle: int) -> list[Article]:
            return [art(cycle * 1000 + i, f"Орешник: реклама {cycle}-{i}", feed="flood", source="Flood",
                        minutes_ago=(i % 50) / 10) for i in range(1000)]

        # the flood was queued first (oldest queued), the real story after it, and is older than the spam
        flood = spam(1)
        queue_matches(flood, store=store, rules=[rule], now=NOW)
        real = art(7, "«Орешник» заступил на боевое дежурство", feed="belta", source="BelTA", minutes_ago=30)
        queue_matches([real], store=store, rules=[rule], now=NOW + timedelta(minutes=1))
        store.index([*flood, real])
        counts = alert_stage(settings=settings, store=store, rules=[rule], now=NOW + timedelta(minutes=2))

        [(_, _, msg)] = smtp_server.messages
        text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
        html = msg.get_body(("html",)).get_content()
        assert "«Орешник» заступил на боевое дежурство" in text  # the real story: in the very first email
        assert counts["alert_items_sent"] == 26 and counts["alert_items_summarised"] == 975
        assert "and 975 more from Flood (at most 25 stories of one source" in text
        assert "<strong>and 975 more from Flood</strong>" in html
        assert text.count("Source: Flood") == 25  # the flood's newest 25, not the whole email
        assert store.alert_pending("oreshnik") == []  # the overflow is counted once, not retried forever
        assert store.alert_summary()["oreshnik"]["summarised"] == 975

        # next cycle: 1,000 more spam and another real story; the backlog never grows
        flood2 = spam(2)
        real2 = art(8, "Орешник: второе сообщение", feed="belta", source="BelTA", minutes_ago=20)
        queue_matches([*flood2, real2], store=store, rules=[rule], now=NOW + timedelta(minutes=15))
        store.index([*flood2, real2])
        counts = alert_stage(settings=settings, store=store, rules=[rule], now=NOW + timedelta(minutes=16))
        assert counts["alert_items_sent"] == 26 and counts["alert_items_summarised"] == 975
        assert "Орешник: второе сообщение" in smtp_server.messages[1][2].get_body(("plain",)).get_content()
        assert store.alert_pending("oreshnik") == []
    finally:
        store.close()


def test_fair_selection_round_robin_over_sources_newest_first():
    from pipeline.alerts.deliver import fair_selection, source_key
    from pipeline.alerts.render import Story

    stories = ([Story([art(i, f"a{i}", feed="a", source="A", minutes_ago=i)]) for i in range(10)]
               + [Story([art(100 + i, f"b{i}", feed="b", source="B", minutes_ago=50 + i)]) for i in range(3)]
               + [Story([art(200, "c", feed="c", source="C", minutes_ago=500)])])
    chosen, rest, overflow = fair_selection(stories, cap=6, per_source=4)
    # every source in the first round (C's one old story too), then newest first within each source
    assert sorted(source_key(s) for s in chosen) == ["A", "A", "A", "B", "B", "C"]
    assert [s.primary.id for s in chosen if source_key(s) == "A"] == ["a00000", "a00001", "a00002"]
    assert {s.primary.id for s in rest} == {"a00003", "a00102"}  # fair, within the share: next email
    assert {k: len(v) for k, v in overflow.items()} == {"A": 6}  # A's oldest 6: only counted
    times = [s.published_at for s in chosen]
    assert times == sorted(times, reverse=True)  # the email lists them newest first


# --- item 7: recipients the config accepts are recipients delivery can use --------------------------------

def test_recipients_are_parsed_for_real_and_a_nul_never_reaches_rcpt_to(tmp_path):
    from pipeline.config import load_alerts
    from pipeline.errors import ConfigError

    cfg = tmp_path / "config"
    cfg.mkdir()
    good = ["analyst@пример.рф", "аналитик@example.org", "ops@mail.internal"]
    (cfg / "alerts.yaml").write_text(yaml.safe_dump({"alerts": [{"id": "r", "query": "x", "recipients": good}]},
                                                    allow_unicode=True), encoding="utf-8")
    [rule] = load_alerts(cfg)
    assert rule.recipients == tuple(good)
    for bad, why in (("analyst@example.org\x00", "U+0000"), ("ana\x00lyst@example.org", "U+0000"),
                     ("analyst@localhost", "special-use or reserved"), ("analyst@@example.org", "not a valid"),
                     ("analyst@exa mple.org", "not a valid")):
        (cfg / "alerts.yaml").write_text(yaml.safe_dump({"alerts": [{"id": "r", "query": "x", "recipients": [bad]}]},
                                                        allow_unicode=True), encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            load_alerts(cfg)
        msg = str(err.value)
        assert "alerts.yaml: entry 1 (id 'r'): field 'recipients'" in msg and why in msg, msg


class NoUTF8SMTP(SMTPCatcher):
    """The same sink, not offering SMTPUTF8 (aiosmtpd offers it by default)."""

    def __init__(self) -> None:
        super().__init__()
        from aiosmtpd.controller import Controller
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=False)


@pytest.fixture
def plain_smtp():
    server = NoUTF8SMTP().start()
    try:
        yield server
    finally:
        server.stop()


MIXED = ("analyst@example.org", "analyst@пример.рф", "аналитик@example.org", "gone@example.org")


def _deliver_to(tmp_path, server: SMTPCatcher) -> tuple[dict, SQLiteStore]:
    settings = make_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=server.port, smtp_from="mediamon@example.org",
                             smtp_retry_wait=0.0, smtp_retry_attempts=1)
    server.refuse_rcpt.add("gone@example.org")
    rule = AlertConfig(id="oreshnik", query="Орешник", recipients=MIXED)
    store = SQLiteStore(settings.store_path)
    a = art(1, "Орешник в Беларуси")
    queue_matches([a], store=store, rules=[rule], now=NOW)
    store.index([a])
    return alert_stage(settings=settings, store=store, rules=[rule], now=NOW), store


def test_one_bad_recipient_never_fails_the_others(tmp_path, plain_smtp, caplog):
    smtp_server = plain_smtp
    counts, store = _deliver_to(tmp_path, smtp_server)  # a server without SMTPUTF8
    try:
        assert counts["alert_emails_sent"] == 1 and counts["alert_emails_failed"] == 0
        assert counts["alert_recipients_refused"] == 2  # the non-ASCII local part, and the server's 550
        [(_, rcpts, msg)] = smtp_server.messages
        assert rcpts == ["analyst@example.org", "analyst@xn--e1afmkfd.xn--p1ai"]  # the IDNA domain on the wire
        assert "analyst@xn--e1afmkfd.xn--p1ai" in msg["To"]
        assert store.alert_sent_ids("oreshnik", ["a00001"]) == {"a00001"}
        refused = next(r for r in caplog.records if r.getMessage() == "alert_recipients_refused")
        reasons = refused.fields["refused"]  # type: ignore[attr-defined]
        assert set(reasons) == {"аналитик@example.org", "gone@example.org"}
        assert "SMTPUTF8" in reasons["аналитик@example.org"] and reasons["gone@example.org"].startswith("550")
    finally:
        store.close()


def test_a_non_ascii_local_part_is_delivered_when_the_server_offers_smtputf8(tmp_path, smtp_server):
    counts, store = _deliver_to(tmp_path, smtp_server)
    store.close()
    assert counts["alert_emails_sent"] == 1 and counts["alert_recipients_refused"] == 1  # only the 550
    [(_, rcpts, _msg)] = smtp_server.messages
    assert rcpts == ["analyst@example.org", "analyst@xn--e1afmkfd.xn--p1ai", "аналитик@example.org"]


def test_when_no_recipient_is_usable_the_failure_names_each_address(tmp_path, plain_smtp):
    smtp_server = plain_smtp
    settings = make_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=smtp_server.port,
                             smtp_from="mediamon@example.org", smtp_retry_wait=0.0, smtp_retry_attempts=1)
    from pipeline.mail import SMTPMailer
    from pipeline.errors import PermanentMailError
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["Subject"] = "x"
    msg.set_content("x")
    with pytest.raises(PermanentMailError) as err:
        SMTPMailer(settings).send(msg, ["аналитик@example.org", "a\x00@example.org"])
    assert "аналитик@example.org" in str(err.value) and "SMTPUTF8" in str(err.value)
    assert "U+0000" in str(err.value) and smtp_server.data_calls == 0


# --- item 8 (part): homoglyph and internationalised link hosts are marked in the email --------------------

def test_homoglyph_and_idn_link_hosts_are_shown_with_their_punycode(tmp_path, smtp_server):
    settings = make_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=smtp_server.port,
                             smtp_from="mediamon@example.org", smtp_retry_wait=0.0)
    rule = AlertConfig(id="oreshnik", query="Орешник", recipients=("analyst@example.org",))
    items = [art(1, "Орешник: вход в кабинет", feed="a", url="https://раураl.com/login"),  # Cyrillic р, а, у
             art(2, "Орешник: сайт", feed="b", url="https://xn--pple-43d.com/news"),  # аpple.com, Cyrillic а
             art(3, "Орешник: пример", feed="c", url="https://пример.рф/1"),
             art(4, "Орешник: обычный", feed="d", url="https://paypal.com/news")]
    store = SQLiteStore(settings.store_path)
    try:
        queue_matches(items, store=store, rules=[rule], now=NOW)
        store.index(items)
        alert_stage(settings=settings, store=store, rules=[rule], now=NOW)
    finally:
        store.close()
    [(_, _, msg)] = smtp_server.messages
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = msg.get_body(("html",)).get_content()
    lines = {line.split("<", 1)[1].split(">", 1)[0]: line for line in text.splitlines() if "Source:" in line}
    assert lines["https://раураl.com/login"].endswith(
        "[link host раураl.com = xn--l-7sba6dbr.com: mixed Cyrillic and Latin letters in one name]")
    assert "[link host аpple.com = xn--pple-43d.com: mixed Cyrillic and Latin letters in one name]" in \
        lines["https://xn--pple-43d.com/news"]
    assert "[link host пример.рф = xn--e1afmkfd.xn--p1ai: an internationalised name, not an ASCII one]" in \
        lines["https://пример.рф/1"]
    assert "[" not in lines["https://paypal.com/news"]  # an ordinary ASCII host: no note
    assert html.count("xn--l-7sba6dbr.com: mixed Cyrillic and Latin letters") == 1
    assert html.count("link host ") == 3


def test_a_long_cycle_claims_at_the_time_it_sends_not_when_it_started(tmp_path):
    """A claim stamped with the cycle's start would look stale to another cycle after a 20-minute poll."""
    from pipeline.cycle import run_cycle
    from pipeline.mail import SendResult

    settings = make_settings(tmp_path)
    rule = AlertConfig(id="oreshnik", query="Орешник", recipients=("analyst@example.org",))
    store = SQLiteStore(settings.store_path)
    a = art(1, "Орешник в Беларуси")
    queue_matches([a], store=store, rules=[rule], now=NOW)
    store.index([a])
    seen: list = []

    class Peek:
        def describe(self) -> str:
            return "peek"

        def send(self, message, recipients):
            [entry] = store.alert_pending("oreshnik")
            seen.append(entry.last_attempt_at)
            return SendResult(message_id=str(message["Message-ID"]), accepted=tuple(recipients))

    times = iter([NOW] + [NOW + timedelta(minutes=20)] * 10)  # the poll took 20 minutes
    try:
        run_cycle(settings, store=store, feeds=[], topics=[], alerts=[rule], clock=lambda: next(times), mailer=Peek())
    finally:
        store.close()
    assert seen == [NOW + timedelta(minutes=20)]


@pytest.mark.slow
def test_flood_through_the_whole_path_every_real_story_in_its_own_cycle(tmp_path, feed_server, smtp_server):
    """Loopback feeds → run_cycle → real SMTP, three cycles: a flood feed adds 1,000 new matching items
    every cycle next to a real feed's one story.  Each real story is in its own cycle's email; no
    (rule, item) is mailed twice; nothing is left pending to grow the next cycle."""
    from pipeline.config import FeedConfig
    from pipeline.cycle import run_cycle

    # (the generated items are dated back over days: the first-run look-back would hold most back)
    settings = make_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=smtp_server.port,
                             smtp_from="mediamon@example.org", smtp_retry_wait=0.0,
                             alert_first_run_lookback=3650 * 86400.0)
    rule = AlertConfig(id="oreshnik", query="Oreshnik", recipients=("analyst@example.org",))
    flood_url = feed_server.add("/flood.xml", b"")
    real_url = feed_server.add("/real.xml", b"")
    feeds = [FeedConfig(id="flood", url=flood_url, source="Flood", language="en"),
             FeedConfig(id="real", url=real_url, source="BelTA", language="en")]
    store = SQLiteStore(settings.store_path)
    try:
        for k in range(3):
            feed_server.bodies["/flood.xml"] = rss([{"title": f"Oreshnik deal {k}-{i} buy now",
                                                     "link": f"https://spam.example/{k}/{i}"} for i in range(1000)])
            feed_server.bodies["/real.xml"] = rss([{"title": f"Oreshnik deployed, report {k}",
                                                    "link": f"https://belta.example/{k}"}])
            report = run_cycle(settings, store=store, feeds=feeds, topics=[], alerts=[rule],
                               now=datetime.now(timezone.utc) + timedelta(hours=k))
            c = report.counters_dict()
            assert c["alert_emails_sent"] == 1 and c["alert_items_sent"] == 26, c
            assert c["alert_items_summarised"] == 975, c
            text = smtp_server.messages[k][2].get_body(("plain",)).get_content()
            assert f"Oreshnik deployed, report {k}" in text and "and 975 more from Flood" in text
            assert store.alert_pending("oreshnik") == []
    finally:
        store.close()
    mailed = pairs_mailed(smtp_server)
    assert set(mailed.values()) == {1} and len(mailed) == 3 * 26


def test_an_unusable_lock_file_is_a_clear_store_error(tmp_path):
    from pipeline.errors import StoreError

    settings = make_settings(tmp_path)
    lock_path(settings).mkdir(parents=True)  # something that cannot be opened as the lock file
    with pytest.raises(StoreError, match="cannot open the store's lock file"):
        with cycle_lock(settings):
            pass


def test_es_summarised_marks_only_pending_pairs(httpserver):
    pytest.importorskip("elasticsearch")
    from werkzeug import Response

    from ..test_es_bulk import ES_HEADERS

    bulks: list[list[dict]] = []

    def bulk(request):
        lines = [json.loads(x) for x in request.get_data().decode().splitlines() if x.strip()]
        bulks.append(lines)
        res = {"r:a1": "updated", "r:a2": "noop"}  # a2 was no longer pending (sent or failed meanwhile)
        items = [{"update": {"_index": "mediamon-alerts-queue", "_id": x["update"]["_id"], "status": 200,
                             "result": res[x["update"]["_id"]]}} for x in lines[::2]]
        return Response(json.dumps({"took": 1, "errors": False, "items": items}), headers=ES_HEADERS)

    httpserver.expect_request("/_bulk").respond_with_handler(bulk)
    httpserver.expect_request(
        "/mediamon-articles,mediamon-feed-state,mediamon-translations,mediamon-alerts-queue,"
        "mediamon-alerts-sent,mediamon-alerts-emails", method="HEAD").respond_with_response(
        Response(status=200, headers=ES_HEADERS))
    _, store = _es_store(httpserver)
    assert store.alert_mark_summarised("r", ["a1", "a2"], at=NOW, note="summarised in <m@x>") == 1
    script = bulks[0][1]["script"]
    assert "ctx._source.status != 'pending'" in script["source"] and "'summarised'" in script["source"]
    assert script["params"] == {"note": "summarised in <m@x>", "at": "2026-11-23T12:00:00Z"}
