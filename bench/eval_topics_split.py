"""Topic rules on real news with a fixed split: TUNE (tune on it) / UNTOUCHED (report only).

Items: the real items of ``dev.jsonl`` (ids not starting with ``page-``) plus all of
``news_dev.jsonl``; the paraphrases (``page-`` ids of dev.jsonl) are reported on their own.
Split of a real item: ``h = int(sha1(id).hexdigest(), 16) % 3``; ``h == 0`` is UNTOUCHED,
``h in (1, 2)`` is TUNE.  Prints one JSON object: for each of tune, untouched, real_all and
paraphrases, the item count, per-topic precision/recall/F1 (tp/fp/fn, positives) and micro P/R/F1.

    python bench/eval_topics_split.py [--config-dir config] [--eval-dir ../shared/eval]
        [--only tune,paraphrases] [--errors tune] [--topic nato_posture]

``--errors SPLIT`` lists the false positives/negatives of that split on stderr (use it on tune
only: the untouched split is for measuring, not for reading).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from pipeline.classify import compile_topics, rule_matches
from pipeline.config import load_topics
from pipeline.models import Article
from pipeline.query import AnalyzedArticle

ROOT = Path(__file__).resolve().parent.parent
SPLITS = ("tune", "untouched", "real_all", "paraphrases")


def split_of(item_id: str) -> str:
    """The split of a real item: ``untouched`` when sha1(id) % 3 == 0, else ``tune``."""
    return "untouched" if int(hashlib.sha1(item_id.encode()).hexdigest(), 16) % 3 == 0 else "tune"


def _article(obj: dict) -> Article:
    return Article.from_dict({
        "id": str(obj["id"]), "title": obj.get("title") or "", "summary": obj.get("summary") or "",
        "language": obj.get("language"), "content": obj.get("content"), "title_en": obj.get("title_en"),
        "summary_en": obj.get("summary_en"), "source": obj.get("source") or "", "feed_id": obj.get("feed_id") or "",
    })


def load_items(eval_dir: Path) -> dict[str, list[tuple[dict, set[str]]]]:
    """Labelled items by split name (real_all = tune + untouched)."""
    out: dict[str, list] = {s: [] for s in SPLITS}
    for name in ("dev.jsonl", "news_dev.jsonl"):
        with open(eval_dir / name, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                obj = json.loads(line)
                item = (obj, set(obj.get("topics") or []))
                iid = str(obj["id"])
                if name == "dev.jsonl" and iid.startswith("page-"):
                    out["paraphrases"].append(item)
                    continue
                out[split_of(iid)].append(item)
                out["real_all"].append(item)
    return out


def score(items, compiled, errors: list | None = None, only_topics: set[str] | None = None) -> dict:
    ids = [t.id for t in compiled]
    cnt = {t: {"tp": 0, "fp": 0, "fn": 0} for t in ids}
    for obj, gold in items:
        doc = AnalyzedArticle(_article(obj))
        matches = {m.topic: m.terms for m in rule_matches(doc, compiled)}
        for t in ids:
            kind = ("tp" if t in gold else "fp") if t in matches else ("fn" if t in gold else None)
            if kind is None:
                continue
            cnt[t][kind] += 1
            if errors is not None and kind != "tp" and (not only_topics or t in only_topics):
                errors.append({"kind": kind, "topic": t, "id": obj["id"], "title": obj.get("title"),
                               "summary": (obj.get("summary") or "")[:300], "gold": sorted(gold),
                               "terms": list(matches.get(t, ()))})

    def prf(c):
        p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
        r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}

    micro = {k: sum(c[k] for c in cnt.values()) for k in ("tp", "fp", "fn")}
    return {"items": len(items),
            "topics": {t: {**prf(c), **c, "positives": c["tp"] + c["fn"]} for t, c in cnt.items()},
            "micro": {**prf(micro), **micro}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config-dir", type=Path, default=ROOT / "config")
    ap.add_argument("--eval-dir", type=Path, default=ROOT.parent / "shared" / "eval")
    ap.add_argument("--only", default=",".join(SPLITS), help="comma-separated splits to score")
    ap.add_argument("--errors", default=None, help="list errors of this split on stderr (tune only, please)")
    ap.add_argument("--topic", action="append", default=[], help="restrict --errors to this topic")
    args = ap.parse_args(argv)
    compiled = compile_topics(load_topics(args.config_dir))
    data = load_items(args.eval_dir)
    wanted = [s for s in args.only.split(",") if s]
    result = {}
    for s in wanted:
        errs = [] if args.errors == s else None
        result[s] = score(data[s], compiled, errs, set(args.topic))
        if errs is not None:
            for e in errs:
                print(json.dumps(e, ensure_ascii=False), file=sys.stderr)
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
