"""
### mediamon_digest — daily digest emails

Mails the pending matches of every `mode: digest` rule in alerts.yaml, one email per rule, grouped
by topic, newest first: the same code as `mediamon alerts digest`.  Matches are queued by the
`alert` task of `mediamon_feeds`; the store's sent-log guarantees each (rule, article) pair is
mailed at most once, so a retry or a manual re-run never sends a digest item twice.

Configuration comes from the workers' environment (`MEDIAMON_*`, `MEDIAMON_SMTP_*`; without an
SMTP host the emails land in `$MEDIAMON_DATA_DIR/outbox`).  Only `MEDIAMON_DIGEST_SCHEDULE` (cron,
default 06:00 UTC daily; `none` for manual runs only) is read when the file is parsed.
See docs/AIRFLOW.md.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import dag, task

SCHEDULE = os.environ.get("MEDIAMON_DIGEST_SCHEDULE", "0 6 * * *").strip()


@dag(
    dag_id="mediamon_digest",
    schedule=None if SCHEDULE.lower() in ("", "none") else SCHEDULE,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    default_args={
        "owner": "mediamon",
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,  # Airflow >= 3.3 multiplier: waits 1-2, 2-4, 4-8 minutes (jitter)
        "max_retry_delay": timedelta(minutes=15),
        "execution_timeout": timedelta(minutes=15),
    },
    tags=["mediamon", "alerts", "digest"],
    doc_md=__doc__,
)
def mediamon_digest():
    @task(execution_timeout=timedelta(minutes=15))
    def send_digest(data_interval_end=None, logical_date=None) -> dict:
        from pipeline.tasks import digest_task, run_time

        return digest_task(now=run_time(data_interval_end, logical_date))

    send_digest()


mediamon_digest()
