"""`mediamon serve` page render time over a large embedded store.

Builds (or reuses, ``--db``) the store of ``bench/search.py`` (N generated bilingual articles,
classified by the shipped topics, stored through ``SQLiteStore.index``), then requests pages from
the ASGI app in-process (Starlette's TestClient, no network) and reads the app's own
``Server-Timing`` header (``app``: wall time, ``cpu``: the process's CPU time, which a loaded
machine inflates less): the time from the request reaching the app to the response head, i.e.
search + counts per day for the chart + highlighting + template rendering (the body is
rendered before the head is sent).  Each page: ``--repeat`` requests with the
result's counts per day computed afresh each time (``p50_ms``: a new query), each followed by
one that reuses them (``counts_cached_p50_ms``: paging or re-sorting the same result); p50 / p95
/ max in milliseconds.  The whole-store counts behind the filter lists are computed at start-up.
Search pages use the page's default sort (newest first), plus one query sorted by relevance (BM25).
All pages are requested once before measuring (OS page cache, compiled templates).

Usage: python bench/web.py [--articles 200000] [--repeat 20] [--db PATH]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from search import GEN_CHUNK, QUERIES, make_articles  # noqa: E402  (bench/search.py's corpus)

from pipeline.classify import classify_stage  # noqa: E402
from pipeline.config import load_topics  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store.sqlite import SQLiteStore  # noqa: E402


def _timing(response, name: str) -> float:
    """One metric of the app's Server-Timing header (``app``: wall time, ``cpu``: process CPU time)."""
    for part in response.headers["server-timing"].split(","):
        key, _, dur = part.strip().partition(";dur=")
        if key == name:
            return float(dur)
    raise KeyError(name)


def build(store: SQLiteStore, n: int, seed: int, topical: float, batch: int) -> float:
    topics = load_topics(ROOT / "config")
    t0 = time.perf_counter()
    for start in range(0, n, GEN_CHUNK):
        generated = make_articles(min(GEN_CHUNK, n - start), seed + start, topical)
        generated = [a.replace(id=f"{start + i:08x}") for i, a in enumerate(generated)]
        for k in range(0, len(generated), batch):
            done, _ = classify_stage(generated[k:k + batch], topics)
            store.index(done)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--articles", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--topical", type=float, default=0.03)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--db", help="keep the store at this path (reused when it already holds --articles)")
    args = ap.parse_args()

    from starlette.testclient import TestClient

    from pipeline.web.app import create_app

    with tempfile.TemporaryDirectory(prefix="mediamon-bench-web-") as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "search.sqlite3"
        store = SQLiteStore(path)
        have = store.count()
        build_s = 0.0 if have >= args.articles else build(store, args.articles, args.seed, args.topical, 1000)
        settings = Settings(config_dir=ROOT / "config", data_dir=Path(tmp), translation_backend="none")
        app = create_app(settings, store=store)
        views = app.state.views
        client = TestClient(app, base_url="http://127.0.0.1")

        pages = [(f"search:{name}", "/?" + urlencode(
            {"q": q, **({"topic": extra["topics"][0]} if "topics" in extra else {}),
             **({"since": "2026-11-13"} if "since_days" in extra else {}),
             **({"page": extra["offset"] // 20 + 1} if "offset" in extra else {})})) for name, q, extra in QUERIES]
        pages += [("search:term_ru_relevance", "/?q=Орешник&sort=relevance"),
                  ("search:no_query", "/"),
                  ("search:language_filter", "/?language=ru&sort=newest"),
                  ("article", "/article/00000002?q=Орешник"),
                  ("topic", "/topics/missile_deployment"),
                  ("topics", "/topics")]
        for _, url in pages:  # warm-up: the store's pages into the OS cache, templates compiled
            assert client.get(url).status_code == 200, url
        results = {}
        for name, url in pages:
            server, wall, warm, cpu = [], [], [], []
            for _ in range(args.repeat):
                views._stats_cache.clear()  # cold: the result's counts are computed again
                t = time.perf_counter()
                r = client.get(url)
                wall.append((time.perf_counter() - t) * 1000)
                server.append(_timing(r, "app"))
                cpu.append(_timing(r, "cpu"))
                r = client.get(url)  # as when paging or re-sorting: the counts are reused
                warm.append(_timing(r, "app"))
            server.sort()
            results[name] = {"url": url, "p50_ms": round(statistics.median(server), 1),
                             "p95_ms": round(server[min(len(server) - 1, int(0.95 * len(server)))], 1),
                             "max_ms": round(server[-1], 1), "cpu_p50_ms": round(statistics.median(cpu), 1),
                             "counts_cached_p50_ms": round(statistics.median(warm), 1),
                             "client_p50_ms": round(statistics.median(wall), 1), "bytes": len(r.content)}
        store.close()

    search_p50 = sorted(v["p50_ms"] for k, v in results.items() if k.startswith("search:"))
    cpu_p50 = sorted(v["cpu_p50_ms"] for k, v in results.items() if k.startswith("search:"))
    cached_p50 = sorted(v["counts_cached_p50_ms"] for k, v in results.items() if k.startswith("search:"))
    print(json.dumps({
        "articles": args.articles, "built_seconds": round(build_s, 1), "reused_store": build_s == 0.0,
        "search_pages_median_p50_ms": round(statistics.median(search_p50), 1),
        "search_pages_worst_p50_ms": search_p50[-1],
        "search_pages_cpu_median_p50_ms": round(statistics.median(cpu_p50), 1),
        "search_pages_cpu_worst_p50_ms": cpu_p50[-1],
        "search_pages_counts_cached_median_p50_ms": round(statistics.median(cached_p50), 1),
        "search_pages_counts_cached_worst_p50_ms": cached_p50[-1],
        "pages": results,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
                   f"sqlite {__import__('sqlite3').sqlite_version}",
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
