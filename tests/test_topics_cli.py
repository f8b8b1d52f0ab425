"""CLI: classify, eval-topics (with the dev-set acceptance thresholds), topics list / explain."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_topics
from pipeline.query import parse_query
from pipeline.store.base import SearchRequest
from pipeline.store.sqlite import SQLiteStore

from .conftest import ROOT, SHARED
from .query_cases import make_article

runner = CliRunner()
CONFIG = str(ROOT / "config")
DEV = SHARED / "eval" / "dev.jsonl"


def _run(*args, input=None):
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def test_classify_jsonl_stdin():
    lines = [{"id": "1", "title": "Лукашенко: «Орешник» заступил на боевое дежурство в Белоруссии", "summary": ""},
             {"id": "2", "title": "Weather today", "summary": "Sunny", "language": "en"}]
    res = _run("classify", "-", "--config-dir", CONFIG, "--rules-only",
               input="\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n")
    assert res.exit_code == 0, res.output
    out = [json.loads(x) for x in res.output.splitlines()]
    assert [o["id"] for o in out] == ["1", "2"]
    assert set(out[0]) == {"id", "topics", "topic_matches"}
    assert "missile_deployment" in out[0]["topics"]
    m = next(x for x in out[0]["topic_matches"] if x["topic"] == "missile_deployment")
    assert m["method"] == "rule" and "Орешник" in m["terms"]
    assert out[1]["topics"] == []


def test_classify_bad_line_is_a_clear_error(tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_text('{"id": "1", "title": "x"}\nnot json\n', encoding="utf-8")
    res = runner.invoke(app, ["classify", str(f), "--config-dir", CONFIG])
    # issue 18: the bad line is reported, the rest is classified, exit 1 (ERROR) at the end
    assert res.exit_code == 1
    assert "line 2" in res.output and "Traceback" not in res.output
    assert '"id": "1"' in res.stdout


def _labelled(tmp_path):
    rows = [
        {"id": "p1", "title": "Oreshnik stationed in Belarus", "summary": "", "topics": ["missile_deployment"]},
        {"id": "n1", "title": "Cup final tonight", "summary": "", "topics": []},
        {"id": "f1", "title": "Новые ракеты для армии", "summary": "", "topics": ["missile_deployment"]},
        {"id": "x1", "title": "NATO summit opens", "summary": "", "topics": []},
    ]
    f = tmp_path / "lab.jsonl"
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return f


def test_eval_topics_json_shape_and_counts(tmp_path):
    res = _run("eval-topics", str(_labelled(tmp_path)), "--config-dir", CONFIG, "--json")
    assert res.exit_code == 0
    d = json.loads(res.output)
    assert set(d) == {"topics", "micro", "items"}
    assert set(d["micro"]) == {"precision", "recall", "f1", "tp", "fp", "fn"}
    md = d["topics"]["missile_deployment"]
    assert set(md) == {"precision", "recall", "f1", "tp", "fp", "fn"}
    assert (md["tp"], md["fp"], md["fn"]) == (1, 0, 1)
    assert md["precision"] == 1.0 and md["recall"] == 0.5 and md["f1"] == pytest.approx(0.6667)
    assert d["topics"]["nato_posture"]["fp"] == 1


def test_eval_topics_table_and_errors(tmp_path):
    res = _run("eval-topics", str(_labelled(tmp_path)), "--config-dir", CONFIG, "--errors")
    assert res.exit_code == 0
    assert "micro" in res.output and "missile_deployment" in res.output
    assert "FN" in res.output and "f1" in res.output
    assert "FP" in res.output and "x1" in res.output and "NATO" in res.output


def test_eval_topics_bootstrap_intervals(tmp_path):
    """--bootstrap N adds each F1's 95% interval (JSON ci95, a table column); without it the output
    is as before."""
    res = _run("eval-topics", str(_labelled(tmp_path)), "--config-dir", CONFIG, "--json", "--bootstrap", "200")
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert set(d["ci95"]) == {*d["topics"], "micro"}
    for k, (lo, hi) in d["ci95"].items():
        f1 = d["micro"]["f1"] if k == "micro" else d["topics"][k]["f1"]
        assert 0 <= lo <= f1 + 1e-4 and f1 - 1e-4 <= hi <= 1, (k, lo, f1, hi)
    res = _run("eval-topics", str(_labelled(tmp_path)), "--config-dir", CONFIG, "--bootstrap", "200")
    assert res.exit_code == 0 and "95% CI" in res.output
    assert "ci95" not in json.loads(_run("eval-topics", str(_labelled(tmp_path)), "--config-dir", CONFIG,
                                         "--json").output)


@pytest.mark.slow
@pytest.mark.skipif(not DEV.exists(), reason="../shared/eval/dev.jsonl not available")
def test_dev_set_acceptance():
    """Acceptance of issue 4: F1 >= 0.80 per topic and micro-F1 >= 0.85 on the labelled dev set."""
    res = _run("eval-topics", str(DEV), "--config-dir", CONFIG, "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert len(d["topics"]) == 5
    for tid, s in d["topics"].items():
        assert s["f1"] >= 0.80, (tid, s)
    assert d["micro"]["f1"] >= 0.85, d["micro"]


def test_eval_topics_exclude_prefix_split_and_several_files(tmp_path):
    from pipeline.evaluation import split_of

    ids = [f"item-{i}" for i in range(30)] + [f"page-{i}" for i in range(10)]
    rows = [{"id": i, "title": "Russia deployed Iskander missiles in Belarus", "summary": "",
             "topics": ["missile_deployment"]} for i in ids]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("\n".join(json.dumps(r) for r in rows[:20]), encoding="utf-8")
    b.write_text("\n".join(json.dumps(r) for r in rows[20:]), encoding="utf-8")

    def items(*extra):
        res = _run("eval-topics", str(a), str(b), "--config-dir", CONFIG, "--json", *extra)
        assert res.exit_code == 0, res.output
        return json.loads(res.output)["items"]

    assert items() == 40
    assert items("--exclude-prefix", "page-") == 30
    untouched = sum(1 for i in ids if not i.startswith("page-") and split_of(i) == "untouched")
    assert 0 < untouched < 30
    assert items("--exclude-prefix", "page-", "--split", "untouched") == untouched
    assert items("--exclude-prefix", "page-", "--split", "tune") == 30 - untouched
    res = _run("eval-topics", str(a), "--config-dir", CONFIG, "--split", "holdout")
    assert res.exit_code != 0 and "--split must be one of" in res.output


def test_split_is_fixed_by_the_id():
    from pipeline.evaluation import split_of

    assert [split_of(f"x{i}") for i in range(6)] == [split_of(f"x{i}") for i in range(6)]
    shares = [split_of(f"id-{i}") for i in range(3000)]
    assert 900 < shares.count("untouched") < 1100


NEWS_DEV = SHARED / "eval" / "news_dev.jsonl"


@pytest.mark.slow
@pytest.mark.skipif(not NEWS_DEV.exists(), reason="../shared/eval not available")
def test_real_items_untouched_split_floor():
    """Real news only (dev.jsonl without the page- paraphrases, plus news_dev.jsonl), the untouched
    third of the fixed split, which no rule was tuned on.  A regression floor at what the rules
    reach now (micro 0.816; missile_deployment 0.61, belarus_russia_military 0.50 on 2 positives);
    issue 13's target (every topic 0.85, micro 0.88) is not reached yet."""
    res = _run("eval-topics", str(DEV), str(NEWS_DEV), "--config-dir", CONFIG, "--json",
               "--exclude-prefix", "page-", "--split", "untouched")
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["items"] > 1000
    assert d["micro"]["f1"] >= 0.80, d["micro"]
    floors = {"missile_deployment": 0.6, "missile_strike": 0.83, "nuclear_weapons": 0.93,
              "belarus_russia_military": 0.5, "nato_posture": 0.7}
    for tid, s in d["topics"].items():
        assert s["f1"] >= floors[tid], (tid, s)


