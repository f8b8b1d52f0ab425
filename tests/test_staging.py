"""Location-independent staging (MEDIAMON_STAGING_URL): the task bodies of mediamon_feeds run
alternately as two workers with different MEDIAMON_DATA_DIRs, handing the run over through a
real FTP server on loopback (fsspec's FTP file system) -- no directory is shared by the workers.
The default (data_dir/staging) keeps today's behaviour and is covered by test_dags.py."""

from __future__ import annotations

import itertools
import logging

import pytest

from pipeline.errors import StoreUnavailable
from pipeline.staging import MARKER, Staging, StagingMissing, prune_stale, staging_root
from pipeline.store.sqlite import SQLiteStore

from .conftest import FEED_FIXTURES, copy_default_topics, make_settings, write_feeds_yaml
from .objectstore import ftp_store  # noqa: F401 - fixture

pytest.importorskip("upath")


@pytest.fixture(autouse=True)
def _quiet_ftp():
    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)


def _workers(tmp_path, staging_url: str | None, **kw):
    """Two workers' settings: their own data dirs, the same config, the same store (the stand-in
    for Elasticsearch, which every worker reaches over the network), staging as given."""
    store = tmp_path / "store-host" / "mediamon.sqlite3"
    for d in ("store-host", "worker-a", "worker-b"):
        (tmp_path / d).mkdir()
    a = make_settings(tmp_path / "worker-a", staging_url=staging_url, sqlite_path=store, **kw)
    b = make_settings(tmp_path / "worker-b", staging_url=staging_url, sqlite_path=store,
                      config_dir=a.config_dir, **kw)
    return a, b


def _config(settings, feed_server):
    write_feeds_yaml(settings.config_dir, [
        {"id": n.replace("_", "-"), "source": n, "language": n[:2],
         "url": feed_server.add(f"/{n}.xml", (FEED_FIXTURES / f"{n}.xml").read_bytes())}
        for n in ("ru_news", "en_news", "ru_cp1251")])
    copy_default_topics(settings.config_dir)
    (settings.config_dir / "alerts.yaml").write_text(
        "alerts:\n  - id: oreshnik\n    query: Орешник OR Oreshnik\n    recipients: [a@example.org]\n",
        encoding="utf-8")


def test_a_run_hops_between_workers_through_the_staging_url(tmp_path, feed_server, ftp_store):  # noqa: F811
    from pipeline.tasks import alert_task, commit_task, enrich_task, index_task, plan_task, poll_task

    # the fixture items are days old: no first-run floor (issue 18) in a test of workers
    a, b = _workers(tmp_path, ftp_store.staging_url(), poll_batch_size=1, alert_first_run_lookback=3650 * 86400.0)
    _config(a, feed_server)
    hop = itertools.cycle([a, b])  # every task on the other worker than the one before

    batches = plan_task("manual__hop", settings=next(hop))
    assert len(batches) == 3
    key = batches[0]["staging"]
    assert (ftp_store.root / "staging" / key / MARKER).is_file()  # on the store's disk, not a worker's
    polled = [poll_task(x, settings=next(hop)) for x in batches]
    enriched = enrich_task(polled, settings=next(hop))
    indexed = index_task(enriched, settings=next(hop))
    alerted = alert_task(indexed, settings=next(hop))
    committed = commit_task(alerted, settings=next(hop))
    n = enriched["enriched"]
    assert n > 0 and indexed["created"] == n and committed["committed"] == 3 and committed["new"] == n
    assert alerted["alert_emails_sent"] == 1

    store = SQLiteStore(a.store_path)
    try:
        assert store.count() == n
        states = store.get_feed_states()
    finally:
        store.close()
    assert set(states) == {"ru-news", "en-news", "ru-cp1251"} and all(s.etag for s in states.values())
    # cleaned up on the store, and nothing was ever staged in either worker's data dir
    assert list((ftp_store.root / "staging").iterdir()) == []
    for w in (a, b):
        assert not (w.data_dir / "staging").exists()
    # a retried commit after the clean-up: already done, nothing changes
    assert commit_task(alerted, settings=next(hop))["already_committed"] == 1


