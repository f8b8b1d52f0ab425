"""The whole cycle against a loopback feed server: our fixtures and every real feed in ../shared."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from werkzeug import Response

from pipeline.cycle import run_cycle
from pipeline.errors import StoreUnavailable
from pipeline.parse import parse_feed
from pipeline.store.sqlite import SQLiteStore

from .conftest import FEED_FIXTURES, ROOT, SHARED_FEEDS, make_settings, write_feeds_yaml

OUR_FEEDS = {
    "ru_news.xml": "ru",
    "en_news.xml": "en",
    "ru_cp1251.xml": "ru",
    "ru_cp1251_labelled_utf8.xml": "ru",
}


FIXTURE_DOMAINS = ("news.example.ru", "oblast.example.ru", "world.example.com")


def _serve_fixtures(feed_server) -> list[dict]:
    feeds = []
    for name, lang in OUR_FEEDS.items():
        url = feed_server.add(f"/ours/{name}", (FEED_FIXTURES / name).read_bytes())
        # the outlets' own feeds (served from loopback): entitled to their links' hosts (issue 16)
        feeds.append({"id": "ours-" + name.split(".")[0].replace("_", "-"), "url": url,
                      "source": f"Ours {name}", "language": lang, "domains": list(FIXTURE_DOMAINS)})
    return feeds


def _serve_shared(feed_server) -> tuple[list[dict], set[str]]:
    """Every real feed; returns the feed entries and the ids of feeds that cannot be parsed."""
    feeds, unparseable = [], set()
    for path in sorted(SHARED_FEEDS.glob("*.xml")):
        fid = "shared-" + path.stem.lower().replace("_", "-")[:50]
        url = feed_server.add(f"/shared/{path.name}", path.read_bytes())
        feeds.append({"id": fid, "url": url, "source": path.stem})
        try:
            if not parse_feed(path.read_bytes(), url=url).entries:
                unparseable.add(fid)
        except Exception:  # noqa: BLE001 - expected for the broken ones
            unparseable.add(fid)
    return feeds, unparseable


def _ids_of(feed: dict, feed_server) -> set[str]:
    from datetime import datetime, timezone

    from pipeline.config import FeedConfig
    from pipeline.normalize import normalize_feed

    path = "/" + feed["url"].split("/", 3)[3]
    parsed = parse_feed(feed_server.bodies[path], url=feed["url"])
    fc = FeedConfig(id=feed["id"], url=feed["url"], source=feed["source"], domains=tuple(feed.get("domains", ())))
    return {a.id for a in normalize_feed(parsed, fc, datetime.now(timezone.utc))[0]}


def _all_items_in_other_feeds(feed: dict, feeds: list[dict], feed_server) -> bool:
    """Every item of ``feed`` is also in another feed (the same story: one document, stored under
    whichever feed's poll completed first)."""
    others: set[str] = set()
    for f in feeds:
        if f is feed:
            continue
        try:
            others |= _ids_of(f, feed_server)
        except Exception:  # noqa: BLE001 - unparseable feeds contribute nothing
            pass
    return _ids_of(feed, feed_server) <= others


@pytest.mark.slow
def test_cycle_end_to_end_then_conditional_second_run(tmp_path, feed_server, httpserver):
    settings = make_settings(tmp_path)
    feeds = _serve_fixtures(feed_server)
    unparseable: set[str] = set()
    if SHARED_FEEDS.is_dir():
        shared, unparseable = _serve_shared(feed_server)
        feeds += shared
    httpserver.expect_request("/missing.xml").respond_with_data("nope", status=404)
    httpserver.expect_request("/page.html").respond_with_data("<html><body>hi</body></html>",
                                                              content_type="text/html")
    feeds.append({"id": "missing", "url": httpserver.url_for("/missing.xml"), "source": "Missing"})
    feeds.append({"id": "not-a-feed", "url": httpserver.url_for("/page.html"), "source": "HTML"})
    unparseable |= {"missing", "not-a-feed"}
    write_feeds_yaml(settings.config_dir, feeds)

    report = run_cycle(settings)
    c = report.counters_dict()
    assert c["feeds"] == len(feeds) and c["failed_feeds"] == len(unparseable)
    assert c["fetched"] == len(feeds) - len(unparseable)
    assert c["new"] > 0 and c["indexed"] == c["new"]
    failed = {f.feed_id for f in report.feeds if f.status == "failed"}
    assert failed == unparseable
    assert all(f.error for f in report.feeds if f.status == "failed")

    store = SQLiteStore(settings.store_path)
    try:
        by_feed = store.stats().by_source
        total = store.count()
        states = store.get_feed_states()
    finally:
        store.close()
    # every parseable feed has its items stored, unless all of them are the same stories as another
    # feed's (same canonical URL: one document; e.g. ru_cp1251 and its mislabelled copy: the one
    # whose poll completes first keeps them)
    for f in feeds:
        if f["id"] in unparseable:
            continue
        assert by_feed.get(f["source"], 0) > 0 or _all_items_in_other_feeds(f, feeds, feed_server), f["id"]
    assert total == c["new"] and c["new"] + c["duplicates"] == c["items_seen"]
    assert states["missing"].consecutive_failures == 1 and states["missing"].next_fetch_at is not None
    assert states["ours-ru-news"].etag and states["ours-ru-news"].last_success_at

    n_requests = len(feed_server.requests)
    report2 = run_cycle(settings)
    c2 = report2.counters_dict()
    assert c2["new"] == 0 and c2["indexed"] == 0
    # feeds backing off after an error are skipped, the rest answer 304 to our conditional request
    assert c2["not_modified"] == c["fetched"]
    second = feed_server.requests[n_requests:]
    assert second and all(r["if_none_match"] for r in second)
    store = SQLiteStore(settings.store_path)
    try:
        assert store.count() == total
    finally:
        store.close()


def test_same_story_in_two_feeds_is_one_document(tmp_path, feed_server):
    settings = make_settings(tmp_path)
    body = (FEED_FIXTURES / "ru_news.xml").read_bytes()
    u1 = feed_server.add("/a.xml", body)
    u2 = feed_server.add("/b.xml", body.replace(b"utm_source=rss", b"utm_source=other"))
    # both feeds are the outlet's own (issue 16: only a feed entitled to a URL's host claims the
    # URL's global id; the relative link resolves to the feeds' own host, which both are entitled to)
    write_feeds_yaml(settings.config_dir, [
        {"id": "a", "url": u1, "source": "A", "language": "ru", "domains": ["news.example.ru"]},
        {"id": "b", "url": u2, "source": "B", "language": "ru", "domains": ["news.example.ru"]}])
    c = run_cycle(settings).counters_dict()
    # 4 items per feed; the 3 with a link share canonical URLs across feeds (the javascript: one
    # does not, so it is keyed by feed URL + guid and stays per feed)
    assert c["items_seen"] == 8 and c["new"] == 5 and c["duplicates"] == 3


def test_local_file_feeds(tmp_path):
    settings = make_settings(tmp_path)
    write_feeds_yaml(settings.config_dir, [
        {"id": "local", "url": str(FEED_FIXTURES / "en_news.xml"), "source": "Local", "language": "en"}])
    c = run_cycle(settings).counters_dict()
    assert c["new"] == 3
    c2 = run_cycle(settings).counters_dict()
    assert c2["not_modified"] == 1 and c2["new"] == 0


def test_store_failure_leaves_feed_state_and_next_run_stores_everything(tmp_path, feed_server):
    settings = make_settings(tmp_path)
    write_feeds_yaml(settings.config_dir, _serve_fixtures(feed_server))
    store = SQLiteStore(settings.store_path)
    real_index = store.index

    def broken(articles):
        raise StoreUnavailable("disk full (injected)")

    store.index = broken  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        run_cycle(settings, store=store)
    assert store.get_feed_states() == {} and store.count() == 0
    store.index = real_index  # type: ignore[method-assign]
    c = run_cycle(settings, store=store).counters_dict()
    assert c["fetched"] == len(OUR_FEEDS) and c["not_modified"] == 0  # no validators were saved
    assert store.count() == c["new"] == 9
    store.close()


def _run_killed_after(settings, stage: str) -> None:
    """run_cycle in a real child process that dies (os._exit) the first time ``stage`` ends."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pipeline.settings import Settings
        from pipeline.cycle import run_cycle
        s = Settings.model_validate_json({settings.model_dump_json()!r})
        def hook(name):
            if name == {stage!r}:
                os._exit(137)
        run_cycle(s, hook=hook)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr


@pytest.mark.parametrize("stage", ["polled", "deduplicated", "classified"])
def test_killed_between_parse_and_store_then_every_item_stored_once(tmp_path, feed_server, stage):
    """A real process is killed (os._exit) after the given stage; the rerun stores each item once."""
    settings = make_settings(tmp_path)
    feeds = _serve_fixtures(feed_server)
    write_feeds_yaml(settings.config_dir, feeds)
    _run_killed_after(settings, stage)
    store = SQLiteStore(settings.store_path)
    try:
        assert store.count() == 0 and store.get_feed_states() == {}
    finally:
        store.close()
    c = run_cycle(settings).counters_dict()
    c2 = run_cycle(settings).counters_dict()
    store = SQLiteStore(settings.store_path)
    try:
        assert store.count() == c["new"] == 9 and c2["new"] == 0
        ids = [r[0] for r in store.connection.execute("SELECT id FROM articles")]
        assert len(ids) == len(set(ids))
    finally:
        store.close()


def test_one_bad_feed_never_stops_the_others(tmp_path, feed_server, httpserver):
    settings = make_settings(tmp_path, fetch_timeout=2.0)
    feeds = _serve_fixtures(feed_server)
    httpserver.expect_request("/boom").respond_with_response(Response(b"\x00\xff garbage", status=200))
    httpserver.expect_request("/500").respond_with_data("err", status=500)
    feeds += [{"id": "garbage", "url": httpserver.url_for("/boom"), "source": "G"},
              {"id": "err500", "url": httpserver.url_for("/500"), "source": "E"}]
    write_feeds_yaml(settings.config_dir, feeds)
    report = run_cycle(settings)
    c = report.counters_dict()
    assert c["failed_feeds"] == 2 and c["new"] == 9 and c["errors"] >= 2
    assert json.dumps(report.to_dict())  # the report serialises


# --- storing while polling (settings.cycle_batch_items) --------------------------------------------

def _shared_subset(feed_server, n: int = 12) -> list[dict]:
    feeds, unparseable = _serve_shared(feed_server)
    return [f for f in feeds if f["id"] not in unparseable][:n]


@pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason="needs ../shared/feeds")
def test_batches_stored_while_polling_give_the_same_store(tmp_path, feed_server):
    """Tiny batches (stored while the poll goes on) and one batch give the same articles,
    counters and feed states."""
    feeds = _serve_fixtures(feed_server) + _shared_subset(feed_server)
    results = {}
    for name, batch in (("one", 1_000_000), ("tiny", 7)):
        (tmp_path / name).mkdir()
        settings = make_settings(tmp_path / name, cycle_batch_items=batch)
        write_feeds_yaml(settings.config_dir, feeds)
        stages: list[str] = []
        report = run_cycle(settings, hook=stages.append)
        store = SQLiteStore(settings.store_path)
        try:
            docs = {r[0]: (r[1], r[2]) for r in store.connection.execute(
                "SELECT id, content_hash, language FROM articles")}
            topics = sorted(store.connection.execute("SELECT topic, a.id FROM article_topics t "
                                                     "JOIN articles a ON a.rowid = t.article_rowid"))
            states = {k: (v.etag, v.consecutive_failures) for k, v in store.get_feed_states().items()}
        finally:
            store.close()
        c = report.counters_dict()
        results[name] = (docs, topics, states, {k: c[k] for k in ("new", "duplicates", "indexed", "items_seen",
                                                                  "fetched", "failed_feeds")},
                         sorted(report.new_ids))
        if name == "tiny":
            assert stages.count("indexed") > 3  # really stored in several batches
            assert stages[-2:] == ["alerted", "committed"] and stages.count("polled") == 1
        else:
            assert stages.count("indexed") == 1 and stages.index("polled") < stages.index("deduplicated")
    assert results["one"] == results["tiny"]
    assert results["one"][3]["new"] == len(results["one"][0]) > 50


@pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason="needs ../shared/feeds")
def test_killed_after_a_batch_stored_mid_poll_then_every_item_once(tmp_path, feed_server):
    """The process dies right after the first batch was indexed while polling still ran: no feed
    state was saved, so the rerun fetches everything again and stores each item once."""
    settings = make_settings(tmp_path, cycle_batch_items=5)
    feeds = _serve_fixtures(feed_server) + _shared_subset(feed_server)
    write_feeds_yaml(settings.config_dir, feeds)
    _run_killed_after(settings, "indexed")  # the first batch stored mid-poll
    store = SQLiteStore(settings.store_path)
    try:
        partial = store.count()
        assert 0 < partial and store.get_feed_states() == {}
    finally:
        store.close()
    c = run_cycle(settings).counters_dict()
    store = SQLiteStore(settings.store_path)
    try:
        ids = [r[0] for r in store.connection.execute("SELECT id FROM articles")]
        assert len(ids) == len(set(ids)) == partial + c["new"]
        assert c["fetched"] == len(feeds)  # no validators were saved by the killed run
    finally:
        store.close()


def test_store_failure_mid_poll_stops_the_poll(tmp_path, feed_server):
    """A batch that cannot be stored while polling still runs ends the cycle with the store's
    error; the background poll is stopped (no thread left behind) and no feed state is saved."""
    import threading

    settings = make_settings(tmp_path, cycle_batch_items=1)
    write_feeds_yaml(settings.config_dir, _serve_fixtures(feed_server))
    store = SQLiteStore(settings.store_path)

    def broken(articles):
        raise StoreUnavailable("disk full (injected)")

    store.index = broken  # type: ignore[method-assign]
    try:
        with pytest.raises(StoreUnavailable):
            run_cycle(settings, store=store)
        assert store.get_feed_states() == {} and store.count() == 0
        assert not [t for t in threading.enumerate() if t.name == "mediamon-poll"]
    finally:
        store.close()


def test_edges_are_parameters_http_mail_and_clock(tmp_path, smtp_server):  # noqa: F811
    """``run_cycle`` takes its edges: the feed comes through an ``httpx.MockTransport`` (no socket,
    a host that does not exist), the alert goes through the given SMTP mailer (the settings name no
    SMTP host: without it the email would land in the outbox), and every time comes from the clock."""
    from datetime import datetime, timezone

    import httpx

    from pipeline.config import AlertConfig, FeedConfig
    from pipeline.mail import make_mailer

    settings = make_settings(tmp_path)
    assert settings.smtp_host is None
    body = (FEED_FIXTURES / "en_news.xml").read_bytes()
    requested: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        # a stream, not content=: the fetcher reads the raw body (aiter_raw) to cap and decode it itself
        return httpx.Response(200, stream=httpx.ByteStream(body),
                              headers={"content-type": "application/rss+xml", "etag": '"v1"'})

    (tmp_path / "mail").mkdir()
    mailer = make_mailer(make_settings(tmp_path / "mail", smtp_host="127.0.0.1", smtp_port=smtp_server.port,
                                       smtp_from="mediamon@example.org", smtp_retry_wait=0.0, smtp_timeout=5.0))
    at = datetime(2026, 11, 24, 10, 30, tzinfo=timezone.utc)
    feed = FeedConfig(id="en", url="https://news.example.invalid/feed.xml", source="EN", language="en")
    rule = AlertConfig(id="oreshnik", query="Oreshnik", recipients=["analyst@example.org"])

    report = run_cycle(settings, feeds=[feed], topics=[], alerts=[rule], transport=httpx.MockTransport(handler),
                       mailer=mailer, clock=lambda: at)

    c = report.counters_dict()
    assert requested == ["https://news.example.invalid/feed.xml"]
    assert c["fetched"] == 1 and c["new"] > 0 and c["indexed"] == c["new"]
    assert c["alert_emails_sent"] == 1 and len(smtp_server.messages) == 1
    assert not settings.outbox_dir.exists() or not any(settings.outbox_dir.iterdir())
    assert report.started_at == at and report.finished_at == at
    from email.utils import parsedate_to_datetime

    assert parsedate_to_datetime(smtp_server.messages[0][2]["Date"]) == at
    with SQLiteStore(settings.store_path) as store:
        state = store.get_feed_states()["en"]
    assert state.last_fetch_at == at and state.etag == '"v1"'
