"""Benchmark: classify N generated articles against M topic queries with the rule engine.

Prints one JSON object.  Usage::

    python bench/classify.py [--articles 10000] [--topics 100] [--seed 1]

The 5 shipped topics (config/topics.yaml) are included; the rest are generated queries of the
same shape (OR groups of terms, trailing wildcards and phrases combined with AND / NOT).
Articles are generated from a bilingual vocabulary that includes the topic words, so a realistic
share of them match something.  Each article is analysed once; every query is a compiled closure.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.classify import classify_stage  # noqa: E402
from pipeline.config import TopicConfig, load_topics  # noqa: E402
from pipeline.models import Article  # noqa: E402

RU = ("ракета ракеты ракетами Орешник Орешника Искандер Белоруссия Беларусь Минск Лукашенко Путин Москва "
      "учения войска оборона безопасность НАТО альянс саммит удар атака беспилотник беспилотники дрон "
      "ядерное оружие испытание пуск размещение поставки ПВО комплекс сегодня вчера заявил сообщил "
      "правительство город области погода экономика рубль нефть выборы суд министр президент страны "
      "жители новый закон компания рынок цены спорт матч команда школа больница дорога").split()
EN = ("missile missiles Oreshnik Iskander Belarus Minsk Lukashenko Putin Moscow drills troops defence "
      "security NATO alliance summit strike attack drone drones nuclear weapons test launch deployed "
      "deployment supply Patriot system today said officials government city region weather economy "
      "oil election court minister president country residents law company market prices sport match "
      "team school hospital road").split()


def make_articles(n: int, rng: random.Random) -> list[Article]:
    now = datetime(2026, 11, 20, tzinfo=timezone.utc)
    out = []
    for i in range(n):
        vocab = RU if i % 2 else EN
        title = " ".join(rng.choice(vocab) for _ in range(rng.randint(6, 12)))
        summary = " ".join(rng.choice(vocab) for _ in range(rng.randint(25, 45)))
        title_en = summary_en = None
        if vocab is RU and i % 4 == 1:  # a quarter of the Russian items carry an English translation
            title_en = " ".join(rng.choice(EN) for _ in range(rng.randint(6, 12)))
            summary_en = " ".join(rng.choice(EN) for _ in range(rng.randint(25, 45)))
        out.append(Article(id=f"b{i}", feed_id="bench", url=None, canonical_url=None, guid=None, source="Bench",
                           feed_language=None, language="ru" if vocab is RU else "en", title=title,
                           summary=summary, title_en=title_en, summary_en=summary_en, published_at=now,
                           fetched_at=now, content_hash=str(i)))
    return out


def _term(rng: random.Random) -> str:
    w = rng.choice(RU + EN)
    r = rng.random()
    if r < 0.25 and len(w) > 5:
        return w[: len(w) - 2] + "*"
    if r < 0.35:
        return f'"{w} {rng.choice(RU + EN)}"'
    return w


def make_queries(m: int, rng: random.Random) -> list[TopicConfig]:
    topics = list(load_topics(ROOT / "config"))
    while len(topics) < m:
        groups = []
        for _ in range(rng.randint(2, 3)):
            groups.append("(" + " OR ".join(_term(rng) for _ in range(rng.randint(4, 20))) + ")")
        q = " AND ".join(groups)
        if rng.random() < 0.4:
            q += " AND NOT (" + " OR ".join(_term(rng) for _ in range(rng.randint(2, 6))) + ")"
        topics.append(TopicConfig(id=f"gen{len(topics)}", name="generated", query=q))
    return topics[:m]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=10_000)
    ap.add_argument("--topics", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    articles = make_articles(args.articles, rng)
    topics = make_queries(args.topics, rng)
    t0 = time.perf_counter()
    out, counts = classify_stage(articles, topics)
    elapsed = time.perf_counter() - t0
    print(json.dumps({
        "articles": len(articles),
        "topics": len(topics),
        "seconds": round(elapsed, 3),
        "articles_per_second": round(len(articles) / elapsed, 1),
        "evaluations_per_second": round(len(articles) * len(topics) / elapsed, 1),
        "topic_matches": counts["topic_matches"],
        "articles_with_topics": counts["classified_with_topics"],
        "python": platform.python_version(),
        "machine": platform.machine(),
    }))


if __name__ == "__main__":
    main()
