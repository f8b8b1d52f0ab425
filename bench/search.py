"""Embedded search: build a SQLite store of N generated bilingual articles, then time typical queries.

Articles: half Russian (with an English translation in ``title_en``/``summary_en``, as the
translate stage leaves them), half English; ~10-word titles and ~60-word summaries drawn from
pseudo-words plus a security vocabulary (``--topical`` share), topics assigned by the shipped
rules, published over the last 90 days (generated 5,000 at a time, whatever ``--batch``).
Each batch of ``--batch`` articles (default: ``cycle_batch_items``, the batch a running cycle
stores) is classified, then stored through ``SQLiteStore.index``, exactly as a cycle does: the
index reuses the text analysis (tokens, stems) that classification just did for the same texts
(``pipeline.analysis.analyse``).  ``--cold`` forgets it before each ``index`` call, so that the
index pays its own analysis.

Queries (``mediamon search`` defaults: newest first, 20 hits, with the total count), each run
``--repeat`` times after one warm-up: p50 / p95 / max latency in milliseconds.

Usage: python bench/search.py [--articles 200000] [--batch 1000] [--repeat 20] [--cold]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from classify import EN, RU, _fillers  # noqa: E402  (same vocabulary as bench/classify.py)

from pipeline import analysis  # noqa: E402
from pipeline.classify import classify_stage  # noqa: E402
from pipeline.config import load_topics  # noqa: E402
from pipeline.models import Article, Translation  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store.base import SearchRequest  # noqa: E402
from pipeline.store.sqlite import SQLiteStore  # noqa: E402

GEN_CHUNK = 5000  # articles generated per seed (the corpus does not depend on --batch)

QUERIES = [
    ("term_ru", "Орешник", {}),
    ("term_en", "missiles", {}),
    ("or_bilingual", "Орешник OR Oreshnik", {}),
    ("and", "ракета AND Белоруссия", {}),
    ("phrase", '"ядерное оружие"', {}),
    ("prefix", "ракет*", {}),
    ("title_prefix_lang", "title:ракет* AND language:ru", {}),
    ("near", '"Орешник Белоруссия"~5', {}),
    ("not", "NATO NOT summit", {}),
    ("topic_filter", "Искандер", {"topics": ("missile_deployment",)}),
    ("since_7d", "удар OR strike", {"since_days": 7}),
    ("common_word_page_5", "сегодня", {"offset": 80}),
    ("no_hits", "zzzzqqq", {}),
]


def make_articles(n: int, seed: int, topical: float) -> list[Article]:
    rng = random.Random(seed)
    ru_fill = _fillers(rng, "абвгдеёжзийклмнопрстуфхцчшщыьэюя", 20000)
    en_fill = _fillers(rng, "abcdefghijklmnopqrstuvwxyz", 20000)
    now = datetime(2026, 11, 20, tzinfo=timezone.utc)

    def words(vocab, fill, k):
        return " ".join(rng.choice(vocab) if rng.random() < topical else rng.choice(fill) for _ in range(k))

    out = []
    for i in range(n):
        ru = i % 2 == 0
        title = words(RU, ru_fill, rng.randint(6, 12)) if ru else words(EN, en_fill, rng.randint(6, 12))
        summary = words(RU, ru_fill, rng.randint(40, 80)) if ru else words(EN, en_fill, rng.randint(40, 80))
        if ru:
            title_en = words(EN, en_fill, rng.randint(6, 12))
            summary_en = words(EN, en_fill, rng.randint(40, 80))
            tr = Translation(status="ok", model="bench")
        else:
            title_en, summary_en, tr = title, summary, Translation(status="skipped")
        published = now - timedelta(seconds=rng.randint(0, 90 * 86400))
        out.append(Article(
            id=f"{i:08x}", feed_id=f"feed{i % 500}", url=f"https://bench.example.org/{i}",
            canonical_url=f"https://bench.example.org/{i}", guid=None, source=f"Source {i % 50}",
            feed_language="ru" if ru else "en", language="ru" if ru else "en", title=title, summary=summary,
            title_en=title_en, summary_en=summary_en, translation=tr, published_at=published,
            fetched_at=published, content_hash=str(i)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--articles", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=Settings().cycle_batch_items,
                    help="articles per classify + store.index (default: a cycle's batch)")
    ap.add_argument("--cold", action="store_true",
                    help="forget the text analysis before each store.index (the index analyses again)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--topical", type=float, default=0.03)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--db", help="keep the store at this path (default: a temporary directory)")
    args = ap.parse_args()

    topics = load_topics(ROOT / "config")
    with tempfile.TemporaryDirectory(prefix="mediamon-bench-search-") as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "search.sqlite3"
        store = SQLiteStore(path)
        t0 = time.perf_counter()
        index_s = classify_s = 0.0
        reuse = bool(args.db) and store.count() >= args.articles  # --db of an earlier run: queries only
        for start in range(0, 0 if reuse else args.articles, GEN_CHUNK):
            generated = make_articles(min(GEN_CHUNK, args.articles - start), args.seed + start, args.topical)
            generated = [a.replace(id=f"{start + i:08x}") for i, a in enumerate(generated)]
            for k in range(0, len(generated), args.batch):
                c0 = time.perf_counter()
                batch, _ = classify_stage(generated[k:k + args.batch], topics)
                c1 = time.perf_counter()
                if args.cold:
                    analysis._ANALYSED.clear()
                    c1 = time.perf_counter()
                res = store.index(batch)
                index_s += time.perf_counter() - c1
                classify_s += c1 - c0
                assert len(res.created) == len(batch), res.failed
        build_s = time.perf_counter() - t0
        db_mb = sum(f.stat().st_size for f in path.parent.glob(path.name + "*")) / 2**20

        now = datetime(2026, 11, 20, tzinfo=timezone.utc)
        results = {}
        for name, q, extra in QUERIES:
            kw = {"query": q, "limit": 20}
            if "topics" in extra:
                kw["topics"] = extra["topics"]
            if "since_days" in extra:
                kw["since"] = now - timedelta(days=extra["since_days"])
            if "offset" in extra:
                kw["offset"] = extra["offset"]
            req = SearchRequest(**kw)
            res = store.search(req)  # warm-up
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                res = store.search(req)
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            results[name] = {"query": q, **{k: v for k, v in extra.items()}, "total": res.total,
                             "p50_ms": round(statistics.median(times), 2),
                             "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 2),
                             "max_ms": round(times[-1], 2)}
        store.close()

    p50s = sorted(r["p50_ms"] for r in results.values())
    p95s = sorted(r["p95_ms"] for r in results.values())
    print(json.dumps({
        "articles": args.articles,
        "index_articles_s": round(args.articles / index_s, 1) if index_s else None,
        "classify_and_index_articles_s": round(args.articles / (index_s + classify_s), 1) if index_s else None,
        "batch": args.batch, "shared_analysis": not args.cold,
        "reused_store": reuse,
        "index_seconds": round(index_s, 2),
        "classify_seconds": round(classify_s, 2),
        "build_seconds_total": round(build_s, 2),
        "db_mb": round(db_mb, 1),
        "median_of_query_p50_ms": round(statistics.median(p50s), 2),
        "worst_query_p50_ms": p50s[-1],
        "worst_query_p95_ms": p95s[-1],
        "queries": results,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
                   f"sqlite {__import__('sqlite3').sqlite_version}",
    }))


if __name__ == "__main__":
    main()
