"""Per-item CPU cost of each stage of a first cycle, on the bench/poll.py feed bodies.

One process, no network, nothing in parallel: ``--feeds`` generated feeds × 50 items (half Russian,
half English, ~1.2 KB per item) go through each stage in turn, and the CPU time of each is divided
by the number of items.  This is where the CPU of ``bench/poll.py``'s first cycle goes:

    parse           decode, defuse, feedparser, HTML to text (pipeline.parse.parse_feed)
    normalize       ids, canonical URL, dates, content hash; with and without language detection
    detect_language LanguageDetector alone, on the text normalize gives it
    classify        the shipped topic rules (classify_stage)
    index_shared    SQLiteStore.index right after classify (the text analysis is reused, as in a cycle)
    index_cold      SQLiteStore.index of the same articles into another store, analysis forgotten

Usage: python bench/stages.py [--feeds 100]
Prints one JSON object (milliseconds of CPU per item).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from poll import feed_body  # noqa: E402  (the same feeds as bench/poll.py)

from pipeline import analysis  # noqa: E402
from pipeline.classify import classify_stage  # noqa: E402
from pipeline.config import FeedConfig, load_topics  # noqa: E402
from pipeline.normalize import LanguageDetector, normalize_feed  # noqa: E402
from pipeline.parse import parse_feed  # noqa: E402
from pipeline.store.sqlite import SQLiteStore  # noqa: E402


BATCH = 1000  # Settings.cycle_batch_items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=100)
    args = ap.parse_args()

    bodies = [feed_body(n, 50) for n in range(args.feeds)]
    feeds = [FeedConfig(id=f"f{n}", url=f"http://bench{n}.example.org/f.xml", source=f"Bench {n}",
                        language="ru" if n % 2 == 0 else "en") for n in range(args.feeds)]
    now = datetime.now(timezone.utc)
    detector = LanguageDetector(["ru", "en", "uk", "be"])
    detector.detect("warm up the models", None)
    topics = load_topics(ROOT / "config")
    out: dict[str, float] = {}

    def timed(name: str, fn):
        t0 = time.process_time()
        result = fn()
        out[name] = (time.process_time() - t0) * 1000
        return result

    parsed = timed("parse", lambda: [parse_feed(b, url=f.url) for b, f in zip(bodies, feeds)])
    items = sum(len(p.entries) for p in parsed)
    timed("normalize_without_detection", lambda: [normalize_feed(p, f, now, None) for p, f in zip(parsed, feeds)])
    articles = timed("normalize", lambda: [a for p, f in zip(parsed, feeds) for a in normalize_feed(p, f, now, detector)[0]])
    texts = [(f"{e.title}. {e.summary}", f.language) for p, f in zip(parsed, feeds) for e in p.entries]
    timed("detect_language", lambda: [detector.detect(t, d) for t, d in texts])
    out["classify"] = out["index_shared"] = out["index_cold"] = 0.0
    with tempfile.TemporaryDirectory(prefix="mediamon-bench-stages-") as tmp:
        shared = SQLiteStore(Path(tmp) / "shared.sqlite3")
        cold = SQLiteStore(Path(tmp) / "cold.sqlite3")
        try:
            for i in range(0, len(articles), BATCH):  # a cycle's batches: classify, then index
                t0 = time.process_time()
                batch = classify_stage(articles[i:i + BATCH], list(topics))[0]
                t1 = time.process_time()
                shared.index(batch)
                t2 = time.process_time()
                analysis.forget()
                t3 = time.process_time()
                cold.index(batch)
                t4 = time.process_time()
                out["classify"] += (t1 - t0) * 1000
                out["index_shared"] += (t2 - t1) * 1000
                out["index_cold"] += (t4 - t3) * 1000
        finally:
            shared.close()
            cold.close()
    print(json.dumps({
        "feeds": args.feeds, "items": items,
        "cpu_ms_per_item": {k: round(v / items, 3) for k, v in out.items()},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}",
    }))


if __name__ == "__main__":
    main()
