"""Measuring the topic rules: precision, recall and F1 per topic against labelled items.

``mediamon eval-topics`` reads labelled JSONL (``{id, title, summary, topics, language?}``),
classifies the items exactly as the cycle does (``pipeline.classify.classify_stage``) and
compares with the labels; :class:`Evaluation` holds the counts and the false positives (with the
terms that matched) and false negatives.  :func:`item_article` turns one hand-written item (the
input of ``classify`` and ``eval-topics``) into an Article, naming the line of a bad one.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Iterator, Literal, Sequence

from .config import TopicConfig
from .errors import ConfigError
from .models import Article


def item_article(obj: dict, n: int, path: str, *, now: datetime) -> Article:
    """Line ``n`` of ``path`` (a dict) as an Article dated ``now`` (the items carry no dates).
    Raises ConfigError naming the line and the field when the item is unusable."""
    if not isinstance(obj.get("id"), (str, int)):
        raise ConfigError(f"{path}: line {n}: field 'id' is required")
    d = {"id": str(obj["id"]), "title": obj.get("title") or "", "summary": obj.get("summary") or "",
         "language": obj.get("language"), "content": obj.get("content"), "title_en": obj.get("title_en"),
         "summary_en": obj.get("summary_en"), "source": obj.get("source") or "", "feed_id": obj.get("feed_id") or ""}
    for k in ("title", "summary"):
        if not isinstance(d[k], str):
            raise ConfigError(f"{path}: line {n}: field {k!r} must be a string")
    return Article.from_dict(d, missing_dates=now)


Split = Literal["all", "tune", "untouched"]
SPLITS: tuple[str, ...] = ("all", "tune", "untouched")


def split_of(item_id: str) -> str:
    """A fixed, content-free split of labelled items: ``untouched`` when sha1(id) % 3 == 0 (a third,
    for reporting only: never tune rules on its errors), else ``tune``."""
    return "untouched" if int(hashlib.sha1(item_id.encode("utf-8")).hexdigest(), 16) % 3 == 0 else "tune"


def select_rows(rows: Iterable[dict], *, exclude_prefixes: Sequence[str] = (),
                split: str = "all") -> Iterator[dict | None]:
    """The labelled rows to measure: without ids starting with any of ``exclude_prefixes`` (e.g.
    ``page-``, the paraphrases of dev.jsonl), and only those of ``split`` (:func:`split_of`).  A
    row left out is yielded as None, so that :func:`labelled_items` still names lines by their
    number in the file; rows without a usable id pass through (the line is reported as bad)."""
    for obj in rows:
        iid = obj.get("id") if isinstance(obj, dict) else None
        if isinstance(iid, (str, int)):
            iid = str(iid)
            if any(iid.startswith(p) for p in exclude_prefixes) or (split != "all" and split_of(iid) != split):
                yield None
                continue
        yield obj


def labelled_items(rows: Iterable[dict | None], path: str, topics: Sequence[TopicConfig], *,
                   now: datetime) -> list[tuple[Article, set[str]]]:
    """(article, gold topic ids among ``topics``) for each labelled row; ConfigError names a bad line."""
    known = {t.id for t in topics}
    items: list[tuple[Article, set[str]]] = []
    for n, obj in enumerate(rows, start=1):
        if obj is None:  # left out by select_rows
            continue
        gold = obj.get("topics")
        if not isinstance(gold, list):
            raise ConfigError(f"{path}: line {n}: field 'topics' must be a list")
        items.append((item_article(obj, n, path, now=now), set(gold) & known))
    return items


@dataclass
class TopicScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class Evaluation:
    per_topic: dict[str, TopicScore]
    errors: list[dict] = field(default_factory=list)
    items: int = 0
    # (predicted, gold) topic ids of every item, in input order: what :meth:`confidence` resamples
    pairs: list[tuple[frozenset[str], frozenset[str]]] = field(default_factory=list)

    @property
    def micro(self) -> TopicScore:
        s = TopicScore()
        for t in self.per_topic.values():
            s.tp += t.tp
            s.fp += t.fp
            s.fn += t.fn
        return s

    def to_dict(self) -> dict:
        r = lambda x: round(x, 4)  # noqa: E731
        m = self.micro
        return {"topics": {k: {"precision": r(v.precision), "recall": r(v.recall), "f1": r(v.f1),
                               "tp": v.tp, "fp": v.fp, "fn": v.fn} for k, v in self.per_topic.items()},
                "micro": {"precision": r(m.precision), "recall": r(m.recall), "f1": r(m.f1),
                          "tp": m.tp, "fp": m.fp, "fn": m.fn},
                "items": self.items}

    def confidence(self, *, resamples: int = 1000, seed: int = 0, level: float = 0.95
                   ) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap intervals of each topic's F1 and of micro F1 (key ``"micro"``):
        ``resamples`` times, draw as many items as there are, with replacement, and score the
        draw.  Fixed ``seed``: the same evaluation gives the same intervals.

        What it does not know: items of one story (the same news in several channels) are
        resampled as if independent, so the intervals are, if anything, too narrow.  Only items
        with some tp, fp or fn count (the others add nothing to any F1), which keeps this cheap.
        """
        if not 0 < level < 1:
            raise ValueError("level must be between 0 and 1")
        ids = list(self.per_topic)
        n = len(self.pairs)
        informative: dict[int, list[tuple[int, int]]] = {}  # item -> [(topic index, 0 tp | 1 fp | 2 fn)]
        for i, (pred, gold) in enumerate(self.pairs):
            marks = [(k, 0 if t in gold else 1) for k, t in enumerate(ids) if t in pred]
            marks += [(k, 2) for k, t in enumerate(ids) if t in gold and t not in pred]
            if marks:
                informative[i] = marks
        rng = random.Random(seed)
        samples: dict[str, list[float]] = {t: [] for t in [*ids, "micro"]}
        population = range(n)
        for _ in range(resamples if n else 0):
            drawn = Counter(rng.choices(population, k=n))
            counts = [[0, 0, 0] for _ in ids]
            for i, outcomes in informative.items():
                c = drawn.get(i)
                if c:
                    for k, kind in outcomes:
                        counts[k][kind] += c
            for t, (tp, fp, fn) in zip(ids, counts):
                samples[t].append(TopicScore(tp, fp, fn).f1)
            samples["micro"].append(TopicScore(*map(sum, zip(*counts))).f1 if counts else 0.0)
        tail = (1 - level) / 2
        out: dict[str, tuple[float, float]] = {}
        for t, xs in samples.items():
            if not xs:
                continue
            xs.sort()
            lo = xs[min(len(xs) - 1, int(tail * len(xs)))]
            hi = xs[min(len(xs) - 1, int((1 - tail) * len(xs)))]
            out[t] = (round(lo, 4), round(hi, 4))
        return out


def evaluate(items: Sequence[tuple[Article, set[str]]], topics: list[TopicConfig], classifier: Any = None) -> Evaluation:
    """Precision/recall/F1 per topic of the classifier against gold labels."""
    from .classify import classify_stage

    articles = [a for a, _ in items]
    out, _ = classify_stage(articles, topics, classifier)
    ev = Evaluation({t.id: TopicScore() for t in topics}, items=len(items))
    for a, (_, gold) in zip(out, items):
        pred = set(a.topics)
        ev.pairs.append((frozenset(pred), frozenset(gold)))
        terms = {m.topic: list(m.terms) for m in a.topic_matches}
        for t in topics:
            s = ev.per_topic[t.id]
            if t.id in pred and t.id in gold:
                s.tp += 1
            elif t.id in pred:
                s.fp += 1
                ev.errors.append({"kind": "fp", "topic": t.id, "id": a.id, "title": a.title, "terms": terms[t.id]})
            elif t.id in gold:
                s.fn += 1
                ev.errors.append({"kind": "fn", "topic": t.id, "id": a.id, "title": a.title, "terms": []})
    return ev
