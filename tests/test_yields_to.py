"""``yields_to`` in topics.yaml: when two topics both match, the title decides the item's main point
(pipeline.classify: a topic whose rule does not match the title alone gives way to one whose rule
does).  The classify stage, the explanations (`mediamon show`, `topics explain`, the web page's
article_rules) and config validation."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.classify import classify_stage, compile_topics, title_view
from pipeline.cli import app
from pipeline.config import TopicConfig, load_topics
from pipeline.errors import ConfigError
from pipeline.explain import article_rules

from .conftest import ROOT
from .query_cases import make_article

DEPLOY = "(missile OR ракета) AND (deployed OR stationed OR supply OR размещение)"
STRIKE = "(missile OR ракета) AND (strike OR attack OR удар)"


def _topics(deploy_yields=("strike",), strike_yields=("deploy",), order=("deploy", "strike")):
    defs = {"deploy": TopicConfig(id="deploy", name="Deployment", query=DEPLOY, yields_to=deploy_yields),
            "strike": TopicConfig(id="strike", name="Strike", query=STRIKE, yields_to=strike_yields)}
    return [defs[i] for i in order]


def _topics_of(title, summary="", topics=None):
    (out,), _ = classify_stage([make_article("x", title=title, summary=summary)], topics or _topics())
    return set(out.topics)


@pytest.mark.parametrize("title,summary,expected", [
    # the title reads as a strike only: the deployment words of the summary are background
    ("Missile strike on a depot", "The missiles were deployed last year.", {"strike"}),
    # the title reads as a deployment only: the attack words of the summary are background
    ("Missiles stationed near the border", "They could be used in an attack.", {"deploy"}),
    # the title reads as both, or as neither: both stay
    ("Missiles deployed, then used in a strike", "", {"deploy", "strike"}),
    ("Officials speak", "A missile strike hit the city. More missiles were deployed there.", {"deploy", "strike"}),
    # one topic alone is never touched
    ("Weather", "A missile strike hit the city.", {"strike"}),
])
def test_the_title_decides_between_two_matching_topics(title, summary, expected):
    assert _topics_of(title, summary) == expected


def test_the_order_of_topics_does_not_matter_and_yielding_is_one_way_when_declared_so():
    args = ("Missile strike on a depot", "The missiles were deployed last year.")
    assert _topics_of(*args, topics=_topics(order=("strike", "deploy"))) == {"strike"}
    # strike does not yield: only deploy can give way
    one_way = _topics(strike_yields=())
    assert _topics_of(*args, topics=one_way) == {"strike"}
    assert _topics_of("Missiles stationed near the border", "They could be used in an attack.",
                      topics=one_way) == {"deploy", "strike"}
    # nobody yields: both, as before yields_to existed
    assert _topics_of(*args, topics=_topics(deploy_yields=(), strike_yields=())) == {"deploy", "strike"}


def test_the_title_includes_its_translation_but_not_the_summary_translation():
    a = make_article("x", title="Удар ракетой по складу", summary="Ракеты размещены год назад.",
                     title_en="Missile strike on a depot", summary_en="The missiles were deployed a year ago.")
    view = title_view(a)
    assert (view.title, view.title_en, view.summary, view.summary_en) == (a.title, a.title_en, "", None)
    (out,), _ = classify_stage([a], _topics())
    assert out.topics == ("strike",)
    assert [m.topic for m in out.topic_matches] == ["strike"]


def test_validation_names_the_file_entry_and_field(tmp_path):
    for yields, why in ((["nowhere"], "no topic has this id"), (["deploy"], "cannot yield to itself")):
        (tmp_path / "topics.yaml").write_text(yaml.safe_dump({"topics": [
            {"id": "deploy", "name": "D", "query": DEPLOY, "yields_to": yields}]}), encoding="utf-8")
        with pytest.raises(ConfigError) as ei:
            load_topics(tmp_path)
        msg = str(ei.value)
        assert "topics.yaml" in msg and "entry 1" in msg and "'yields_to'" in msg and why in msg


def test_article_rules_say_which_topic_gave_way():
    a = make_article("x", title="Missile strike on a depot", summary="The missiles were deployed last year.")
    (stored,), _ = classify_stage([a], _topics())
    rules = {r["id"]: r for r in article_rules(stored, _topics(), [], None)}
    assert rules["strike"]["matched_now"] and rules["strike"]["yielded_to"] is None
    assert not rules["deploy"]["matched_now"] and rules["deploy"]["yielded_to"] == "strike"
    assert not rules["deploy"]["assigned"]


def test_shipped_topics_deployment_and_strike_yield_to_each_other():
    topics = {t.id: t for t in load_topics(ROOT / "config")}
    assert topics["missile_deployment"].yields_to == ("missile_strike",)
    assert topics["missile_strike"].yields_to == ("missile_deployment",)
    compile_topics(list(topics.values()))


def test_topics_explain_says_the_topic_gave_way(tmp_path):
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "topics.yaml").write_text(yaml.safe_dump({"topics": [t.model_dump(mode="json", exclude={"aliases"})
                                                                for t in _topics()]}), encoding="utf-8")
    args = ["topics", "explain", "deploy", "--config-dir", str(cfg), "--text", "Missile strike on a depot",
            "--summary", "The missiles were deployed last year."]
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["matched"] is False and d["yielded_to"] == "strike" and d["explanation"]["matched"] is True
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "no match" in res.output and "yields to it" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["topics", "explain", "strike", "--config-dir", str(cfg), "--json",
                                   "--text", "Missile strike on a depot", "--summary",
                                   "The missiles were deployed last year."])
    d = json.loads(res.output)
    assert d["matched"] is True and d["yielded_to"] is None


def test_the_search_page_and_show_say_the_topic_gave_way(tmp_path):
    import shutil

    from starlette.testclient import TestClient

    from pipeline.store.sqlite import SQLiteStore
    from pipeline.web.app import create_app

    from .conftest import make_settings

    settings = make_settings(tmp_path)
    for name in ("topics.yaml", "aliases.yaml", "alerts.yaml"):
        shutil.copy(ROOT / "config" / name, settings.config_dir / name)
    a = make_article("y1", title="ВСУ ударили ракетами ATACMS по аэродрому в Курской области",
                     summary="Ракеты, по данным источника, были поставлены США ещё весной.", language="ru")
    (stored,), _ = classify_stage([a], load_topics(settings.config_dir))
    assert stored.topics == ("missile_strike",)
    store = SQLiteStore(settings.store_path)
    try:
        store.index([stored])
        page = TestClient(create_app(settings, store=store), base_url="http://127.0.0.1:8080").get("/article/y1")
    finally:
        store.close()
    assert page.status_code == 200
    text = " ".join(page.text.split())
    assert "the title reads as missile_strike: yields to it" in text
    env = {"MEDIAMON_CONFIG_DIR": str(settings.config_dir), "MEDIAMON_DATA_DIR": str(settings.data_dir)}
    res = CliRunner().invoke(app, ["show", "y1"], env=env)
    assert res.exit_code == 0, res.output
    assert "so it yields to missile_strike (yields_to)" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["show", "y1", "--json"], env=env)
    rules = {r["id"]: r for r in json.loads(res.output)["rules"] if r["kind"] == "topic"}
    assert rules["missile_deployment"]["yielded_to"] == "missile_strike"
    assert rules["missile_strike"]["matched_now"] and rules["missile_strike"]["yielded_to"] is None
