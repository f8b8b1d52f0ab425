"""The Airflow DAG files: they load, are wired as designed, retry, time out, and are cheap to parse.

Airflow is loaded in subprocesses with a temporary AIRFLOW_HOME, so this module never imports
Airflow into the test process (see test_dag_e2e.py for the runs themselves).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest

from pipeline.errors import FeedError, TransientFeedError
from pipeline.fetch import FetchResult
from pipeline.staging import Staging, StagingMissing, key_for_run, prune_stale
from pipeline.tasks import _error_from_dict, _error_to_dict, _fetch_from_dict, _fetch_to_dict, batch_label

from .conftest import ROOT, make_settings

DAGS = ROOT / "dags"
HEAVY = ("torch", "transformers", "elasticsearch", "feedparser", "lingua", "pipeline.cycle", "pipeline.fetch",
         "pipeline.store")
FEEDS_TASKS = {"plan", "poll", "enrich", "index", "alert", "commit"}


def _airflow_env(tmp_path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MEDIAMON_"))}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow_home"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(DAGS), PYTHONPATH=str(ROOT), **extra)
    return env


# Imports the DAG files the way the dag-processor does (Airflow already imported), timing only our
# files, then fills a DagBag and dumps what the tests check as JSON.
_PROBE = textwrap.dedent("""
    import importlib.util, json, sys, time
    t0 = time.perf_counter()
    from airflow.sdk import Param, dag, task  # noqa: F401  (what the DAG files import)
    t1 = time.perf_counter()
    dag_seconds = {}
    for name in ("mediamon_feeds", "mediamon_digest"):
        t = time.perf_counter()
        spec = importlib.util.spec_from_file_location("probe_" + name, f"{DAGS}/{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        dag_seconds[name] = time.perf_counter() - t
    heavy_after_import = sorted(m for m in HEAVY if m in sys.modules)

    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=DAGS)
    out = {"airflow_import_s": t1 - t0, "dag_import_s": dag_seconds, "heavy_after_import": heavy_after_import,
           "heavy_after_dagbag": sorted(m for m in HEAVY if m in sys.modules),
           "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()}, "dags": {}}
    for dag_id, d in bag.dags.items():
        out["dags"][dag_id] = {
            "schedule": str(d.schedule), "catchup": d.catchup, "max_active_runs": d.max_active_runs,
            "tags": sorted(d.tags), "doc_md": d.doc_md or "", "params": sorted(d.params.keys()),
            "dagrun_timeout": d.dagrun_timeout.total_seconds() if d.dagrun_timeout else None,
            "tasks": {t.task_id: {
                "upstream": sorted(t.upstream_task_ids), "downstream": sorted(t.downstream_task_ids),
                "retries": t.retries, "retry_exponential_backoff": float(t.retry_exponential_backoff),
                "retry_delay": t.retry_delay.total_seconds(),
                "max_retry_delay": t.max_retry_delay.total_seconds() if t.max_retry_delay else None,
                "execution_timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                "pool": t.pool, "mapped": type(t).__name__.endswith("MappedOperator"),
            } for t in d.tasks},
        }
    print("PROBE=" + json.dumps(out))
""")


def _probe(tmp_path, **env) -> dict:
    code = f"DAGS = {str(DAGS)!r}\nHEAVY = {HEAVY!r}\n" + _PROBE
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_airflow_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE=")][-1]
    return json.loads(line[len("PROBE="):])


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict:
    return _probe(tmp_path_factory.mktemp("dagbag"))


def test_dagbag_has_both_dags_and_no_import_errors(probe):
    assert probe["import_errors"] == {}
    assert set(probe["dags"]) == {"mediamon_feeds", "mediamon_digest"}


def test_feeds_dag_is_wired_plan_poll_enrich_index_alert_commit(probe):
    d = probe["dags"]["mediamon_feeds"]
    tasks = d["tasks"]
    assert set(tasks) == FEEDS_TASKS
    chain = ["plan", "poll", "enrich", "index", "alert", "commit"]
    for up, down in zip(chain, chain[1:]):
        assert tasks[down]["upstream"] == [up], down
        assert tasks[up]["downstream"] == [down], up
    assert tasks["plan"]["upstream"] == [] and tasks["commit"]["downstream"] == []
    assert tasks["poll"]["mapped"] and not any(t["mapped"] for k, t in tasks.items() if k != "poll")
    assert tasks["poll"]["pool"] == "mediamon_fetch"
    assert tasks["enrich"]["pool"] == "mediamon_translate"
    assert d["schedule"] == "*/15 * * * *"
    assert d["catchup"] is False and d["max_active_runs"] == 1
    assert "mediamon" in d["tags"] and "commit" in d["doc_md"]
    assert d["params"] == ["force"]
    assert d["dagrun_timeout"] and d["dagrun_timeout"] >= sum(t["execution_timeout"] for t in tasks.values())


def test_digest_dag_is_one_daily_task(probe):
    d = probe["dags"]["mediamon_digest"]
    assert set(d["tasks"]) == {"send_digest"}
    assert d["schedule"] == "0 6 * * *"
    assert d["catchup"] is False and d["max_active_runs"] == 1 and "digest" in d["tags"] and d["doc_md"]


def test_every_task_retries_with_exponential_backoff_and_has_a_timeout(probe):
    for dag_id, d in probe["dags"].items():
        for task_id, t in d["tasks"].items():
            where = f"{dag_id}.{task_id}"
            assert t["retries"] >= 2, where
            assert t["retry_exponential_backoff"] >= 2.0 and t["retry_delay"] > 0, where
            assert t["max_retry_delay"] and t["max_retry_delay"] >= t["retry_delay"], where
            assert t["execution_timeout"] and 0 < t["execution_timeout"] <= 3600, where


def test_dag_files_are_cheap_to_parse_and_import_nothing_heavy(probe):
    """What the dag-processor pays per file (Airflow itself is already imported there)."""
    assert probe["heavy_after_import"] == []
    assert probe["heavy_after_dagbag"] == []
    for name, seconds in probe["dag_import_s"].items():
        assert seconds < 2.0, (name, seconds)
    print(f"airflow.sdk import {probe['airflow_import_s']:.2f} s; DAG files "
          + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in probe["dag_import_s"].items()))


def test_dag_files_import_only_light_modules_at_top_level():
    """Static guard: DAG files only wire; pipeline and anything heavy is imported inside tasks."""
    allowed = {"__future__", "os", "datetime", "airflow.sdk"}
    for path in DAGS.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert set(names) <= allowed, f"{path.name}: top-level import of {names}"
        src = path.read_text(encoding="utf-8")
        assert "Settings(" not in src and "open_store" not in src, path.name


def test_schedules_come_from_the_environment(tmp_path):
    p = _probe(tmp_path, MEDIAMON_SCHEDULE="0 * * * *", MEDIAMON_DIGEST_SCHEDULE="none")
    assert p["import_errors"] == {}
    assert p["dags"]["mediamon_feeds"]["schedule"] == "0 * * * *"
    assert p["dags"]["mediamon_digest"]["schedule"] == "None"


# --- staging area and the XCom payload helpers (no Airflow needed) ------------------------------------

def test_staging_keys_are_safe_distinct_and_stable():
    a = key_for_run("scheduled__2026-11-23T12:00:00+00:00")
    b = key_for_run("scheduled__2026-11-23T12:00:00_00:00")
    assert a == key_for_run("scheduled__2026-11-23T12:00:00+00:00") and a != b
    for k in (a, b, key_for_run("../../etc/passwd"), key_for_run("")):
        assert "/" not in k and not k.startswith(".") and Staging(ROOT, k).key == k
    with pytest.raises(ValueError):
        Staging(ROOT, "../x")


def test_staging_writes_atomically_and_reads_back(tmp_path):
    settings = make_settings(tmp_path)
    st = Staging.for_run(settings, "manual__1")
    st.reset()
    rows = [{"id": str(i), "title": "Орешник " * i} for i in range(50)]
    assert st.write_jsonl("a.jsonl", rows) == 50
    assert list(st.read_jsonl("a.jsonl")) == rows

    def boom():
        yield {"id": "x"}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        st.write_jsonl("a.jsonl", boom())
    assert list(st.read_jsonl("a.jsonl")) == rows  # previous version intact, no temp files left
    assert sorted(p.name for p in st.path.iterdir()) == ["a.jsonl"]
    with pytest.raises(StagingMissing):
        st.read_json("missing.json")
    with pytest.raises(ValueError):
        st.file("../escape")
    st.remove()
    with pytest.raises(StagingMissing):
        Staging.open(settings, st.key)


def test_stale_staging_is_pruned_but_not_the_current_run(tmp_path):
    settings = make_settings(tmp_path)
    old, cur = Staging.for_run(settings, "old"), Staging.for_run(settings, "cur")
    old.reset()
    cur.reset()
    os.utime(old.path, (0, 0))
    os.utime(cur.path, (0, 0))
    assert prune_stale(settings, keep=cur.key) == [old.key]
    assert cur.exists() and not old.exists()


def test_fetch_outcomes_survive_the_trip_through_staging():
    err = TransientFeedError("HTTP 503", status=503, retry_after=120.0)
    f = FetchResult("tass", "https://a/x", "https://b/x", status=503, content=b"x", etag='"e"',
                    last_modified="Mon, 23 Nov 2026 12:00:00 GMT", permanent_url="https://b/x", error=err, elapsed=1.5)
    back = _fetch_from_dict(json.loads(json.dumps(_fetch_to_dict(f))))
    assert back.content is None
    assert (back.feed_id, back.url, back.final_url, back.status, back.etag, back.last_modified,
            back.permanent_url) == (f.feed_id, f.url, f.final_url, f.status, f.etag, f.last_modified,
                                    f.permanent_url)
    assert isinstance(back.error, TransientFeedError) and back.error.retry_after == 120.0
    assert back.error.status == 503 and str(back.error) == "HTTP 503"
    # an unknown type name never becomes an arbitrary class
    weird = _error_from_dict({"type": "SystemExit", "message": "m", "status": None, "retry_after": None})
    assert type(weird) is FeedError
    assert _error_to_dict(None) is None and _error_from_dict(None) is None


def test_batch_label_is_short():
    assert batch_label({"batch": 2, "feed_ids": ["a", "b"]}) == "batch 2: a, b"
    assert batch_label({"batch": 0, "feed_ids": list("abcdefg")}) == "batch 0: a, b, c, d +3"



def test_task_chain_without_airflow_is_idempotent_on_retries(tmp_path, feed_server):
    """The task bodies called directly, as Airflow would, with every retry a task could see."""
    from pipeline.store.sqlite import SQLiteStore
    from pipeline.tasks import alert_task, commit_task, enrich_task, index_task, plan_task, poll_task

    from .conftest import FEED_FIXTURES, copy_default_topics, write_feeds_yaml

    # the fixture items are days old: no first-run floor (issue 18) in a test of retries
    settings = make_settings(tmp_path, poll_batch_size=1, alert_first_run_lookback=3650 * 86400.0)
    write_feeds_yaml(settings.config_dir, [
        {"id": n.replace("_", "-"), "source": n, "language": n[:2],
         "url": feed_server.add(f"/{n}.xml", (FEED_FIXTURES / f"{n}.xml").read_bytes())}
        for n in ("ru_news", "en_news")])
    copy_default_topics(settings.config_dir)
    (settings.config_dir / "alerts.yaml").write_text(
        "alerts:\n  - id: oreshnik\n    query: Орешник OR Oreshnik\n    recipients: [a@example.org]\n",
        encoding="utf-8")

    batches = plan_task("manual__t1", settings=settings)
    assert [b["feed_ids"] for b in batches] == [["ru-news"], ["en-news"]]
    assert len({b["staging"] for b in batches}) == 1
    polled = [poll_task(b, settings=settings) for b in batches]
    st = Staging.open(settings, batches[0]["staging"])
    staged_ids = [r["id"] for r in st.read_jsonl("poll-0000.articles.jsonl")]
    # a retried poll (nothing committed, so the same unconditional GET) stages the same articles
    assert poll_task(batches[0], settings=settings) == polled[0]
    assert [r["id"] for r in st.read_jsonl("poll-0000.articles.jsonl")] == staged_ids

    enriched = enrich_task(polled, settings=settings)
    assert enrich_task(polled, settings=settings)["enriched"] == enriched["enriched"]
    n = enriched["enriched"]
    assert n == sum(p["new"] for p in polled) and n > 0
    indexed = index_task(enriched, settings=settings)
    assert indexed["created"] == n and indexed["alert_queued"] == 2  # the RU and the EN Oreshnik story
    again = index_task(enriched, settings=settings)  # a retried index: an upsert, nothing new
    assert again["created"] == 0 and again["index_failed"] == 0 and again.get("alert_queued", 0) == 0
    alerted = alert_task(again, settings=settings)  # no SMTP host: the email lands in the outbox
    assert alerted["alert_emails_sent"] == 1 and alerted["alert_items_sent"] == 2
    assert alert_task(again, settings=settings).get("alert_emails_sent", 0) == 0  # retried: no second email
    assert len(list(settings.outbox_dir.glob("*.eml"))) == 1

    store = SQLiteStore(settings.store_path)
    try:
        assert store.get_feed_states() == {}  # nothing advanced before commit
    finally:
        store.close()
    run_at = datetime(2026, 11, 24, 12, 15, tzinfo=timezone.utc)  # the run's data interval end
    committed = commit_task(alerted, settings=settings, now=run_at)
    assert committed["committed"] == 2 and committed["new"] == n and not st.exists()
    store = SQLiteStore(settings.store_path)
    try:
        states = store.get_feed_states()
        assert store.count() == n
    finally:
        store.close()
    assert all(s.etag and s.last_new_items > 0 and s.last_fetch_at == run_at for s in states.values())
    # commit retried after it finished (e.g. the XCom push failed): no error, nothing changes
    assert commit_task(alerted, settings=settings)["already_committed"] == 1

    # the feeds were just polled (at the run's time): the next run, a minute later, has nothing due
    # and leaves no staging behind; one a day later polls both
    assert plan_task("manual__t2", settings=settings, now=run_at + timedelta(minutes=1)) == []
    assert not any((tmp_path / "data" / "staging").iterdir())
    assert len(plan_task("manual__t3", settings=settings, now=run_at + timedelta(days=1))) == 2


def test_run_time_is_the_data_interval_end_else_the_logical_date():
    import pendulum

    from pipeline.tasks import run_time

    end = pendulum.datetime(2026, 11, 24, 12, 15, tz="Europe/Moscow")
    logical = pendulum.datetime(2026, 11, 24, 12, 0, tz="UTC")
    got = run_time(end, logical)
    assert got == datetime(2026, 11, 24, 9, 15, tzinfo=timezone.utc) and type(got) is datetime
    assert got.tzinfo == timezone.utc
    assert run_time(None, logical) == logical
    assert run_time(None, None) is None  # a run without a logical date: the task asks its clock
