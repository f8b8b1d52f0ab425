"""Golden-file helpers for parse + normalise tests.

Regenerate after a deliberate change (and review the diff!):
    python -m tests.golden
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from pipeline.config import FeedConfig
from pipeline.normalize import LanguageDetector, normalize_feed
from pipeline.parse import parse_feed

HERE = Path(__file__).resolve().parent
FEEDS = HERE / "fixtures" / "feeds"
GOLDEN = HERE / "fixtures" / "golden"
FETCHED_AT = datetime(2026, 11, 24, 0, 0, tzinfo=timezone.utc)

# fixture file -> (declared language, Content-Type the server sends)
CASES = {
    "ru_news.xml": ("ru", "application/rss+xml"),
    "en_news.xml": ("en", "application/atom+xml"),
    "ru_cp1251.xml": ("ru", "application/rss+xml"),
    "ru_cp1251_labelled_utf8.xml": (None, "text/xml; charset=utf-8"),
}


def articles_for(name: str) -> dict:
    lang, ctype = CASES[name]
    url = f"https://feeds.example.org/{name}"
    parsed = parse_feed((FEEDS / name).read_bytes(), url=url, content_type=ctype)
    # the fixtures' outlets: their feeds may claim their links' global ids (issue 16's identity rule)
    feed = FeedConfig(id=name.split(".")[0].replace("_", "-"), url=url, source=f"Source {name}", language=lang,
                      domains=("news.example.ru", "oblast.example.ru", "world.example.com"))
    articles, problems = normalize_feed(parsed, feed, FETCHED_AT, LanguageDetector(["ru", "en", "uk", "be"]))
    return {"encoding": parsed.encoding, "warnings": list(parsed.warnings), "problems": problems,
            "articles": [a.to_dict() for a in articles]}


def main() -> None:
    for name in CASES:
        out = GOLDEN / (name.rsplit(".", 1)[0] + ".json")
        out.write_text(json.dumps(articles_for(name), ensure_ascii=False, indent=2, sort_keys=True) + "\n",
                       encoding="utf-8")
        print("wrote", out)


if __name__ == "__main__":
    main()
