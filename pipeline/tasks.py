"""Task bodies of the Airflow DAGs (``dags/mediamon_feeds.py``, ``dags/mediamon_digest.py``).

The DAG files only wire these functions; what each step does is written once, in
``pipeline.steps``, which ``mediamon run`` (``pipeline.cycle``) chains in one process; here
the steps are scheduled as tasks and the batches wait in staging in between::

    plan ─► poll (mapped over feed batches) ─► enrich ─► index ─► alert ─► commit

* Every task builds its own ``Settings()`` (from ``MEDIAMON_*`` in the worker's
  environment) unless one is passed in (tests), and opens/closes the store itself.
* Time: every task takes ``now``, the run's time (:func:`run_time`: the end of the Airflow
  run's data interval, else its logical date); without one (a run triggered without a logical
  date, a direct call) it asks ``clock`` (the real clock by default).  The edges are parameters
  too: ``transport`` (HTTP) for ``poll_task``, ``mailer`` for ``alert_task`` and ``digest_task``.
* XCom carries only small JSON: the staging key, batch numbers, feed ids and counts.
  Bound: ``plan`` returns ~80 bytes per due feed (its feed ids) plus ~100 bytes per
  batch; every other task returns a flat dict of < 30 counters (< 1 KiB).  Articles
  never go through XCom: they travel in the run's staging directory
  (``pipeline.staging``), keyed by the Airflow run id.
* Idempotent retries: each task reads its inputs from staging and atomically
  (re)writes its outputs; a retried task does the same thing again.  Indexing is an
  upsert by deterministic id; alert matches are queued (before indexing, as in
  ``run_cycle``) and mailed through the store's sent-log (at most once per rule and article).
* One cycle per store: ``plan``, ``index``, ``alert``, ``commit`` and ``digest`` hold the store's
  cycle lock (``pipeline.lock``: the data-dir ``flock`` for SQLite, the lease document for
  Elasticsearch) while they run, so they never overlap a ``mediamon run``; a task that finds it
  held raises ``Locked`` and Airflow retries it.  The mapped ``poll`` tasks (which run in
  parallel and only read the store) and ``enrich`` (translation cache only) do not take it.
* Feed state advances only in ``commit_task``, which runs after ``index`` (and
  ``alert``) succeeded and refuses to run without the index result.  A failed run
  leaves the cursors where they were, so the next run fetches and stores everything.

Nothing here imports Airflow at module level; ``pipeline`` works without it.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Sequence

from . import errors as _errors
from .errors import ConfigError, FeedError
from .logs import get_logger, log
from .models import Article, Clock, FeedState, from_iso, to_iso, utcnow
from .settings import Settings
from .staging import Staging, StagingMissing, key_for_run, prune_stale, staging_root
from .lock import cycle_lock, owner_id
from .store import open_store

if TYPE_CHECKING:
    import httpx

    from .mail import Mailer

logger = get_logger(__name__)

PLAN_FILE = "plan.json"
ENRICHED_FILE = "enriched.jsonl"
INDEX_FILE = "index.json"


# --- helpers ------------------------------------------------------------------------------------------

def _settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else Settings()


def run_time(data_interval_end: datetime | None = None, logical_date: datetime | None = None) -> datetime | None:
    """The time of an Airflow run as the tasks use it: the end of its data interval, else its
    logical date (UTC); None for a run that has neither (triggered without a logical date)."""
    when = data_interval_end or logical_date
    if when is None:
        return None
    return datetime.fromtimestamp(when.timestamp(), timezone.utc)  # a plain datetime, not pendulum's


def _fail_without_retry(exc: Exception) -> None:
    """A permanent problem (invalid configuration): fail the task without using up retries.
    Uses Airflow's ``AirflowFailException`` when Airflow is there, else re-raises."""
    try:
        from airflow.sdk.exceptions import AirflowFailException
    except ImportError:  # pragma: no cover - pipeline without Airflow
        raise exc from None
    raise AirflowFailException(f"{exc} (not retried: fix the configuration and trigger a new run)") from exc


def _load_configs(settings: Settings, *, feeds: bool = False, topics: bool = False, alerts: bool = False):
    from .config import load_alerts, load_feeds, load_topics

    try:
        return (load_feeds(settings.config_dir) if feeds else None,
                load_topics(settings.config_dir) if topics else None,
                load_alerts(settings.config_dir) if alerts else None)
    except ConfigError as exc:
        _fail_without_retry(exc)
        raise  # unreachable


def _ints(counts: dict) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(counts.items())}


def batch_label(batch: dict) -> str:
    """Human label of one mapped poll task (Airflow's map_index_template)."""
    ids = list(batch.get("feed_ids") or ())
    shown = ", ".join(ids[:4]) + (f" +{len(ids) - 4}" if len(ids) > 4 else "")
    return f"batch {batch.get('batch')}: {shown}"


