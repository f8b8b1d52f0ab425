"""Fixtures for the hostile-input suite: a threaded loopback server, a cycle runner that returns
what was stored, and ``bounded`` — wall time and peak-RSS growth of the test process around a call."""

from __future__ import annotations

import gc
import json
import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pytest
from pytest_httpserver import HTTPServer

from pipeline.config import AlertConfig, FeedConfig
from pipeline.cycle import CycleReport, run_cycle
from pipeline.models import Article, FeedState
from pipeline.store.sqlite import SQLiteStore

from ..conftest import make_settings
from . import generators as gen

MiB = 1 << 20


# --- measuring ------------------------------------------------------------------------------------------

def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class Usage:
    seconds: float = 0.0
    peak_growth: int = 0  # bytes above the RSS at the start
    exact: bool = True  # False: only ru_maxrss was available (growth above the earlier peak)


@contextmanager
def bounded(max_seconds: float, max_growth_mib: float) -> Iterator[Usage]:
    """Run the block, then assert it took < ``max_seconds`` and raised this process's peak resident
    memory by < ``max_growth_mib`` over what was resident when it started."""
    usage = Usage()
    gc.collect()
    exact = _reset_peak() and _status_kib("VmHWM") is not None
    before = (_status_kib("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) or 0
    t0 = time.monotonic()
    yield usage
    usage.seconds = time.monotonic() - t0
    after = (_status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) or 0
    usage.peak_growth = max(0, after - before) * 1024
    usage.exact = exact
    assert usage.seconds < max_seconds, f"took {usage.seconds:.1f}s (bound {max_seconds}s)"
    assert usage.peak_growth < max_growth_mib * MiB, \
        f"peak RSS grew by {usage.peak_growth / MiB:.0f} MiB (bound {max_growth_mib} MiB)"


# --- servers and cycles ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tserver() -> Iterator[HTTPServer]:
    """A *threaded* loopback server: a handler that trickles or streams does not block the others."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        if server.is_running():
            server.stop()


@pytest.fixture
def hserver(tserver) -> Iterator[HTTPServer]:
    tserver.clear()
    yield tserver
    tserver.clear()


@pytest.fixture(scope="session")
def warm(tmp_path_factory) -> None:
    """Run one ordinary cycle first, so that one-time loading (lingua models, feedparser, Jinja)
    does not count against the first measured case."""
    tmp = tmp_path_factory.mktemp("warm")
    p = tmp / "warm.xml"
    p.write_bytes(gen.rss(gen.plain_items(3) + [gen.item(t, f"https://hostile.example/w/{n}")
                                                for n, t in enumerate(gen.RU_TITLES)]).encode())
    settings = make_settings(tmp)
    run_cycle(settings, feeds=[FeedConfig(id="warm", url=str(p), source="Warm")], topics=[], alerts=[])


@dataclass
class Outcome:
    report: CycleReport
    articles: list[Article]
    states: dict[str, FeedState]

    def feed(self, feed_id: str):
        return next(f for f in self.report.feeds if f.feed_id == feed_id)

    def by_guid(self) -> dict[str | None, Article]:
        return {a.guid: a for a in self.articles}


def stored(settings) -> tuple[list[Article], dict[str, FeedState]]:
    store = SQLiteStore(settings.store_path)
    try:
        docs = [json.loads(r[0]) for r in store.connection.execute("SELECT doc FROM articles ORDER BY rowid")]
        return [Article.from_dict(d) for d in docs], store.get_feed_states()
    finally:
        store.close()


def cycle(settings, feeds: Sequence[FeedConfig], *, alerts: Sequence[AlertConfig] = (), **kw) -> Outcome:
    report = run_cycle(settings, feeds=list(feeds), topics=[], alerts=list(alerts), **kw)
    articles, states = stored(settings)
    return Outcome(report, articles, states)


def feed(feed_id: str, url: str, **kw) -> FeedConfig:
    return FeedConfig(id=feed_id, url=url, source=f"Hostile {feed_id}", **kw)


@pytest.fixture
def hsettings(tmp_path):
    # the generated items carry fixed dates long past: alert rules mail them on their first run
    # anyway (the first-run look-back of issue 18 is tested in tests/test_alerts_first_run.py)
    return make_settings(tmp_path, alert_first_run_lookback=3650 * 86400.0)


@pytest.fixture
def smtp(smtp_server):
    """The loopback SMTP sink (``smtp_server`` in tests/conftest.py) under the short name these
    tests use."""
    return smtp_server
