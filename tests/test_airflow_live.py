"""The real thing: Airflow's api-server, scheduler and dag-processor on SQLite in a temporary
AIRFLOW_HOME on loopback; mediamon_feeds is unpaused and triggered through the REST API (v2, with
a JWT from the simple auth manager), runs through LocalExecutor workers, and must succeed.

Every wait is bounded; all processes are stopped (process group SIGTERM, then SIGKILL) at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline.store.sqlite import SQLiteStore

from .conftest import FEED_FIXTURES, ROOT, copy_default_topics, make_settings, write_feeds_yaml

pytestmark = pytest.mark.slow

DAGS = ROOT / "dags"
USER, PASSWORD = "mediamon", secrets.token_urlsafe(12)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _airflow_bin() -> str:
    exe = Path(sys.executable).parent / "airflow"
    return str(exe) if exe.exists() else (shutil.which("airflow") or "airflow")


class AirflowStack:
    def __init__(self, home: Path, env: dict[str, str]):
        self.home, self.env = home, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = int(env["AIRFLOW__API__PORT"])
        self.base = f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, timeout: float = 120) -> str:
        p = subprocess.run([_airflow_bin(), *args], env=self.env, cwd=self.home, capture_output=True, text=True,
                           timeout=timeout)
        assert p.returncode == 0, f"airflow {' '.join(args)}: {p.stderr[-3000:]}"
        return p.stdout

    def start(self, name: str, *args: str) -> None:
        log = (self.home / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen([_airflow_bin(), *args], env=self.env, cwd=self.home, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise AssertionError(f"airflow {name} exited with {p.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, n: int = 4000) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)


def _wait(what: str, fn, timeout: float, stack: AirflowStack, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            last = fn()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})\n"
                         + "\n".join(f"--- {n} ---\n{stack.tail(n)}" for n in stack.procs))


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
    port = _free_port()
    (home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MEDIAMON_"))}
    env.update(mediamon_env[2])
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "PYTHONPATH": str(ROOT),
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

    _wait("api-server health", health, 120, stack)
    print(f"api-server up after {time.monotonic() - t0:.0f} s")
    r = client.post("/auth/token", json={"username": USER, "password": PASSWORD})
    assert r.status_code in (200, 201), r.text
    client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
    assert httpx.get(f"{stack.base}/api/v2/dags", timeout=10).status_code == 401  # auth is really on

    def parsed():
        r = client.get("/api/v2/dags/mediamon_feeds")
        return r.json() if r.status_code == 200 else None

    dag_info = _wait("dag-processor to register mediamon_feeds", parsed, 180, stack)
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
    state = _wait(f"run {run_id} to finish", finished, 300, stack, interval=2.0)
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