def _batch_name(i: int) -> str:
    return f"poll-{int(i):04d}"


# --- (de)serialising poll outcomes for the commit task ---------------------------------------------------

def _error_to_dict(err: FeedError | None) -> dict | None:
    if err is None:
        return None
    return {"type": type(err).__name__, "message": str(err), "status": err.status, "retry_after": err.retry_after}


def _error_from_dict(d: dict | None) -> FeedError | None:
    if not d:
        return None
    cls = getattr(_errors, str(d.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, FeedError)):
        cls = FeedError
    return cls(d.get("message") or "", status=d.get("status"), retry_after=d.get("retry_after"))


def _fetch_to_dict(fetch) -> dict:
    return {"feed_id": fetch.feed_id, "url": fetch.url, "final_url": fetch.final_url, "status": fetch.status,
            "content_type": fetch.content_type, "etag": fetch.etag, "last_modified": fetch.last_modified,
            "permanent_url": fetch.permanent_url, "error": _error_to_dict(fetch.error),
            "elapsed": fetch.elapsed, "fetched_at": to_iso(fetch.fetched_at)}


def _fetch_from_dict(d: dict):
    from .fetch import FetchResult

    return FetchResult(feed_id=d["feed_id"], url=d["url"], final_url=d["final_url"], status=d.get("status"),
                       content=None, content_type=d.get("content_type"), etag=d.get("etag"),
                       last_modified=d.get("last_modified"), permanent_url=d.get("permanent_url"),
                       error=_error_from_dict(d.get("error")), elapsed=float(d.get("elapsed") or 0.0),
                       fetched_at=from_iso(d.get("fetched_at")) or utcnow())


def _id_only_article(article_id: str, feed_id: str, fetched_at: datetime) -> Article:
    # commit_feed_states only looks at the ids of a feed's articles (which of them failed to store)
    return Article.from_dict({"id": article_id, "feed_id": feed_id}, missing_dates=fetched_at)


# --- mediamon_feeds ---------------------------------------------------------------------------------

def plan_task(run_id: str, *, force: bool = False, settings: Settings | None = None,
              now: datetime | None = None, clock: Clock = utcnow) -> list[dict]:
    """Load the configuration, pick the feeds that are due, split them into batches.

    Returns one small dict per batch (the ``expand`` input of the poll task):
    ``{"staging": key, "batch": i, "feed_ids": [...]}``; an empty list when nothing is due
    (the rest of the run is then skipped).  Validates topics.yaml and alerts.yaml too, so a
    broken config fails here, before anything is fetched.  A scheduled run respects each
    feed's interval (``steps.respects_interval``).
    """
    from .steps import plan

    settings = _settings(settings)
    feeds, _, _ = _load_configs(settings, feeds=True, topics=True, alerts=True)
    now = now or clock()
    with cycle_lock(settings, owner=owner_id("airflow-plan")), open_store(settings) as store:
        planned = plan(feeds, store, settings, now, force=force, scheduled=True)

    staging = Staging.for_run(settings, run_id)
    prune_stale(settings, keep=staging.key)
    size = settings.poll_batch_size
    batches = [[f.id for f in planned.due[i:i + size]] for i in range(0, len(planned.due), size)]
    if batches:
        staging.reset()
        staging.write_json(PLAN_FILE, {
            "run_id": run_id, "planned_at": to_iso(now), "force": force, "batches": batches,
            "skipped": {o.feed_id: o.error for o in planned.skipped},
        })
    else:
        staging.remove()  # nothing due: poll and everything after it are skipped, nothing to stage
    for o in planned.skipped:
        log(logger, 20, "plan_skipped", feed_id=o.feed_id, reason=o.error)
    log(logger, 20, "plan_done", run_id=run_id, **planned.counters(), batches=len(batches), staging=staging.key)
    return [{"staging": staging.key, "batch": i, "feed_ids": ids} for i, ids in enumerate(batches)]


