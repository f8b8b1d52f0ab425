"""Benchmark: classify N generated articles against M topic queries with the rule engine.

Prints one JSON object.  Usage::

    python bench/classify.py [--articles 10000] [--topics 100] [--seed 1]

The 5 shipped topics (config/topics.yaml) are included; the rest are generated queries of the
same shape (OR groups of terms, trailing wildcards and phrases combined with AND / NOT).
Articles are generated from pseudo-words plus a bilingual vocabulary of topic words (``--topical``
sets their share of the tokens), so a share of them match something; raise it to stress the cost
of reporting matched terms.  Each article is analysed once; every query is a compiled closure.
"""

from __future__ import annotations

import argparse
import json
import os
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


def _fillers(rng: random.Random, alphabet: str, n: int) -> list[str]:
    """Pseudo-words standing in for the long tail of ordinary news vocabulary."""
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 11))) for _ in range(n)]


def make_words(rng: random.Random, vocab: list[str], fillers: list[str], k: int, topical: float) -> str:
    return " ".join(rng.choice(vocab) if rng.random() < topical else rng.choice(fillers) for _ in range(k))


def make_articles(n: int, rng: random.Random, topical: float = 0.03) -> list[Article]:
    """``topical``: share of tokens drawn from the topic-ish vocabulary (the rest are fillers)."""
    now = datetime(2026, 11, 20, tzinfo=timezone.utc)
    ru_fill = _fillers(rng, "абвгдеёжзийклмнопрстуфхцчшщыьэюя", 5000)
    en_fill = _fillers(rng, "abcdefghijklmnopqrstuvwxyz", 5000)
    out = []
    for i in range(n):
        ru = bool(i % 2)
        vocab, fill = (RU, ru_fill) if ru else (EN, en_fill)
        title = make_words(rng, vocab, fill, rng.randint(6, 12), topical)
        summary = make_words(rng, vocab, fill, rng.randint(25, 45), topical)
        title_en = summary_en = None
        if ru and i % 4 == 1:  # half of the Russian items carry an English translation
            title_en = make_words(rng, EN, en_fill, rng.randint(6, 12), topical)
            summary_en = make_words(rng, EN, en_fill, rng.randint(25, 45), topical)
        out.append(Article(id=f"b{i}", feed_id="bench", url=None, canonical_url=None, guid=None, source="Bench",
                           feed_language=None, language="ru" if ru else "en", title=title,
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
    ap.add_argument("--topical", type=float, default=0.03,
                    help="share of article tokens drawn from the topic vocabulary (default 0.03)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    articles = make_articles(args.articles, rng, args.topical)
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
        "topical_share": args.topical,
        "topic_matches": counts["topic_matches"],
        "articles_with_topics": counts["classified_with_topics"],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }))


if __name__ == "__main__":
    main()
