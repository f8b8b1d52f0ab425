"""The labelled news pool (bench/data/news_pool_labelled.jsonl, built by bench/news_pool.py): a
second labelled sample of the codebook over posts and headlines that are in neither news_dev.jsonl
nor the held-out set.  Its file must stay well-formed, disjoint from ../shared/news/items.jsonl, and
reproducible from the raw files by the builder."""

from __future__ import annotations

import json

import pytest

from pipeline.config import load_topics

from .conftest import ROOT, SHARED, load_bench

POOL_FILE = ROOT / "bench" / "data" / "news_pool_labelled.jsonl"
NEWS = SHARED / "news"


@pytest.fixture(scope="module")
def pool_rows() -> list[dict]:
    with open(POOL_FILE, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_pool_file_is_well_formed(pool_rows):
    topic_ids = {t.id for t in load_topics(ROOT / "config")}
    assert len(pool_rows) == 936
    assert len({r["id"] for r in pool_rows}) == len(pool_rows)
    for r in pool_rows:
        assert r["id"].startswith("pool-") and "#" in r["id"]
        assert r["language"] in ("ru", "en") and r["title"].strip()
        assert set(r["topics"]) <= topic_ids and len(set(r["topics"])) == len(r["topics"])
        # a reason exactly when there is a topic (the codebook's output format), at most 12 words
        assert bool(r["why"]) == bool(r["topics"]) and len(r["why"].split()) <= 12
    counts = {t: sum(t in r["topics"] for r in pool_rows) for t in topic_ids}
    assert counts["missile_strike"] > 150 and counts["missile_deployment"] > 40 and counts["nato_posture"] > 60


def test_derive_follows_the_sources_recipe():
    pool = load_bench("news_pool")
    post = ("🔥⚡️ Ракеты [ATACMS](https://t.me/x) **поставлены** Киеву\n\nПодробности: __в тексте__\n"
            "Подписывайтесь на наш канал\nЧитать нас без VPN: bit.ly/abc")
    assert pool.derive(post) == ("Ракеты ATACMS поставлены Киеву", "Подробности: в тексте")
    # a quote opening the title is kept; a long first line is cut at its first sentence end
    long = "«Первое предложение». " + "слово " * 60 + "Конец."
    title, summary = pool.derive(long)
    assert title == "«Первое предложение»." and summary.startswith("слово слово")
    assert pool.derive("👉 t.me/channel\nhttps://bit.ly/x") == ("", "")
    assert pool.title_key("«Путин»:  заявил!") == pool.title_key("путин заявил")


@pytest.mark.skipif(not (NEWS / "items.jsonl").exists(), reason="../shared/news not present")
def test_pool_is_disjoint_from_the_sampled_items_and_rebuilds_exactly(pool_rows):
    pool = load_bench("news_pool")
    with open(NEWS / "items.jsonl", encoding="utf-8") as fh:
        sampled = [json.loads(line) for line in fh if line.strip()]
    sampled_ids = {s["id"] for s in sampled}
    sampled_titles = {pool.title_key(s["title"]) for s in sampled}
    for r in pool_rows:
        assert r["id"].removeprefix("pool-") not in sampled_ids
        assert pool.title_key(r["title"]) not in sampled_titles
    rebuilt = pool.keyword_items(pool.build_pool(NEWS))
    assert [(r["id"], r["title"], r["summary"], r["language"]) for r in rebuilt] == \
        [(r["id"], r["title"], r["summary"], r["language"]) for r in pool_rows]


def test_default_rules_on_the_pool_do_not_fall(pool_rows):
    """A regression floor for the shipped rules on the labelled pool (our labels, so this runs
    everywhere): a little under what they reach now (micro 0.889; missile_deployment 0.844,
    missile_strike 0.901, nato_posture 0.896).  The pool holds almost no nuclear or Belarus items
    (see bench/news_pool.py), so those two topics are not floored here."""
    from datetime import datetime, timezone

    from pipeline.evaluation import evaluate, labelled_items

    topics = load_topics(ROOT / "config")
    ev = evaluate(labelled_items(pool_rows, POOL_FILE.name, topics,
                                 now=datetime(2026, 11, 20, tzinfo=timezone.utc)), topics).to_dict()
    assert ev["micro"]["f1"] >= 0.87, ev["micro"]
    floors = {"missile_deployment": 0.82, "missile_strike": 0.88, "nato_posture": 0.87}
    for tid, floor in floors.items():
        assert ev["topics"][tid]["f1"] >= floor, (tid, ev["topics"][tid])
