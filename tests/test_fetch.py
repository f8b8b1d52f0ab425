"""Fetching: conditional GET, redirects, status handling, limits, address checks (loopback only)."""

from __future__ import annotations

import asyncio
import gzip
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from werkzeug import Response

from pipeline import fetch as fetch_mod
from pipeline.config import FeedConfig
from pipeline.errors import BlockedAddressError, PermanentFeedError, TransientFeedError
from pipeline.fetch import fetch_feed, make_client, parse_retry_after
from pipeline.models import FeedState
from pipeline.politeness import backoff_seconds, is_due, next_state

from .conftest import FEED_FIXTURES, make_settings

RSS = (FEED_FIXTURES / "ru_news.xml").read_bytes()
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def _fetch(settings, url, state=None, feed_id="f", transport=None):
    feed = FeedConfig(id=feed_id, url=url, source="S")

    async def go():
        client = make_client(settings, transport=transport)
        try:
            return await fetch_feed(client, feed, state, settings)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_conditional_get_etag_and_last_modified(tmp_path, feed_server):
    settings = make_settings(tmp_path)
    url = feed_server.add("/ru.xml", RSS)
    first = _fetch(settings, url)
    assert first.status == 200 and first.content == RSS and first.etag
    state = next_state(FeedState("f", url), first, NOW, settings, new_items=4)
    second = _fetch(settings, url, state)
    assert second.not_modified and second.content is None
    assert feed_server.requests[-1]["if_none_match"] == first.etag
    assert feed_server.requests[-1]["if_modified_since"] == feed_server.LAST_MODIFIED
    assert feed_server.requests[0]["user_agent"].startswith("mediamon/")


def test_permanent_redirect_updates_url_temporary_does_not(tmp_path, httpserver):
    settings = make_settings(tmp_path)
    httpserver.expect_request("/old").respond_with_response(
        Response(status=301, headers={"Location": "/new"}))
    httpserver.expect_request("/new").respond_with_data(RSS, content_type="application/rss+xml")
    httpserver.expect_request("/tmp").respond_with_response(
        Response(status=302, headers={"Location": httpserver.url_for("/new")}))
    r301 = _fetch(settings, httpserver.url_for("/old"))
    assert r301.status == 200 and r301.permanent_url == httpserver.url_for("/new")
    s = next_state(FeedState("f", httpserver.url_for("/old")), r301, NOW, settings)
    assert s.url == httpserver.url_for("/new")
    r302 = _fetch(settings, httpserver.url_for("/tmp"))
    assert r302.status == 200 and r302.permanent_url is None
    s = next_state(FeedState("f", httpserver.url_for("/tmp")), r302, NOW, settings)
    assert s.url == httpserver.url_for("/tmp")


def test_redirect_loop_is_bounded(tmp_path, httpserver):
    settings = make_settings(tmp_path, max_redirects=3)
    httpserver.expect_request("/loop").respond_with_response(Response(status=302, headers={"Location": "/loop"}))
    res = _fetch(settings, httpserver.url_for("/loop"))
    assert isinstance(res.error, PermanentFeedError) and "too many redirects" in str(res.error)


def test_410_disables_feed(tmp_path, httpserver):
    settings = make_settings(tmp_path)
    httpserver.expect_request("/gone").respond_with_data("", status=410)
    res = _fetch(settings, httpserver.url_for("/gone"))
    assert res.error is not None and res.error.status == 410
    state = next_state(FeedState("f", "u"), res, NOW, settings)
    assert state.disabled and "410" in state.disabled_reason
    feed = FeedConfig(id="f", url="u", source="S")
    assert is_due(feed, state, NOW + timedelta(days=30), settings)[0] is False


@pytest.mark.parametrize("header,expected", [("120", 120.0), ("Tue, 24 Nov 2026 12:10:00 GMT", 600.0)])
def test_429_and_503_honour_retry_after(tmp_path, httpserver, header, expected):
    settings = make_settings(tmp_path)
    httpserver.expect_request("/busy").respond_with_data("slow down", status=429, headers={"Retry-After": header})
    res = _fetch(settings, httpserver.url_for("/busy"))
    assert isinstance(res.error, TransientFeedError) and res.error.status == 429
    if header.isdigit():
        assert res.error.retry_after == expected
    assert parse_retry_after(header, NOW) == expected
    err = TransientFeedError("HTTP 503", status=503, retry_after=expected)
    state = next_state(FeedState("f", "u"), fetch_mod.FetchResult("f", "u", "u", error=err), NOW, settings)
    assert state.next_fetch_at == NOW + timedelta(seconds=expected)
    assert not state.disabled