@pytest.mark.slow
@pytest.mark.skipif(not NEWS_DEV.exists(), reason="../shared/eval not available")
@pytest.mark.xfail(strict=True, reason="issue 13's topic target is not met yet: untouched micro 0.816, "
                   "missile_deployment 0.61 (README, Topics)")
def test_real_items_untouched_split_meets_issue_13_target():
    """Issue 13's target on the untouched third: every topic F1 >= 0.85 and micro >= 0.88.  Expected
    to fail until it is met; strict, so the day it passes the suite says so and the marker goes."""
    res = _run("eval-topics", str(DEV), str(NEWS_DEV), "--config-dir", CONFIG, "--json",
               "--exclude-prefix", "page-", "--split", "untouched")
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["micro"]["f1"] >= 0.88, d["micro"]
    for tid, s in d["topics"].items():
        assert s["f1"] >= 0.85, (tid, s)


def test_topics_list():
    res = _run("topics", "list", "--config-dir", CONFIG, "--json")
    ids = [t["id"] for t in json.loads(res.output)]
    assert ids == ["missile_deployment", "missile_strike", "nuclear_weapons", "belarus_russia_military",
                   "nato_posture"]
    res = _run("topics", "list", "--config-dir", CONFIG)
    assert res.exit_code == 0 and "nato_posture" in res.output


