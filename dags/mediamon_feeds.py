"""
### mediamon_feeds — poll news feeds, translate, classify, index, alert

One monitoring cycle per run, split into observable, separately retried tasks:

`plan` → `poll` (mapped, one task per batch of due feeds) → `enrich` (translate + classify,
the model loads once) → `index` → `alert` → `commit`

* **Polite**: `plan` skips feeds that are backing off (errors, `Retry-After`), disabled (HTTP 410)
  or not yet due (`interval` in feeds.yaml, default `MEDIAMON_DEFAULT_INTERVAL`); `poll` sends
  conditional requests with the stored ETag / Last-Modified.  Trigger with `{"force": true}` to
  poll every enabled feed now.
* **Nothing lost**: feed state (validators, URL after a 301, backoff) advances only in `commit`,
  after `index` succeeded.  If any task fails, the cursors stay put and the next run fetches and
  stores everything again (ids are deterministic, indexing is an upsert).
* **Small XCom**: tasks pass a staging key, feed ids and counts; articles travel through the
  run's staging area (removed by `commit`): `$MEDIAMON_DATA_DIR/staging/<run>/` by default, or
  `$MEDIAMON_STAGING_URL/<run>/` (`s3://`, `gs://`, `file:///shared/...`, any fsspec URL) when the
  tasks run on workers without a shared disk (CeleryExecutor, KubernetesExecutor).
* **Pools**: `mediamon_fetch` (poll tasks) and `mediamon_translate` (enrich) must exist:
  `airflow pools set mediamon_fetch 4 "mediamon feed polling"` and
  `airflow pools set mediamon_translate 1 "mediamon translation model"`.

Every task works at the run's time (the end of its data interval, else its logical date; the
clock only for a run that has neither), so a retried task decides as the first attempt did.

Configuration comes from the workers' environment (`MEDIAMON_*`, read inside each task).  Only
`MEDIAMON_SCHEDULE` (cron, default every 15 minutes; `none` for manual runs only) is read when the
file is parsed.  See docs/AIRFLOW.md.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import Param, dag, task

SCHEDULE = os.environ.get("MEDIAMON_SCHEDULE", "*/15 * * * *").strip()
FETCH_POOL = "mediamon_fetch"
TRANSLATE_POOL = "mediamon_translate"

DEFAULT_ARGS = {
    "owner": "mediamon",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    # a float multiplier since Airflow 3.3 (a bool on 3.1: pyproject requires >=3.3).  Airflow waits
    # between base and 2x base (deterministic jitter per try): 30-60 s, 60-120 s, 120-240 s
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=10),
}


@dag(
    dag_id="mediamon_feeds",
    schedule=None if SCHEDULE.lower() in ("", "none") else SCHEDULE,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    default_args=DEFAULT_ARGS,
    tags=["mediamon", "feeds", "monitoring"],
    doc_md=__doc__,
    params={"force": Param(False, type="boolean",
                           description="poll every enabled feed now, ignoring intervals and backoff")},
)
def mediamon_feeds():
    @task(execution_timeout=timedelta(minutes=5))
    def plan(run_id: str | None = None, params: dict | None = None, data_interval_end=None,
             logical_date=None) -> list[dict]:
        from pipeline.tasks import plan_task, run_time

        return plan_task(run_id or "manual", force=bool((params or {}).get("force")),
                         now=run_time(data_interval_end, logical_date))

    @task(pool=FETCH_POOL, execution_timeout=timedelta(minutes=10), map_index_template="{{ batch_label }}")
    def poll(batch: dict) -> dict:
        from airflow.sdk import get_current_context

        from pipeline.tasks import batch_label, poll_task

        get_current_context()["batch_label"] = batch_label(batch)  # type: ignore[typeddict-unknown-key]
        return poll_task(batch)

    @task(pool=TRANSLATE_POOL, execution_timeout=timedelta(minutes=45))
    def enrich(polled: list[dict]) -> dict:
        from pipeline.tasks import enrich_task

        return enrich_task(list(polled[:]))  # one request for all mapped results (iterating probes past the end)

    @task(execution_timeout=timedelta(minutes=15))
    def index(enriched: dict, data_interval_end=None, logical_date=None) -> dict:
        from pipeline.tasks import index_task, run_time

        return index_task(enriched, now=run_time(data_interval_end, logical_date))

    @task(execution_timeout=timedelta(minutes=15))
    def alert(indexed: dict, data_interval_end=None, logical_date=None) -> dict:
        from pipeline.tasks import alert_task, run_time

        return alert_task(indexed, now=run_time(data_interval_end, logical_date))

    @task(execution_timeout=timedelta(minutes=5))
    def commit(alerted: dict, data_interval_end=None, logical_date=None) -> dict:
        from pipeline.tasks import commit_task, run_time

        return commit_task(alerted, now=run_time(data_interval_end, logical_date))

    commit(alert(index(enrich(poll.expand(batch=plan())))))


mediamon_feeds()
