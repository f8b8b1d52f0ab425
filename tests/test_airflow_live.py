"""The real thing: Airflow's api-server, scheduler and dag-processor on SQLite in a temporary
AIRFLOW_HOME on loopback; mediamon_feeds is unpaused and triggered through the REST API (v2, with
a JWT from the simple auth manager), runs through LocalExecutor workers, and must succeed.

Every wait is bounded; all processes are stopped (process group SIGTERM, then SIGKILL) at the end.
"""

from __future__ import annotations

import time

import httpx
import pytest

from pipeline.store.sqlite import SQLiteStore

from .airflow_stack import PASSWORD, USER, AirflowStack, airflow_env, free_port, wait_for
from .conftest import FEED_FIXTURES, copy_default_topics, make_settings, write_feeds_yaml

pytestmark = pytest.mark.slow

@pytest.fixture
def mediamon_env(tmp_path, feed_server):
    settings = make_settings(tmp_path)
    feeds = [{"id": name.split(".")[0].replace("_", "-"), "source": name, "language": lang,
              "url": feed_server.add(f"/{name}", (FEED_FIXTURES / name).read_bytes())}
             for name, lang in (("ru_news.xml", "ru"), ("en_news.xml", "en"), ("ru_cp1251.xml", "ru"))]
    write_feeds_yaml(settings.config_dir, feeds)
    copy_default_topics(settings.config_dir)
    env = {"MEDIAMON_CONFIG_DIR": str(settings.config_dir), "MEDIAMON_DATA_DIR": str(settings.data_dir),
           "MEDIAMON_ALLOW_PRIVATE_NETWORKS": "true", "MEDIAMON_TRANSLATION_BACKEND": "none",
           "MEDIAMON_POLL_BATCH_SIZE": "2", "MEDIAMON_SCHEDULE": "none"}
    return settings, feeds, env


@pytest.fixture
def stack(tmp_path, mediamon_env):
    home = tmp_path / "airflow_home"
    home.mkdir()
    port = free_port()
    env = airflow_env(home, port, {
        **mediamon_env[2],
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    })
    s = AirflowStack(home, env)
    try:
        s.cli("db", "migrate", timeout=180)
        s.start("api-server", "api-server", "--port", str(port))
        s.start("dag-processor", "dag-processor")
        s.start("scheduler", "scheduler")
        yield s
    finally:
        s.stop()


def test_scheduler_runs_mediamon_feeds_triggered_through_the_rest_api(stack, mediamon_env):
    settings, feeds, _ = mediamon_env
    client = httpx.Client(base_url=stack.base, timeout=10.0)
    t0 = time.monotonic()

    def health():
        r = client.get("/api/v2/monitor/health")
        return r.status_code == 200 and r.json()

    wait_for("api-server health", health, 120, stack)
    print(f"api-server up after {time.monotonic() - t0:.0f} s")
    r = client.post("/auth/token", json={"username": USER, "password": PASSWORD})
    assert r.status_code in (200, 201), r.text
    client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
    assert httpx.get(f"{stack.base}/api/v2/dags", timeout=10).status_code == 401  # auth is really on

    def parsed():
        r = client.get("/api/v2/dags/mediamon_feeds")
        return r.json() if r.status_code == 200 else None

    dag_info = wait_for("dag-processor to register mediamon_feeds", parsed, 180, stack)
    print(f"DAG registered after {time.monotonic() - t0:.0f} s")
    assert dag_info["max_active_runs"] == 1
    errors = client.get("/api/v2/importErrors").json()
    assert errors["total_entries"] == 0, errors

    # the pools the DAG uses (docs/AIRFLOW.md): without them its tasks are never scheduled
    for name, slots in (("mediamon_fetch", 2), ("mediamon_translate", 1)):
        r = client.post("/api/v2/pools", json={"name": name, "slots": slots, "description": f"mediamon {name}"})
        assert r.status_code == 201, r.text

    r = client.patch("/api/v2/dags/mediamon_feeds", json={"is_paused": False})
    assert r.status_code == 200 and r.json()["is_paused"] is False, r.text
    r = client.post("/api/v2/dags/mediamon_feeds/dagRuns", json={"logical_date": None, "conf": {"force": True}})
    assert r.status_code == 200, r.text
    run_id = r.json()["dag_run_id"]

    def finished():
        r = client.get(f"/api/v2/dags/mediamon_feeds/dagRuns/{run_id}")
        state = r.json()["state"]
        return state if state in ("success", "failed") else None

    t_run = time.monotonic()
    state = wait_for(f"run {run_id} to finish", finished, 300, stack, interval=2.0)
    print(f"run {state} in {time.monotonic() - t_run:.0f} s")
    tis = client.get(f"/api/v2/dags/mediamon_feeds/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    by_task = sorted((t["task_id"], t["map_index"], t["state"]) for t in tis)
    assert state == "success", (by_task, stack.tail("scheduler"))
    assert by_task == [("alert", -1, "success"), ("commit", -1, "success"), ("enrich", -1, "success"),
                       ("index", -1, "success"), ("plan", -1, "success"), ("poll", 0, "success"),
                       ("poll", 1, "success")]
    # the mapped poll tasks are labelled with their feeds (map_index_template)
    labels = sorted(t.get("rendered_map_index") or "" for t in tis if t["task_id"] == "poll")
    assert labels == ["batch 0: ru-news, en-news", "batch 1: ru-cp1251"], labels

    store = SQLiteStore(settings.store_path)
    try:
        assert store.count() > 0
        states = store.get_feed_states()
        by_source = store.stats().by_source
    finally:
        store.close()
    assert set(states) == {f["id"] for f in feeds}
    assert all(s.etag and s.last_success_at for s in states.values())
    assert all(by_source.get(f["source"], 0) > 0 for f in feeds), by_source
    assert not any((settings.data_dir / "staging").iterdir())