def test_other_failures_back_off_exponentially_with_cap_and_never_disable(tmp_path, httpserver):
    settings = make_settings(tmp_path, backoff_base=60, backoff_cap=600)
    httpserver.expect_request("/err").respond_with_data("oops", status=500)
    res = _fetch(settings, httpserver.url_for("/err"))
    assert isinstance(res.error, TransientFeedError)
    state = FeedState("f", "u")
    delays = []
    for _ in range(8):
        state = next_state(state, res, NOW, settings)
        delays.append((state.next_fetch_at - NOW).total_seconds())
        assert not state.disabled
    assert delays[:5] == [60, 120, 240, 480, 600] and max(delays) == 600
    assert backoff_seconds(100, settings) == 600
    # a success resets the failure count
    ok = fetch_mod.FetchResult("f", "u", "u", status=200, content=b"x")
    assert next_state(state, ok, NOW, settings).consecutive_failures == 0


def test_body_cap_on_plain_and_gzip_bodies(tmp_path, httpserver):
    settings = make_settings(tmp_path, max_body_bytes=100_000)
    big = b"<rss>" + b"a" * 200_000 + b"</rss>"
    httpserver.expect_request("/big").respond_with_data(big)
    bomb = gzip.compress(b"\0" * 50_000_000)  # 50 MB of zeros in ~50 KB
    httpserver.expect_request("/bomb").respond_with_data(bomb, headers={"Content-Encoding": "gzip"})
    small = gzip.compress(RSS)
    httpserver.expect_request("/gz").respond_with_data(small, headers={"Content-Encoding": "gzip"})
    res = _fetch(settings, httpserver.url_for("/big"))
    assert isinstance(res.error, PermanentFeedError) and "exceeds" in str(res.error)
    res = _fetch(settings, httpserver.url_for("/bomb"))
    assert isinstance(res.error, PermanentFeedError) and "exceeds" in str(res.error)
    res = _fetch(settings, httpserver.url_for("/gz"))
    assert res.content == RSS


def test_total_deadline_stops_a_trickling_server(tmp_path, httpserver):
    settings = make_settings(tmp_path, fetch_timeout=1.0)

    def trickle():
        for _ in range(10):
            time.sleep(0.4)
            yield b"<"

    httpserver.expect_request("/slow").respond_with_response(Response(trickle(), status=200))
    t0 = time.monotonic()
    res = _fetch(settings, httpserver.url_for("/slow"))
    assert time.monotonic() - t0 < 3.5
    assert isinstance(res.error, TransientFeedError) and "deadline" in str(res.error)


def test_private_addresses_refused_unless_allowed(tmp_path, httpserver):
    httpserver.expect_request("/x").respond_with_data(RSS)
    strict = make_settings(tmp_path, allow_private_networks=False)
    for url in (httpserver.url_for("/x"), "http://2130706433/feed", "http://[::1]/feed",
                "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/feed", "http://0.0.0.0/"):
        res = _fetch(strict, url)
        assert isinstance(res.error, BlockedAddressError), url
    for url in ("gopher://127.0.0.1/x", "ftp://example.org/feed"):
        with pytest.raises(ValueError, match="http"):
            FeedConfig(id="f", url=url, source="S")  # refused at config time
    assert not httpserver.log  # nothing reached the server
    allowed = make_settings(tmp_path, allow_private_networks=True)
    assert _fetch(allowed, httpserver.url_for("/x")).content == RSS


def test_every_redirect_hop_is_checked(tmp_path):
    """The first hop is a public address literal answered by an ``httpx.MockTransport`` (nothing is
    contacted); its redirects to loopback/private/link-local/file:/gopher: targets are refused
    before any request is made to them."""
    strict = make_settings(tmp_path, allow_private_networks=False)
    public = "93.184.215.14"  # a public address: passes the check, never reached (the transport answers)
    targets = {
        "/to-loopback": "http://127.0.0.1:8080/x",
        "/to-decimal": "http://2130706433:8080/x",
        "/to-linklocal": "http://169.254.169.254/latest/meta-data/",
        "/to-private": "http://10.0.0.7/x",
        "/to-file": "file:///etc/passwd",
        "/to-gopher": "gopher://127.0.0.1:70/_x",
    }
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.url.path))
        return httpx.Response(302, headers={"Location": targets[request.url.path]})

    transport = httpx.MockTransport(handler)
    for path in targets:
        res = _fetch(strict, f"http://{public}{path}", transport=transport)
        assert isinstance(res.error, BlockedAddressError), (path, res.error)
    assert seen == [(public, path) for path in targets]  # only the first hops were requested


def test_local_file_feeds_and_conditional_by_mtime(tmp_path):
    settings = make_settings(tmp_path)
    p = tmp_path / "feed.xml"
    p.write_bytes(RSS)
    first = _fetch(settings, str(p))
    assert first.status == 200 and first.content == RSS
    state = next_state(FeedState("f", str(p)), first, NOW, settings)
    assert _fetch(settings, str(p), state).not_modified
    assert _fetch(settings, "file://" + str(p)).content == RSS
    missing = _fetch(settings, str(tmp_path / "nope.xml"))
    assert isinstance(missing.error, PermanentFeedError)


