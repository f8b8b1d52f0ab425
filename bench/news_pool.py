"""The unsampled pool of ../shared/news: real posts and headlines that are in NEITHER news_dev.jsonl
nor the held-out set, for a second labelled check of the topic rules.

``../shared/news/items.jsonl`` (news_dev.jsonl plus the held-out half) is a sample of larger raw
files that sit next to it: the four Telegram channel exports (3,905 posts) and the reddit headline
file (6,391 items in the sampled subreddits).  Everything of those pools that was NOT sampled is the
same kind of item from the same outlets and weeks, and has no label anywhere.  This script rebuilds
that pool with the recipe of ``../shared/news/SOURCES.md``:

* Telegram: markdown links become their text, ``**``/``__`` are removed, promo lines are dropped,
  the title is the first remaining line without leading emoji/punctuation (cut at the first sentence
  end when over 250 characters), the summary the remaining lines (600 characters);
* reddit: the subreddits worldnews, ukraine, news and politics, without the excluded domains; title only;
* an item is left out when its id (``file#position``) is in items.jsonl, or its title, compared
  by its tokens (``pipeline.alerts.render.normalized_title``), is the title of an item there or of an earlier pool item.

The rebuilt derivation gives the same title as items.jsonl for 1,574 of its 1,583 Telegram items
(the others differ in stray spaces or quotes).  Sampling added every item with орешник / oreshnik /
искандер / iskander / ядерн / nuclear / беларус / belarus to items.jsonl, so the pool holds hardly
any nuclear, Belarus or Oreshnik items: it checks missile_deployment (other systems),
missile_strike and nato_posture, not the other two topics.

``--keyword`` keeps the items with a topic-related word (``KEYWORDS``): 936 of 7,549.  Those are
labelled in ``bench/data/news_pool_labelled.jsonl`` (ids ``pool-<file>#<position>``), by reading
them against CODEBOOK.md v1.1 with 296 labelled examples from the tune split of the real dev items
(no keyword rules):

* two independent passes (eight reviewers each, 117 items per reviewer) gave the same topics for
  925 of the 936 items (micro F1 between the passes 0.986); the 11 others were decided by a third
  reading, conservatively (a topic only when it is the title or the main point);
* the same kind of reviewer, shown 209 other tune examples, labelled 207 held-back TUNE items with a
  micro F1 of 0.971 against the official labels (missile_deployment 0.919, missile_strike 0.978,
  nuclear_weapons 0.982, belarus_russia_military and nato_posture 1.000 on 3 and 10 positives).

So the pool's labels are close to, not the same as, the official labeller's (permission-to-strike
items, for one, follow clarification 2 more consistently than news_dev.jsonl does).  Read the
pool as a second sample of the codebook over 936 unseen items, not as the target.

    python bench/news_pool.py [--news-dir ../shared/news] [--keyword] > pool.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.alerts.render import normalized_title  # noqa: E402

TELEGRAM = ("tg_bbcrussian_2024-11.json", "tg_rian_ru_2024-11.json", "tg_bbbreaking_2024-11.json",
            "tg_enews112_2024.json")
REDDIT = "reddit_headlines_fwd_news_2021-11_2022-07.json"
SUBREDDITS = ("worldnews", "ukraine", "news", "politics")
_EXCLUDED_DOMAINS = re.compile(r"twitter|imgur|reddit|youtu|self\.|redd\.it")
_PROMO = re.compile(r"подписыва|подписаться|читать нас без VPN|прислать новость|bit\.ly/|наш канал|t\.me/", re.I)
_LINK = re.compile(r"\[([^\]]*)\]\((?:[^)]*)\)")
_LEAD = re.compile(r"^[^\w«\"“(\[]+")
_SENTENCE_END = re.compile(r"[.!?…](\s|$)")
KEYWORDS = re.compile(
    r"ракет|missile|rocket|дрон|беспилот|drone|БПЛА|ПВО|air.defen|ядерн|nuclear|атомн|НАТО|NATO|Беларус|"
    r"Белорус|Belarus|Лукашенк|Lukashenk|удар|strike|attack|атак|обстрел|Орешник|Oreshnik|Искандер|Iskander|"
    r"ATACMS|Storm Shadow|Patriot|Патриот|HIMARS|С-[345]00|S-[345]00|shell|warhead|боеголов|ICBM|МБР|баллист|"
    r"ballistic|hyperson|гиперзв|Kinzhal|Кинжал|Sarmat|Сармат|Калибр|Kalibr|Shahed|Шахед|Герань|intercept|"
    r"перехват|сбит|сбил|тревог|air raid|siren|сирен|Минск|Minsk|ОДКБ|CSTO|Taurus|Tomahawk|Томагавк|"
    r"Pyongyang|North Korea|КНДР|Пхеньян|Iran|Иран", re.I)


# titles are compared as the alert emails compare them for "same story": tokens, without case or
# punctuation
title_key = normalized_title


def derive(text: str) -> tuple[str, str]:
    """(title, summary) of a Telegram post, by the recipe of ../shared/news/SOURCES.md."""
    text = _LINK.sub(r"\1", text.replace("\xa0", " ")).replace("**", "").replace("__", "")
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line and not _PROMO.search(line)]
    if not lines:
        return "", ""
    title, rest = _LEAD.sub("", lines[0]).strip(), lines[1:]
    if len(title) > 250:
        m = _SENTENCE_END.search(title)
        if m and m.end() < len(title):
            rest = [title[m.end():].strip(), *rest]
            title = title[:m.end()].strip()
    return title, " ".join(rest)[:600]


def build_pool(news_dir: Path) -> list[dict]:
    """The unsampled items, in file order: {id, language, title, summary, published}."""
    with open(news_dir / "items.jsonl", encoding="utf-8") as fh:
        sampled = [json.loads(line) for line in fh if line.strip()]
    ids = {s["id"] for s in sampled}
    seen = {title_key(s["title"]) for s in sampled}
    out: list[dict] = []

    def add(pid: str, language: str, title: str, summary: str, published) -> None:
        key = title_key(title)
        if pid in ids or not key or key in seen:
            return
        seen.add(key)
        out.append({"id": f"pool-{pid}", "language": language, "title": title, "summary": summary,
                    "published": published})

    for name in TELEGRAM:
        posts = json.loads((news_dir / name).read_text(encoding="utf-8"))
        for n, post in enumerate(posts):
            if (post.get("text") or "").strip():
                title, summary = derive(post["text"])
                add(f"{name}#{n}", "ru", title, summary, post.get("date"))
    for n, h in enumerate(json.loads((news_dir / REDDIT).read_text(encoding="utf-8"))):
        if h.get("category") in SUBREDDITS and not _EXCLUDED_DOMAINS.search(h.get("domain") or ""):
            add(f"{REDDIT}#{n}", "en", (h.get("title") or "").strip(), "", h.get("timestamp"))
    return out


def keyword_items(pool: list[dict]) -> list[dict]:
    """The pool items with a topic-related word in title or summary (the labelled ones)."""
    return [p for p in pool if KEYWORDS.search(p["title"] + " " + p["summary"])]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--news-dir", type=Path, default=ROOT.parent / "shared" / "news")
    ap.add_argument("--keyword", action="store_true", help="only the items with a topic-related word")
    args = ap.parse_args(argv)
    pool = build_pool(args.news_dir)
    for item in keyword_items(pool) if args.keyword else pool:
        sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