def test_without_a_staging_url_the_hop_needs_a_shared_disk(tmp_path, feed_server):
    """What the setting fixes: with the default (data_dir/staging) a task on the other worker
    cannot see the run."""
    from pipeline.tasks import plan_task, poll_task

    a, b = _workers(tmp_path, None, poll_batch_size=1)
    _config(a, feed_server)
    batches = plan_task("manual__local", settings=a)
    with pytest.raises(StagingMissing):
        poll_task(batches[0], settings=b)


def test_remote_writes_are_atomic_and_removal_marker_first(tmp_path, ftp_store):  # noqa: F811
    settings = make_settings(tmp_path, staging_url=ftp_store.staging_url("runs"))
    st = Staging.for_run(settings, "manual__atomic")
    st.reset()
    st.write_json(MARKER, {"planned_at": "2026-11-28T09:00:00Z", "batches": []})
    rows = [{"id": str(i), "title": "Орешник " * i} for i in range(20)]
    assert st.write_jsonl("a.jsonl", rows) == 20

    def boom():
        yield {"id": "x"}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        st.write_jsonl("a.jsonl", boom())
    assert list(st.read_jsonl("a.jsonl")) == rows  # the previous version, whole
    on_disk = ftp_store.root / "runs" / st.key
    assert sorted(p.name for p in on_disk.iterdir()) == ["a.jsonl", MARKER]  # no temporary left
    with pytest.raises(StagingMissing):
        st.read_json("missing.json")

    # a removal killed after the marker went reads as gone, and the next prune finishes it
    (on_disk / MARKER).unlink()
    assert not st.exists()
    with pytest.raises(StagingMissing):
        Staging.open(settings, st.key)
    assert prune_stale(settings) == [] and not on_disk.exists()


def test_remote_stale_runs_are_pruned_by_their_plan_time(tmp_path, ftp_store):  # noqa: F811
    settings = make_settings(tmp_path, staging_url=ftp_store.staging_url())
    old, cur = Staging.for_run(settings, "old"), Staging.for_run(settings, "cur")
    for st, at in ((old, "2026-11-01T00:00:00Z"), (cur, "2026-11-28T09:00:00Z")):
        st.reset()
        st.write_json(MARKER, {"planned_at": at, "batches": []})
    now = 1795856400.0  # 2026-11-28T09:00:00Z
    assert prune_stale(settings, keep=None, now=now) == [old.key]
    assert cur.exists() and not old.exists()


def test_an_unreachable_staging_store_is_transient(tmp_path, ftp_store):  # noqa: F811
    settings = make_settings(tmp_path, staging_url=ftp_store.staging_url())
    ftp_store.stop()
    with pytest.raises(StoreUnavailable):
        Staging.for_run(settings, "manual__down").reset()


def test_default_staging_root_is_the_data_dir(tmp_path):
    assert staging_root(make_settings(tmp_path)) == tmp_path / "data" / "staging"


def test_a_staging_conn_id_goes_through_airflows_object_storage_path(tmp_path):
    """With MEDIAMON_STAGING_CONN_ID the root is Airflow's ObjectStoragePath (credentials from the
    Airflow connection); run in a subprocess so Airflow is not imported into the test process."""
    import json
    import subprocess
    import sys

    from .conftest import ROOT

    code = f"""
import json
from pipeline.settings import Settings
from pipeline.staging import Staging, staging_root
s = Settings(data_dir={str(tmp_path / 'data')!r}, staging_url={(tmp_path / 'shared').as_uri()!r},
             staging_conn_id='mediamon_staging')
root = staging_root(s)
st = Staging.for_run(s, 'manual__osp')
st.reset()
st.write_json('plan.json', {{'planned_at': '2026-11-28T09:00:00Z'}})
print(json.dumps([type(root).__name__, st.exists(), st.read_json('plan.json')]))
"""
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(tmp_path / "airflow"), "PYTHONPATH": str(ROOT)})
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    kind, exists, plan = json.loads(r.stdout.strip().splitlines()[-1])
    assert kind == "ObjectStoragePath" and exists and plan == {"planned_at": "2026-11-28T09:00:00Z"}
    assert [p.name.split("-")[0] for p in (tmp_path / "shared").iterdir()] == ["manual__osp"]
    assert not (tmp_path / "data" / "staging").exists()
