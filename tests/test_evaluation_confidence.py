"""Bootstrap intervals of the topic scores (pipeline.evaluation.Evaluation.confidence), which
bench/eval_topics_split.py prints next to every F1 so that small differences on the untouched split
are read as the noise they are."""

from __future__ import annotations

import pytest

from pipeline.evaluation import Evaluation, TopicScore


def _evaluation(pairs: list[tuple[set[str], set[str]]], topics=("a", "b")) -> Evaluation:
    ev = Evaluation({t: TopicScore() for t in topics}, items=len(pairs))
    for pred, gold in pairs:
        ev.pairs.append((frozenset(pred), frozenset(gold)))
        for t in topics:
            s = ev.per_topic[t]
            if t in pred and t in gold:
                s.tp += 1
            elif t in pred:
                s.fp += 1
            elif t in gold:
                s.fn += 1
    return ev


def _mixed(copies: int = 1) -> Evaluation:
    base = ([({"a"}, {"a"})] * 8 + [({"a"}, set())] * 2 + [(set(), {"a"})] * 2
            + [({"b"}, {"b"})] * 5 + [({"b"}, {"a"})] * 1 + [(set(), set())] * 40)
    return _evaluation(base * copies)


def test_interval_brackets_the_point_estimate_and_is_reproducible():
    ev = _mixed()
    ci = ev.confidence(resamples=400, seed=3)
    assert set(ci) == {"a", "b", "micro"}
    for t, score in [*ev.per_topic.items(), ("micro", ev.micro)]:
        lo, hi = ci[t]
        assert 0.0 <= lo <= score.f1 <= hi <= 1.0, (t, lo, score.f1, hi)
        assert lo < hi  # a sample with errors in it is uncertain
    assert ci == ev.confidence(resamples=400, seed=3)
    assert ci != ev.confidence(resamples=400, seed=4)


def test_more_items_of_the_same_kind_narrow_the_interval():
    """Four times the items: about half the width (1/sqrt(4)); at least clearly narrower."""
    small, large = _mixed(1).confidence(resamples=600), _mixed(4).confidence(resamples=600)
    width = lambda ci: ci["micro"][1] - ci["micro"][0]  # noqa: E731
    assert width(large) < 0.7 * width(small)


def test_perfect_and_hopeless_classifiers_have_degenerate_intervals():
    perfect = _evaluation([({"a"}, {"a"})] * 5 + [(set(), set())] * 20)
    assert perfect.confidence(resamples=200)["micro"] == (1.0, 1.0)
    wrong = _evaluation([({"a"}, set())] * 5 + [(set(), {"b"})] * 5)
    assert wrong.confidence(resamples=200) == {"a": (0.0, 0.0), "b": (0.0, 0.0), "micro": (0.0, 0.0)}


def test_level_out_of_range_is_refused_and_an_empty_evaluation_has_no_interval():
    with pytest.raises(ValueError):
        _mixed().confidence(level=1.0)
    assert _evaluation([]).confidence(resamples=50) == {}


def test_evaluate_records_the_pairs_it_counted(tmp_path):
    from datetime import datetime, timezone

    from pipeline.config import TopicConfig
    from pipeline.evaluation import evaluate, labelled_items

    topics = [TopicConfig(id="ships", name="Ships", query="ship OR корабль")]
    rows = [{"id": "1", "title": "A ship sank", "topics": ["ships"]},
            {"id": "2", "title": "Корабли вышли в море", "topics": []},
            {"id": "3", "title": "Weather", "topics": ["ships"]}]
    ev = evaluate(labelled_items(rows, "x", topics, now=datetime(2026, 1, 1, tzinfo=timezone.utc)), topics)
    assert ev.pairs == [(frozenset({"ships"}), frozenset({"ships"})), (frozenset({"ships"}), frozenset()),
                        (frozenset(), frozenset({"ships"}))]
    lo, hi = ev.confidence(resamples=300)["ships"]
    assert lo <= ev.per_topic["ships"].f1 <= hi