def poll_task(batch: dict, *, settings: Settings | None = None,
              transport: "httpx.AsyncBaseTransport | None" = None) -> dict:
    """Fetch, parse and normalise one batch of feeds, drop ids already stored; stage the new
    articles and each feed's outcome.  One broken feed never fails the task (its error is
    staged and becomes backoff in commit); only an unusable store or staging area does."""
    from .poll import poll
    from .steps import deduplicate, feed_states, tally_polls

    settings = _settings(settings)
    staging = Staging.open(settings, batch["staging"])
    name = _batch_name(batch["batch"])
    wanted = list(batch.get("feed_ids") or ())
    feeds_cfg, _, _ = _load_configs(settings, feeds=True)
    by_id = {f.id: f for f in feeds_cfg}
    gone = [fid for fid in wanted if fid not in by_id]
    if gone:
        log(logger, 30, "poll_feeds_gone", feed_ids=gone)  # removed from feeds.yaml since plan
    feeds = [by_id[fid] for fid in wanted if fid in by_id]

    c: Counter = Counter(feeds=len(feeds))
    with open_store(settings) as store:
        states = feed_states(feeds, store)
        polls = poll(feeds, states, settings, transport=transport)
        new = deduplicate(store, tally_polls(polls, c), c, feeds_cfg)

    # articles first, then the feed outcomes: a feeds file present means the batch is complete
    staging.write_jsonl(f"{name}.articles.jsonl", (a.to_dict() for a in new))
    staging.write_json(f"{name}.feeds.json", [{
        "feed": p.feed.model_dump(mode="json"),
        "state": states[p.feed.id].to_dict(),
        "fetch": _fetch_to_dict(p.fetch),
        "error": _error_to_dict(p.error),
        "warnings": list(p.warnings),
        "article_ids": [a.id for a in p.articles],
        "outcome": p.outcome.to_dict(),
    } for p in polls])
    for p in polls:
        o = p.outcome
        log(logger, 30 if o.error else 20, "poll_feed", feed_id=o.feed_id, status=o.status,
            http_status=o.http_status, items=o.items, error=o.error)
    out = {"staging": staging.key, "batch": int(batch["batch"]), **_ints(c)}
    log(logger, 20, "poll_done", **out)
    return out


def _planned_batches(staging: Staging) -> list[list[str]]:
    return list(staging.read_json(PLAN_FILE)["batches"])


def _staged_new_articles(staging: Staging) -> list[Article]:
    """New articles of all batches, first occurrence wins (the same story in two batches)."""
    seen: dict[str, Article] = {}
    for i, _ in enumerate(_planned_batches(staging)):
        name = _batch_name(i)
        if not staging.has(f"{name}.feeds.json"):
            raise StagingMissing(f"batch {i} of {staging.key} was not polled; clear the run to poll again")
        for row in staging.read_jsonl(f"{name}.articles.jsonl"):
            seen.setdefault(row["id"], Article.from_dict(row))
    return list(seen.values())


def _key_from(upstream: dict | Sequence[dict]) -> str:
    if isinstance(upstream, dict):
        return upstream["staging"]
    keys = {u["staging"] for u in upstream}
    if len(keys) != 1:
        raise ValueError(f"expected one staging key from upstream, got {sorted(keys)}")
    return keys.pop()


def enrich_task(polled: dict | Sequence[dict], *, settings: Settings | None = None) -> dict:
    """Translate + classify every new article of the run in one task (the model loads once),
    plus items stored earlier whose translation could not run; stage the result."""
    from .steps import enrich_with_retries

    settings = _settings(settings)
    staging = Staging.open(settings, _key_from(polled))
    _, topics, _ = _load_configs(settings, topics=True)
    new = _staged_new_articles(staging)
    c: Counter = Counter(new=len(new))
    with open_store(settings) as store:
        enriched = enrich_with_retries(new, settings=settings, cache=store, topics=topics or [], counters=c,
                                       retry_from=store)
    staging.write_jsonl(ENRICHED_FILE, (a.to_dict() for a in enriched))
    out = {"staging": staging.key, "enriched": len(enriched), **_ints(c)}
    log(logger, 20, "enrich_done", **out)
    return out


def index_task(enriched: dict, *, settings: Settings | None = None, now: datetime | None = None,
               clock: Clock = utcnow) -> dict:
    """Queue the alert matches of the enriched articles, then store them (idempotent upsert by
    id); stage the IndexResult.  Queueing first (as ``run_cycle`` does) means no crash after
    indexing can lose a match; queueing again on a retry is a no-op.  Items the store refused
    are dead letters: counted, and their feeds keep the old cursor."""
    from .steps import first_run_floors, queue_and_index

    settings = _settings(settings)
    staging = Staging.open(settings, _key_from(enriched))
    _, _, rules = _load_configs(settings, alerts=True)
    articles = [Article.from_dict(r) for r in staging.read_jsonl(ENRICHED_FILE)]
    c: Counter = Counter()
    with cycle_lock(settings, owner=owner_id("airflow-index")), open_store(settings) as store:
        at = now or clock()
        floors = first_run_floors(settings=settings, alert_log=store, rules=rules or [], now=at,
                                  states=store.get_feed_states())
        result = queue_and_index(articles, store=store, alert_log=store, rules=rules or [], now=at,
                                 counters=c, floors=floors)
    staging.write_json(INDEX_FILE, {"created": list(result.created), "updated": list(result.updated),
                                    "unchanged": list(result.unchanged), "failed": dict(result.failed)})
    out = {"staging": staging.key, "created": len(result.created), "updated": len(result.updated),
           "unchanged": len(result.unchanged), **_ints(c)}
    log(logger, 20, "index_done", **out)
    return out