def test_per_host_limit_and_global_limit(tmp_path):
    """At most ``fetch_per_host`` requests in flight to one host, ``fetch_concurrency`` in all;
    a busy host does not hold back the others."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from pipeline.poll import poll

    lock = threading.Lock()
    in_flight: dict[str, int] = {}
    peak: dict[str, int] = {}
    total = {"now": 0, "peak": 0}

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            host = self.headers["Host"].split(":")[0]
            with lock:
                in_flight[host] = in_flight.get(host, 0) + 1
                peak[host] = max(peak.get(host, 0), in_flight[host])
                total["now"] += 1
                total["peak"] = max(total["peak"], total["now"])
            time.sleep(0.15)
            with lock:
                in_flight[host] -= 1
                total["now"] -= 1
            self.send_response(304)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    servers = []
    for addr in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        srv = ThreadingHTTPServer((addr, 0), Slow)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    try:
        feeds = [FeedConfig(id=f"a{i}", url=f"http://127.0.0.1:{servers[0].server_port}/a{i}.xml", source="A")
                 for i in range(8)]
        feeds += [FeedConfig(id=f"b{i}", url=f"http://127.0.0.2:{servers[1].server_port}/b{i}.xml", source="B")
                  for i in range(3)]
        feeds += [FeedConfig(id=f"c{i}", url=f"http://127.0.0.3:{servers[2].server_port}/c{i}.xml", source="C")
                  for i in range(3)]
        settings = make_settings(tmp_path, fetch_per_host=2, fetch_concurrency=5)
        started = time.monotonic()
        results = poll(feeds, {}, settings)
        elapsed = time.monotonic() - started
    finally:
        for srv in servers:
            srv.shutdown()
    assert all(r.fetch.status == 304 for r in results)
    assert peak == {"127.0.0.1": 2, "127.0.0.2": 2, "127.0.0.3": 2}
    assert total["peak"] == 5  # the two quiet hosts used the slots the busy one could not
    assert elapsed < 8 * 0.15  # not one request at a time: the busy host alone takes 4 rounds


def test_each_host_is_resolved_and_checked_once_per_poll(tmp_path, httpserver, monkeypatch):
    """Feeds of one outlet share its checked resolution within a poll (the address check still
    runs: once per host and port); the next poll resolves again."""
    from pipeline.poll import poll

    calls: list[tuple[str, int]] = []

    async def counting(host, port, settings):
        calls.append((host, port))
        await asyncio.sleep(0.05)  # concurrent fetches of the host wait for the one lookup
        return None  # treated as public: connect normally (loopback in reality)

    monkeypatch.setattr(fetch_mod, "resolve_checked", counting)
    httpserver.expect_request("/redirect").respond_with_response(
        Response(status=302, headers={"Location": f"http://127.0.0.1:{httpserver.port}/f0.xml"}))
    for i in range(6):
        httpserver.expect_request(f"/f{i}.xml").respond_with_data(RSS, content_type="application/rss+xml")
    feeds = [FeedConfig(id=f"f{i}", url=f"http://localhost:{httpserver.port}/f{i}.xml", source="S")
             for i in range(6)]
    feeds.append(FeedConfig(id="r", url=f"http://localhost:{httpserver.port}/redirect", source="S"))
    strict = make_settings(tmp_path, allow_private_networks=False)
    results = poll(feeds, {}, strict)
    assert all(r.fetch.status == 200 for r in results), [r.error for r in results]
    # one lookup for localhost, one for the redirect target's host: every hop is still checked
    assert sorted(calls) == [("127.0.0.1", httpserver.port), ("localhost", httpserver.port)]
    poll(feeds[:1], {}, strict)
    assert len(calls) == 3  # a new poll, a new lookup


@pytest.mark.parametrize("header", ["soon", "²", "٣", "-5", "1.5", "Mon, 32 Foo 2026 99:99:99 GMT", "\u00ff\u00fe"],
                         ids=["word", "superscript-two", "arabic-three", "negative", "fraction", "bad-date", "latin1"])
def test_a_retry_after_that_is_neither_number_nor_date_is_ignored_with_a_log_line(tmp_path, httpserver, caplog,
                                                                                  header):
    """Issue 16, item 8: '²' passed str.isdigit and float() raised: an "unexpected error"."""
    settings = make_settings(tmp_path)
    wire = header.encode("utf-8").decode("latin-1")  # the header's bytes as UTF-8 (httpx decodes them so)
    httpserver.expect_request("/busy").respond_with_data("slow down", status=503, headers={"Retry-After": wire})
    with caplog.at_level("WARNING", logger="mediamon"):
        res = _fetch(settings, httpserver.url_for("/busy"))
    assert isinstance(res.error, TransientFeedError) and str(res.error) == "HTTP 503", res.error
    assert res.error.status == 503 and res.error.retry_after is None
    assert [r.getMessage() for r in caplog.records].count("retry_after_ignored") == 1
    state = next_state(FeedState("f", "u"), res, NOW, settings)
    assert state.next_fetch_at == NOW + timedelta(seconds=backoff_seconds(1, settings))  # the usual backoff
    assert parse_retry_after(header, NOW) is None
