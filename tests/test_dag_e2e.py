"""End to end through Airflow: ``dag.test()`` of mediamon_feeds and mediamon_digest against fixture
feeds on a loopback HTTP server, the embedded SQLite store and a loopback SMTP server (aiosmtpd).

Airflow runs in this process with its own AIRFLOW_HOME and SQLite metadata DB in a temporary
directory (set before Airflow is first imported); ``dag.test()`` runs every task in-process
through the Task SDK, so a monkeypatch can inject a failure into one task.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import pytest
import yaml

from pipeline.cycle import run_cycle
from pipeline.errors import StoreUnavailable
from pipeline.settings import Settings
from pipeline.models import to_iso
from pipeline.staging import key_for_run, staging_root
from pipeline.tasks import run_time
from pipeline.store.sqlite import SQLiteStore

from .conftest import FEED_FIXTURES, ROOT, copy_default_topics, make_settings, write_feeds_yaml

pytestmark = pytest.mark.slow

DAGS = ROOT / "dags"
RECIPIENT = "analyst@example.org"
DIGEST_RECIPIENT = "desk@example.org"
XCOM_LIMIT = 4096  # bytes; the documented bound is far below this for a handful of feeds

NEW_EN_ITEM = b"""  <entry>
    <title>Oreshnik launchers arrive at a new base in Belarus</title>
    <link rel="alternate" href="https://world.example.com/europe/oreshnik-base"/>
    <id>urn:example:world:4</id>
    <updated>2026-11-24T09:00:00Z</updated>
    <summary>Satellite images show Oreshnik launchers at a base in Belarus.</summary>
  </entry>