def _stored_ids(staging: Staging) -> tuple[set[str], dict[str, str]]:
    res = staging.read_json(INDEX_FILE)
    return set(res["created"]) | set(res["updated"]) | set(res["unchanged"]), dict(res["failed"])


def alert_task(indexed: dict, *, settings: Settings | None = None, now: datetime | None = None,
               clock: Clock = utcnow, mailer: "Mailer | None" = None) -> dict:
    """Mail every immediate rule's pending matches: this run's (queued by ``index_task``) and any
    left over from earlier runs.  Safe to retry: the sent-log stops a second email."""
    from .steps import alert

    settings = _settings(settings)
    staging = Staging.open(settings, _key_from(indexed))
    if not staging.has(INDEX_FILE):
        raise StagingMissing(f"no index result in {staging.path}: index did not finish")
    _, _, rules = _load_configs(settings, alerts=True)
    with cycle_lock(settings, owner=owner_id("airflow-alert")), open_store(settings) as store:
        counts = alert(settings=settings, store=store, rules=rules or [], now=now or clock(), mailer=mailer)
    out = {"staging": staging.key, **_ints(counts)}
    log(logger, 20, "alert_done", **out)
    return out


def commit_task(alerted: dict, *, settings: Settings | None = None, now: datetime | None = None,
                clock: Clock = utcnow) -> dict:
    """Advance every polled feed's state (validators, URL after a 301, backoff), then remove
    the run's staging.  Runs only with an index result in staging; a feed with an item the
    store refused keeps its old state so the item comes back."""
    from .config import FeedConfig
    from .pollresult import PollResult
    from .steps import commit_feed_states

    settings = _settings(settings)
    staging = Staging(staging_root(settings), _key_from(alerted))
    if not staging.exists():
        # only an earlier attempt of this task removes the staging (after saving feed state); at
        # worst (staging deleted by hand) the feeds keep their old cursors and are fetched again
        log(logger, 30, "commit_already_done", staging=staging.key)
        return {"staging": staging.key, "committed": 0, "already_committed": 1}
    if not staging.has(INDEX_FILE):
        raise StagingMissing(f"no index result in {staging.path}: refusing to advance feed state")
    stored, failed = _stored_ids(staging)
    new = _staged_new_articles(staging)
    new_by_feed = Counter(a.feed_id for a in new if a.id in stored)

    polls: list[PollResult] = []
    states: dict[str, FeedState] = {}
    for i, _ in enumerate(_planned_batches(staging)):
        for rec in staging.read_json(f"{_batch_name(i)}.feeds.json"):
            feed = FeedConfig.model_validate(rec["feed"])
            states[feed.id] = FeedState.from_dict(rec["state"])
            fetch = _fetch_from_dict(rec["fetch"])
            polls.append(PollResult(feed=feed, fetch=fetch,
                                    articles=[_id_only_article(aid, feed.id, fetch.fetched_at)
                                              for aid in rec["article_ids"]],
                                    error=_error_from_dict(rec["error"]), warnings=list(rec["warnings"])))
    with cycle_lock(settings, owner=owner_id("airflow-commit")), open_store(settings) as store:
        updated = commit_feed_states(store, polls, states, settings, now or clock(), dict(new_by_feed), failed)
    staging.remove()
    out = {"staging": staging.key, "committed": len(updated), "new": sum(new_by_feed.values()),
           "failed_feeds": sum(1 for p in polls if p.error is not None), "dead_letters": len(failed)}
    log(logger, 20, "commit_done", **out)
    return out


# --- mediamon_digest ------------------------------------------------------------------------------

def digest_task(*, settings: Settings | None = None, now: datetime | None = None, clock: Clock = utcnow,
                dry_run: bool = False, mailer: "Mailer | None" = None) -> dict:
    """Mail the pending matches of every digest rule (the same code as ``mediamon alerts digest``)."""
    from .alerts import send_digest

    settings = _settings(settings)
    _, _, rules = _load_configs(settings, alerts=True)
    with cycle_lock(settings, owner=owner_id("airflow-digest")), open_store(settings) as store:
        counts = send_digest(settings=settings, store=store, rules=list(rules or []), now=now or clock(),
                             dry_run=dry_run, mailer=mailer)
    out = {"digest_rules": sum(1 for r in rules or [] if r.mode == "digest"), **_ints(counts)}
    log(logger, 20, "digest_done", **out)
    return out


__all__ = ["alert_task", "batch_label", "commit_task", "digest_task", "enrich_task", "index_task",
           "key_for_run", "plan_task", "poll_task", "run_time"]