def test_topics_explain():
    res = _run("topics", "explain", "belarus_russia_military", "--config-dir", CONFIG,
               "--text", "Шойгу и Лукашенко обсудили в Минске военное сотрудничество")
    assert res.exit_code == 0
    assert "MATCH" in res.output and "Лукашенко" in res.output and "Шойгу" in res.output
    res = _run("topics", "explain", "belarus_russia_military", "--config-dir", CONFIG, "--json",
               "--text", "Лукашенко открыл стадион")
    d = json.loads(res.output)
    assert d["matched"] is False and d["explanation"]["kind"] == "and"
    assert [c["matched"] for c in d["explanation"]["children"]] == [True, False, False]


def test_topics_explain_unknown_topic():
    res = runner.invoke(app, ["topics", "explain", "nope", "--config-dir", CONFIG, "--text", "x"])
    assert res.exit_code == 2 and "unknown topic" in res.output


def test_every_command_has_an_example():
    for args in (["classify"], ["eval-topics"], ["topics", "list"], ["topics", "explain"], ["topics"]):
        res = runner.invoke(app, args + ["--help"])
        assert res.exit_code == 0 and "Example" in res.output, args


def test_default_topic_queries_agree_in_sqlite(tmp_path):
    """The shipped topic queries give the same hits in the embedded store as in Python."""
    arts = [
        make_article("s1", title="Лукашенко: «Орешник» заступил на боевое дежурство в Белоруссии"),
        make_article("s2", title="Ночью российские беспилотники атаковали Одессу, повреждён порт"),
        make_article("s3", title="Путин предупредил о росте угрозы ядерной войны"),
        make_article("s4", title="NATO to reinforce its eastern flank", summary="new brigades"),
        make_article("s5", title="АЭС приостановила работу ядерного реактора"),
        make_article("s6", title="Погода", title_en="Russian troops arrive in Belarus for joint drills"),
        make_article("s7", title="Рыбакина стала седьмой ракеткой мира"),
    ]
    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.index(arts)
    try:
        for t in load_topics(ROOT / "config"):
            q = parse_query(t.query)
            hits = {a.id for a in store.search(SearchRequest(query=t.query, limit=100)).hits}
            assert hits == {a.id for a in arts if q.matches(a)}, t.id
            assert hits, t.id
    finally:
        store.close()