</feed>"""


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    """A private Airflow installation: AIRFLOW_HOME, SQLite metadata DB, our dags folder."""
    home = tmp_path_factory.mktemp("airflow_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_HOME", str(home))
    mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS))
    mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    mp.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home}/airflow.db")
    if "airflow" in sys.modules:  # pragma: no cover - another test imported Airflow first
        from airflow import settings as af_settings

        if str(home) not in str(af_settings.SQL_ALCHEMY_CONN):
            mp.undo()
            pytest.fail("Airflow was imported before this module could point it at a temporary home")
    from airflow.utils import db

    db.resetdb()
    try:
        yield home
    finally:
        mp.undo()


def _load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.get_dag(dag_id)


def _states(dr) -> dict[tuple[str, int], str]:
    return {(ti.task_id, ti.map_index): str(getattr(ti.state, "value", ti.state)) for ti in dr.get_task_instances()}


def _xcoms(dr) -> dict[tuple[str, int], object]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.dag_id == dr.dag_id, XComModel.run_id == dr.run_id,
                                               XComModel.key == "return_value").all()
        out = {}
        for r in rows:
            value = r.value
            if isinstance(value, (bytes, str)):
                value = json.loads(value)
            out[(r.task_id, r.map_index)] = value
        return out


@pytest.fixture
def env(tmp_path, feed_server, smtp_server, monkeypatch, airflow_home):  # noqa: F811
    """Fixture feeds on the loopback server, alert rules, MEDIAMON_* for the tasks."""
    settings = make_settings(tmp_path)
    feeds = [
        {"id": "ru-news", "url": feed_server.add("/ru_news.xml", (FEED_FIXTURES / "ru_news.xml").read_bytes()),
         "source": "RU News", "language": "ru"},
        {"id": "en-news", "url": feed_server.add("/en_news.xml", (FEED_FIXTURES / "en_news.xml").read_bytes()),
         "source": "EN News", "language": "en"},
    ]
    write_feeds_yaml(settings.config_dir, feeds)
    copy_default_topics(settings.config_dir)
    (settings.config_dir / "alerts.yaml").write_text(yaml.safe_dump({"alerts": [
        {"id": "oreshnik", "query": "Орешник OR Oreshnik", "recipients": [RECIPIENT], "mode": "immediate"},
        {"id": "air-defence", "query": "ПВО OR \"air defence\"", "recipients": [DIGEST_RECIPIENT],
         "mode": "digest"},
    ]}, allow_unicode=True), encoding="utf-8")
    values = {"CONFIG_DIR": settings.config_dir, "DATA_DIR": settings.data_dir, "ALLOW_PRIVATE_NETWORKS": "true",
              "TRANSLATION_BACKEND": "none", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp_server.port,
              "SMTP_FROM": "mediamon@example.org", "SMTP_RETRY_WAIT": "0", "FETCH_TIMEOUT": "10",
              # one feed per mapped poll task, and feeds are due again at once (the second run polls)
              "POLL_BATCH_SIZE": "1", "DEFAULT_INTERVAL": "0.001",
              # the fixture items are years old: mail them on the rules' first run anyway
              "ALERT_FIRST_RUN_LOOKBACK": str(3650 * 86400)}
    for k, v in values.items():
        monkeypatch.setenv(f"MEDIAMON_{k}", str(v))
    s = Settings()
    assert s.data_dir == settings.data_dir and s.translation_backend == "none"
    return {"settings": s, "feeds": feeds, "feed_server": feed_server, "smtp": smtp_server, "tmp_path": tmp_path}


def _store_snapshot(settings: Settings) -> tuple[set[str], dict[str, dict]]:
    store = SQLiteStore(settings.store_path)
    try:
        return _all_ids(store), {k: v.to_dict() for k, v in store.get_feed_states().items()}
    finally:
        store.close()


def _all_ids(store: SQLiteStore) -> set[str]:
    rows = store.connection.execute("SELECT id FROM articles").fetchall()
    return {r[0] for r in rows}


def _reference_ids(env, tmp_path) -> set[str]:
    """What ``mediamon run`` (pipeline.cycle.run_cycle) stores for the same feeds."""
    (tmp_path / "reference").mkdir()
    ref = make_settings(tmp_path / "reference")
    write_feeds_yaml(ref.config_dir, env["feeds"])
    copy_default_topics(ref.config_dir)
    run_cycle(ref, alerts=[])
    store = SQLiteStore(ref.store_path)
    try:
        return _all_ids(store)
    finally:
        store.close()


def test_feeds_dag_stores_and_mails_then_second_run_adds_nothing(env):
    settings, smtp, server = env["settings"], env["smtp"], env["feed_server"]
    dag = _load_dag("mediamon_feeds")

    dr = dag.test()
    states = _states(dr)
    assert str(getattr(dr.state, "value", dr.state)) == "success", states
    assert states == {("plan", -1): "success", ("poll", 0): "success", ("poll", 1): "success",
                      ("enrich", -1): "success", ("index", -1): "success", ("alert", -1): "success",
                      ("commit", -1): "success"}

    # the same articles as `mediamon run` stores for these feeds, and every feed's cursor advanced
    ids, feed_states = _store_snapshot(settings)
    expected = _reference_ids(env, env["tmp_path"])
    assert ids == expected and len(ids) >= 6
    assert set(feed_states) == {"ru-news", "en-news"}
    assert all(s["etag"] and s["last_success_at"] and s["consecutive_failures"] == 0 for s in feed_states.values())
    # the tasks work at the run's time (its data interval end), not at whatever the clock says then
    run_at = dr.data_interval_end or dr.logical_date
    assert run_at is not None
    assert {s["last_fetch_at"] for s in feed_states.values()} == {to_iso(run_time(run_at))}

    # XCom stays small: counts, ids and the staging key only
    xcoms = _xcoms(dr)
    assert set(xcoms) == set(states)
    for key, value in xcoms.items():
        assert len(json.dumps(value)) < XCOM_LIMIT, key
    assert [b["feed_ids"] for b in sorted(xcoms[("plan", -1)], key=lambda b: b["batch"])] == [["ru-news"], ["en-news"]]
    assert xcoms[("index", -1)]["indexed"] == len(ids) and xcoms[("commit", -1)]["new"] == len(ids)
    assert not any(staging_root(settings).iterdir())  # staging removed after commit

    # one immediate email with both Oreshnik stories; the digest rule waits for mediamon_digest
    assert len(smtp.messages) == 1
    _, rcpts, msg = smtp.messages[0]
    assert rcpts == [RECIPIENT] and "oreshnik" in msg["Subject"]
    text = msg.get_body(("plain",)).get_content()
    assert "RU News" in text and "EN News" in text

    # second run: conditional GETs answered 304, nothing stored, nothing mailed, cursors kept
    n_requests = len(server.requests)
    dr2 = dag.test()
    assert str(getattr(dr2.state, "value", dr2.state)) == "success", _states(dr2)
    second = server.requests[n_requests:]
    assert len(second) == 2 and all(r["if_none_match"] for r in second)
    ids2, feed_states2 = _store_snapshot(settings)
    assert ids2 == ids
    assert {k: s["etag"] for k, s in feed_states2.items()} == {k: s["etag"] for k, s in feed_states.items()}
    x2 = _xcoms(dr2)
    assert sum(x2[("poll", i)]["not_modified"] for i in (0, 1)) == 2
    assert x2[("index", -1)]["indexed"] == 0 and x2[("commit", -1)]["new"] == 0
    assert len(smtp.messages) == 1

    # the daily digest DAG mails the queued digest matches once
    digest = _load_dag("mediamon_digest")
    dr3 = digest.test()
    assert str(getattr(dr3.state, "value", dr3.state)) == "success", _states(dr3)
    assert len(smtp.messages) == 2
    _, rcpts, msg = smtp.messages[1]
    assert rcpts == [DIGEST_RECIPIENT] and "air-defence" in msg["Subject"]
    dr4 = digest.test()
    assert str(getattr(dr4.state, "value", dr4.state)) == "success"
    assert len(smtp.messages) == 2


def test_failed_index_leaves_feed_state_and_next_run_stores_everything(env):
    settings, smtp, server = env["settings"], env["smtp"], env["feed_server"]
    dag = _load_dag("mediamon_feeds")
    assert str(getattr(dag.test().state, "value", None)) == "success"
    ids_before, states_before = _store_snapshot(settings)
    assert len(smtp.messages) == 1

    # a new Oreshnik story appears; the store then fails on every index attempt
    server.bodies["/en_news.xml"] = server.bodies["/en_news.xml"].replace(b"</feed>", NEW_EN_ITEM)
    attempts = []

    def broken_index(self, articles):
        attempts.append(len(articles))
        raise StoreUnavailable("injected: database is locked")

    index_task = dag.get_task("index")
    index_task.retry_delay = timedelta(0)  # retry at once in the test (the DAG's backoff is 30 s, 60 s, ...)
    index_task.max_retry_delay = timedelta(0)
    with pytest.MonkeyPatch.context() as broken:
        broken.setattr(SQLiteStore, "index", broken_index)
        failed = dag.test()
    states = _states(failed)
    assert str(getattr(failed.state, "value", failed.state)) == "failed", states
    assert states[("index", -1)] == "failed"
    assert states[("alert", -1)] == "upstream_failed" and states[("commit", -1)] == "upstream_failed"
    assert len(attempts) == index_task.retries + 1 and attempts[0] == 1  # retried, the new item each time
    ids_after_fail, states_after_fail = _store_snapshot(settings)
    assert ids_after_fail == ids_before
    assert states_after_fail == states_before  # cursors (ETag, Last-Modified, fetch times) untouched
    assert len(smtp.messages) == 1
    leftover = [p for p in staging_root(settings).iterdir()]
    assert len(leftover) == 1 and (leftover[0] / "enriched.jsonl").is_file()  # kept for inspection

    # the store recovers: the next run fetches the feed again and stores everything it missed
    recovered = dag.test()
    assert str(getattr(recovered.state, "value", recovered.state)) == "success", _states(recovered)
    ids_now, states_now = _store_snapshot(settings)
    assert ids_before < ids_now and len(ids_now - ids_before) == 1
    assert states_now["en-news"]["etag"] != states_before["en-news"]["etag"]
    assert states_now["en-news"]["last_new_items"] == 1
    assert len(smtp.messages) == 2 and "Oreshnik launchers" in smtp.messages[1][2].get_body(("plain",)).get_content()
    assert not (staging_root(settings) / key_for_run(recovered.run_id)).exists()


def test_invalid_config_fails_plan_without_using_up_retries(tmp_path, airflow_home):
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline.tasks import plan_task

    settings = make_settings(tmp_path)
    (settings.config_dir / "feeds.yaml").write_text("feeds:\n  - id: Bad Id\n    url: x\n    source: s\n")
    with pytest.raises(AirflowFailException, match=r"feeds.yaml: entry 1 .*field 'id'"):
        plan_task("manual__bad", settings=settings)
