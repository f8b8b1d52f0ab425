"""Parsing in a process pool (pipeline/parsepool.py): the records cross process boundaries intact,
pool and thread give identical Articles, errors stay per feed, a dead worker is survived, and
poll_async uses the pool only when enough bytes arrived."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
from datetime import datetime, timezone

import pytest

from pipeline.config import FeedConfig
from pipeline.poll import PollResult, parse_and_normalize, poll
from pipeline.errors import BlockedAddressError, FeedParseError, PermanentFeedError, TransientFeedError
from pipeline.fetch import FetchResult
from pipeline.models import Article, TopicMatch, Translation
from pipeline.normalize import LanguageDetector
from pipeline.parsepool import Parser

from .conftest import make_settings

FETCHED_AT = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
RU = "Россия разместит ракетный комплекс «Орешник» в Белоруссии, заявил министр обороны."
EN = "Air defences intercepted missiles and drones overnight over the Black Sea, officials said."


def rss(feed_no: int, items: int) -> bytes:
    lang = "ru" if feed_no % 2 else "en"
    text = RU if lang == "ru" else EN
    entries = "".join(
        f"<item><title>{text[:40]} {feed_no}-{i}</title><link>https://example.org/{feed_no}/{i}?utm_source=x</link>"
        f"<guid>g{feed_no}-{i}</guid><pubDate>Mon, 23 Nov 2026 {i % 24:02d}:00:00 GMT</pubDate>"
        f"<description>&lt;p&gt;{text} {text} item {i}&lt;/p&gt;</description></item>"
        for i in range(items))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Feed {feed_no}</title>'
            f"<link>https://example.org/{feed_no}</link><language>{lang}</language>{entries}</channel></rss>"
            ).encode("utf-8")


def feed(n: int) -> FeedConfig:
    return FeedConfig(id=f"f{n}", url=f"https://example.org/{n}.xml", source=f"Source {n}")


def fetched(n: int, body: bytes) -> FetchResult:
    return FetchResult(f"f{n}", f"https://example.org/{n}.xml", f"https://example.org/{n}.xml", status=200,
                       content=body, content_type="application/rss+xml", fetched_at=FETCHED_AT)


WORK = [(feed(n), fetched(n, rss(n, 30))) for n in range(6)] + [
    (feed(90), fetched(90, b"\x00\x01 not a feed at all")),
    (feed(91), fetched(91, b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><rss><channel>'
                           b"<item><title>&a;</title></item></channel></rss>")),
]


async def _parse_all(settings, work) -> tuple[list[PollResult], dict]:
    parser = Parser(settings, LanguageDetector(settings.languages))
    try:
        results = await asyncio.gather(*(parser.parse(f, r) for f, r in work))
    finally:
        parser.close()
    return list(results), parser.describe()


def test_records_survive_pickling():
    err = TransientFeedError("503 from server", status=503, retry_after=120.0)
    for e in (err, PermanentFeedError("gone", status=410), BlockedAddressError("loopback"), FeedParseError("bomb")):
        back = pickle.loads(pickle.dumps(e))
        assert (type(back), str(back), back.status, back.retry_after, back.transient) == \
            (type(e), str(e), e.status, e.retry_after, e.transient)
    f = feed(1)
    assert pickle.loads(pickle.dumps(f)) == f
    r = FetchResult("f1", "u", "v", status=503, error=err, etag='"x"', fetched_at=FETCHED_AT)
    back = pickle.loads(pickle.dumps(r))
    assert (back.status, back.error.status, back.etag, back.fetched_at) == \
        (503, 503, '"x"', FETCHED_AT)
    a = Article(id="a", feed_id="f", url="u", canonical_url="c", guid="g", source="s", feed_language="ru",
                language="ru", title="т", summary="с", published_at=FETCHED_AT, fetched_at=FETCHED_AT,
                content_hash="h", content="к", title_en="t", summary_en="s", content_en="c",
                translation=Translation(status="ok", model="m", truncated=True),
                topics=("x",), topic_matches=(TopicMatch("x", 0.5, "rule", ("w",)),), authors=("A",),
                categories=("C",), date_inferred=True)
    assert pickle.loads(pickle.dumps(a)) == a
    p = PollResult(f, r, articles=[a], error=err, warnings=["w"])
    back = pickle.loads(pickle.dumps(p))
    assert (back.articles, back.warnings, back.feed, type(back.error)) == ([a], ["w"], f, TransientFeedError)


@pytest.mark.slow
def test_pool_and_thread_give_identical_articles_and_per_feed_errors(tmp_path):
    serial = make_settings(tmp_path, parse_workers=1)
    pooled = make_settings(tmp_path, parse_workers=2, parse_pool_min_bytes=0)
    s_res, s_info = asyncio.run(_parse_all(serial, WORK))
    p_res, p_info = asyncio.run(_parse_all(pooled, WORK))
    assert s_info["process"] == 0 and s_info["thread"] == len(WORK)
    assert p_info["process"] == len(WORK) and p_info["thread"] == 0 and p_info["workers"] == 2
    for s, p in zip(s_res, p_res):
        assert p.feed == s.feed and p.fetch is not None
        assert p.articles == s.articles
        assert p.warnings == s.warnings
        assert (type(p.error), str(p.error)) == (type(s.error), str(s.error))
    assert sum(len(r.articles) for r in p_res) == 6 * 30
    # the bad bodies failed alone, with the same errors as in-process parsing
    bad = {r.feed.id: r.error for r in p_res if r.error is not None}
    assert set(bad) == {"f90", "f91"} and all(isinstance(e, FeedParseError) for e in bad.values())
    direct = parse_and_normalize(WORK[0][0], WORK[0][1], serial, LanguageDetector(serial.languages))
    assert p_res[0].articles == direct.articles


@pytest.mark.slow
def test_worker_log_records_reach_the_parent(tmp_path, caplog):
    pooled = make_settings(tmp_path, parse_workers=2, parse_pool_min_bytes=0)
    with caplog.at_level(logging.INFO, logger="mediamon"):
        logging.getLogger("mediamon").propagate = True
        try:
            asyncio.run(_parse_all(pooled, WORK[-2:]))
        finally:
            logging.getLogger("mediamon").propagate = False
    failed = [r for r in caplog.records if r.getMessage() in ("parse_failed", "parse_crashed")]
    assert {r.fields["feed_id"] for r in failed} == {"f90", "f91"}
    assert all(r.process != os.getpid() for r in failed)  # emitted in a worker, handled here


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_the_feed_retried(tmp_path):
    pooled = make_settings(tmp_path, parse_workers=2, parse_pool_min_bytes=0)
    big = [(feed(n), fetched(n, rss(n, 400))) for n in range(4)]

    async def go():
        parser = Parser(pooled, LanguageDetector(pooled.languages))
        try:
            tasks = [asyncio.create_task(parser.parse(f, r)) for f, r in big]
            for _ in range(200):  # wait until the workers exist, then kill them mid-parse
                await asyncio.sleep(0.02)
                procs = list((parser.pool._processes or {}).values()) if parser.pool else []
                if len(procs) == 2:
                    break
            for proc in procs:
                os.kill(proc.pid, signal.SIGKILL)
            return await asyncio.gather(*tasks), parser.describe()
        finally:
            parser.close()

    results, info = asyncio.run(go())
    assert info["pool_restarts"] >= 1
    assert [len(r.articles) for r in results] == [400] * 4 and all(r.error is None for r in results)


@pytest.mark.slow
def test_poll_uses_the_pool_only_past_the_byte_threshold(tmp_path, feed_server, caplog):
    urls = [feed_server.add(f"/f{n}.xml", rss(n, 30)) for n in range(6)]
    urls.append(feed_server.add("/bad.xml", b"garbage"))
    feeds = [FeedConfig(id=f"f{n}", url=u, source="S") for n, u in enumerate(urls)]
    small = make_settings(tmp_path, parse_workers=2)  # 1 MiB default threshold: a thread
    pooled = make_settings(tmp_path, parse_workers=2, parse_pool_min_bytes=1)
    logging.getLogger("mediamon").propagate = True
    try:
        with caplog.at_level(logging.INFO, logger="mediamon"):
            a = poll(feeds, {}, small)
            b = poll(feeds, {}, pooled)
    finally:
        logging.getLogger("mediamon").propagate = False
    done = [r.fields for r in caplog.records if r.getMessage() == "poll_done"]
    assert done[0]["process"] == 0 and done[0]["thread"] == 7
    assert done[-1]["process"] >= 6  # the first body may go to a thread before the pool starts
    strip = [[x.replace(fetched_at=FETCHED_AT) for x in r.articles] for r in a]
    assert strip == [[x.replace(fetched_at=FETCHED_AT) for x in r.articles] for r in b]
    assert [type(r.error) for r in a] == [type(r.error) for r in b] == [type(None)] * 6 + [FeedParseError]
