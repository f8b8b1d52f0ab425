"""Production store: Elasticsearch 9 through the official client (``elasticsearch>=9,<10``).

Indices (``P`` = ``Settings.index_prefix``, default ``mediamon``)::

    P-articles-YYYY.MM   articles, one index per month of ``published_at`` (template
                         config/elasticsearch/articles.index-template.json), all behind
    P-articles           the read alias (added by the template to every new monthly index)
    P-feed-state         one document per feed, _id = feed_id
    P-translations       translation cache, _id = sha1(model, language, text_hash)
    P-alerts-queue       alert pairs waiting for delivery, _id = "rule_id:article_id"
    P-alerts-sent        the alert sent-log, written with op_type=create (409 = already sent)
    P-alerts-emails      one document per alert email (throttle log)
    P-lease              the cycle lease, one document (_id = cycle): one cycle per store (pipeline/lock.py)

``mediamon setup`` (:meth:`ElasticsearchStore.setup`) creates all of them idempotently; the
store itself never creates templates (the pipeline writer's role cannot) and refuses to write
before setup has run, rather than letting Elasticsearch auto-create dynamically mapped indices.

Upsert semantics (same as SQLiteStore.index):
  1. the ids of the batch are looked up through the read alias (an ``ids`` query returns each
     existing document with the concrete monthly index it lives in);
  2. an article whose stored ``_source`` equals ``Article.to_dict()`` is *unchanged* (no write);
  3. an existing article that differs is re-written with an ``index`` op **into the index it
     already lives in** (so a re-ingested article never gets a second copy, even if its
     ``published_at`` moved to another month) -> *updated*;
  4. a new article is written with a ``create`` op into ``P-articles-<month of published_at>``
     -> *created*; a 409 there means another writer stored it first -> *unchanged*.
Bulk items: 409 on create = already stored; 429 = retried for that item only with exponential
backoff (``helpers.streaming_bulk`` retries only the rejected items); any other 4xx (mapping
error, document too large) = dead letter in ``IndexResult.failed`` while the rest of the batch
is stored; 429 after the last retry or any 5xx = ``StoreUnavailable`` (transient: the cycle or
the Airflow task retries), raised only after the whole batch was sent, so nothing that was not
acknowledged is ever reported as stored.  Writes use ``refresh=wait_for``: when ``index``
returns, the documents are visible to ``known_ids`` and ``search`` (single-writer pipeline;
at most ~1 s of extra latency per batch).

Only this module imports ``elasticsearch`` and only when an Elasticsearch store is opened.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..analysis import analyse_lemmas
from ..errors import ConfigError, StoreError, StoreUnavailable
from ..logs import log
from ..models import Article, FeedState, from_iso, to_iso
from .base import (AlertEntry, Closing, CorruptRows, IndexResult, SearchRequest, SearchResult, Stats, StoredVersion,
                   TranslationKey)

logger = logging.getLogger("mediamon.store.elasticsearch")

TEMPLATE_FILE = "articles.index-template.json"
# suffix of the index name -> file in config/elasticsearch/
STATE_INDEX_FILES: dict[str, str] = {
    "feed-state": "feed-state.index.json",
    "translations": "translations.index.json",
    "alerts-queue": "alerts-queue.index.json",
    "alerts-sent": "alerts-sent.index.json",
    "alerts-emails": "alerts-emails.index.json",
    "lease": "lease.index.json",
}
# checked before every write; the lease index is checked by the lease calls themselves (a store set
# up before it existed works until its first locked cycle, which asks for `mediamon setup`)
REQUIRED_STATE_INDICES = tuple(s for s in STATE_INDEX_FILES if s != "lease")
LEASE_ID = "cycle"
# alert_claim's compare-and-set; ISO-8601 UTC strings of one format compare as times
CLAIM_SCRIPT = ("if (ctx._source.status != 'pending' || (ctx._source.last_error == params.marker"
                " && ctx._source.last_attempt_at != null && ctx._source.last_attempt_at.compareTo(params.stale_before) > 0))"
                " { ctx.op = 'noop'; } else { ctx._source.last_error = params.marker;"
                " ctx._source.last_attempt_at = params.at;"
                " ctx._source.attempts = (ctx._source.attempts == null ? 0 : ctx._source.attempts) + 1; }")
_REPO_ES_CONFIG = Path(__file__).resolve().parents[2] / "config" / "elasticsearch"
_MAX_WINDOW = 10_000  # index.max_result_window default


# --- configuration files --------------------------------------------------------------------------

def es_config_dir(config_dir: Path | None = None) -> Path:
    """``<MEDIAMON_CONFIG_DIR>/elasticsearch`` if it holds the template, else the copy next to the
    package source (a git checkout or the Docker image, where the repo is copied to /opt/mediamon)."""
    for cand in ([Path(config_dir) / "elasticsearch"] if config_dir else []) + [_REPO_ES_CONFIG]:
        if (cand / TEMPLATE_FILE).is_file():
            return cand
    raise ConfigError(f"{TEMPLATE_FILE} not found in {config_dir}/elasticsearch or {_REPO_ES_CONFIG}: "
                      "copy config/elasticsearch/ from the mediamon repository into MEDIAMON_CONFIG_DIR")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def articles_template(prefix: str, es_dir: Path | None = None) -> dict:
    """The composable index template for ``prefix`` (index_patterns and alias rewritten)."""
    tpl = _read_json((es_dir or es_config_dir()) / TEMPLATE_FILE)
    tpl = copy.deepcopy(tpl)
    tpl["index_patterns"] = [f"{prefix}-articles-*"]
    tpl["template"]["aliases"] = {f"{prefix}-articles": {}}
    canonical = json.dumps({k: tpl[k] for k in ("index_patterns", "template", "priority", "version")},
                           sort_keys=True, ensure_ascii=False)
    tpl["_meta"] = {**tpl.get("_meta", {}), "content_sha1": hashlib.sha1(canonical.encode()).hexdigest()}
    return tpl


def state_index_body(suffix: str, es_dir: Path | None = None) -> dict:
    return _read_json((es_dir or es_config_dir()) / STATE_INDEX_FILES[suffix])


# --- small helpers --------------------------------------------------------------------------------

def month_index(prefix: str, published_at: datetime) -> str:
    dt = published_at.astimezone(timezone.utc) if published_at.tzinfo else published_at
    return f"{prefix}-articles-{dt:%Y.%m}"


def lemma_fields(a: Article) -> dict[str, str]:
    """The ``lemmas`` object of an article document: for each text field with Cyrillic letters, its
    lemmas (pipeline.analysis.analyse_lemmas) joined by spaces.  Elasticsearch cannot compute them
    (no pymorphy3 there), so the pipeline does, and the query compiler (pipeline.query.to_es) and
    Kibana users query ``lemmas.*`` with the dictionary form of a word."""
    out = {}
    for f in ("title", "summary", "content", "title_en", "summary_en", "content_en"):
        text = getattr(a, f)
        if f.endswith("_en") and text == getattr(a, f[:-3]):
            continue  # an English original: the English field repeats it (as in the evaluator)
        lem = analyse_lemmas(text)
        if lem:
            out[f] = " ".join(lem)
    return out


def article_doc(a: Article) -> dict:
    """The indexed document: ``Article.to_dict()`` plus the lemma channel."""
    doc = a.to_dict()
    doc["lemmas"] = lemma_fields(a)
    return doc


def _jsonable(doc: dict) -> dict:
    """The document exactly as Elasticsearch will hand it back in ``_source``."""
    return json.loads(json.dumps(doc, ensure_ascii=False))


def _sha1(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()


def translation_doc_id(key: TranslationKey) -> str:
    return _sha1(*key)


def pair_id(rule_id: str, article_id: str) -> str:
    return f"{rule_id}:{article_id}"


def _encode_cursor(sort_values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(sort_values).encode()).decode()


def _decode_cursor(cursor: str) -> list:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except Exception as exc:  # noqa: BLE001 - any garbage cursor is a user error
        raise ValueError(f"invalid cursor: {cursor!r}") from exc
    if not isinstance(values, list):
        raise ValueError(f"invalid cursor: {cursor!r}")
    return values


def _item_reason(info: dict) -> str:
    err = info.get("error")
    if isinstance(err, dict):
        reason = f"{err.get('type', 'error')}: {err.get('reason', '')}"
        cause = err.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason += f" ({cause.get('type', '')}: {cause['reason']})"
    else:
        reason = str(err)
    return f"HTTP {info.get('status')} {reason}"[:1000]


class PartialWriteError(StoreUnavailable):
    """A bulk write had transient item failures; ``result`` holds what *was* acknowledged."""

    def __init__(self, message: str, result: IndexResult):
        super().__init__(message)
        self.result = result


# --- the store ------------------------------------------------------------------------------------

class ElasticsearchStore(Closing):
    """Store Protocol over Elasticsearch.  Build it with :meth:`from_settings`, or pass a client."""

    def __init__(self, client: Any, *, prefix: str = "mediamon", es_dir: Path | None = None,
                 chunk_size: int = 500, max_retries: int = 5, initial_backoff: float = 0.5,
                 max_backoff: float = 30.0, refresh: str | bool = "wait_for"):
        self.client = client
        self.prefix = prefix
        self.es_dir = es_dir
        self.chunk_size = chunk_size
        self.max_retries = max_retries
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.refresh = refresh
        self._checked = False
        self.corrupt = CorruptRows("elasticsearch")  # stored documents that could not be read back (skipped)
        self._lease_seq: tuple[int, int] | None = None  # (_seq_no, _primary_term) of our lease write

    # -- construction ------------------------------------------------------------------------
    @staticmethod
    def client_from_settings(settings: Any, **client_options: Any) -> Any:
        try:
            from elasticsearch import Elasticsearch
        except ImportError as exc:  # pragma: no cover - dependency is declared
            raise ConfigError("MEDIAMON_ELASTICSEARCH_URL is set but the 'elasticsearch' package is "
                              "not installed: pip install 'elasticsearch>=9,<10'") from exc
        kw: dict[str, Any] = {"request_timeout": 30, "retry_on_timeout": True, "max_retries": 3}
        if settings.elasticsearch_api_key is not None:
            kw["api_key"] = settings.elasticsearch_api_key.get_secret_value()
        elif settings.elasticsearch_username:
            pw = settings.elasticsearch_password.get_secret_value() if settings.elasticsearch_password else ""
            kw["basic_auth"] = (settings.elasticsearch_username, pw)
        if settings.elasticsearch_ca_certs:
            kw["ca_certs"] = str(settings.elasticsearch_ca_certs)
        kw.update(client_options)
        try:
            return Elasticsearch(settings.elasticsearch_url, **kw)
        except ValueError as exc:
            raise ConfigError(f"invalid MEDIAMON_ELASTICSEARCH_URL / TLS settings: {exc}") from exc

    @classmethod
    def from_settings(cls, settings: Any, **options: Any) -> "ElasticsearchStore":
        client_options = options.pop("client_options", {})
        return cls(cls.client_from_settings(settings, **client_options), prefix=settings.index_prefix,
                   es_dir=es_config_dir(settings.config_dir), **options)

    def close(self) -> None:
        self.client.close()

    # -- names ---------------------------------------------------------------------------------
    @property
    def articles_alias(self) -> str:
        return f"{self.prefix}-articles"

    @property
    def template_name(self) -> str:
        return f"{self.prefix}-articles"

    def state_index(self, suffix: str) -> str:
        assert suffix in STATE_INDEX_FILES, suffix
        return f"{self.prefix}-{suffix}"

    def month_index(self, published_at: datetime) -> str:
        return month_index(self.prefix, published_at)

    # -- error mapping -----------------------------------------------------------------------------
    def _call(self, what: str, fn, *args, not_found: Any = ..., **kwargs):
        """Run one client call; transport/5xx/429 -> StoreUnavailable, other API errors -> StoreError.
        With ``not_found`` given, a 404 returns it instead of raising."""
        from elasticsearch import ApiError, TransportError

        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            status = getattr(exc, "status_code", None) or getattr(getattr(exc, "meta", None), "status", None)
            if status == 404 and not_found is not ...:
                return not_found
            if status in (401, 403):
                raise StoreError(f"Elasticsearch refused {what} (HTTP {status}): check "
                                 f"MEDIAMON_ELASTICSEARCH_API_KEY / _USERNAME / _PASSWORD and the role: {exc}") from exc
            if status == 429 or (isinstance(status, int) and status >= 500):
                raise StoreUnavailable(f"Elasticsearch unavailable during {what} (HTTP {status}): {exc}") from exc
            raise StoreError(f"Elasticsearch {what} failed (HTTP {status}): {exc}") from exc
        except TransportError as exc:
            raise StoreUnavailable(f"Elasticsearch unreachable during {what}: {exc}") from exc

    def _require_setup(self) -> None:
        """Refuse to write before `mediamon setup`: Elasticsearch would otherwise auto-create
        dynamically mapped indices.  One HEAD request per store instance."""
        if self._checked:
            return
        names = [self.articles_alias] + [self.state_index(s) for s in REQUIRED_STATE_INDICES]
        ok = self._call("index check", self.client.indices.exists, index=names)
        if not ok:
            raise StoreError(f"Elasticsearch indices for prefix {self.prefix!r} are missing "
                             f"({', '.join(names)}): run `mediamon setup` first")
        self._checked = True

    # -- bulk ------------------------------------------------------------------------------------
    def _bulk(self, actions: list[dict], what: str, *, client: Any = None) -> Iterator[tuple[str, dict]]:
        """Yield (op_type, item) for every action via helpers.streaming_bulk: items rejected with
        429 are retried alone with exponential backoff; other failures are yielded, not raised."""
        if not actions:
            return
        from elasticsearch import helpers

        gen = helpers.streaming_bulk(
            client if client is not None else self.client, actions, chunk_size=self.chunk_size, raise_on_error=False,
            raise_on_exception=True, max_retries=self.max_retries, initial_backoff=self.initial_backoff,
            max_backoff=self.max_backoff, retry_on_status=(429,), refresh=self.refresh)
        it = iter(gen)
        while True:
            item = self._call(what, next, it, None)
            if item is None:
                return
            _ok, result = item
            op, info = next(iter(result.items()))
            yield op, info

    def _simple_bulk(self, actions: list[dict], what: str, *, ok_statuses: tuple[int, ...] = (),
                     client: Any = None) -> dict[str, dict]:
        """Bulk for state writes: every item must succeed (or have a status in ``ok_statuses``);
        transient failures raise StoreUnavailable, permanent ones StoreError.  Returns id -> item."""
        out: dict[str, dict] = {}
        transient: list[str] = []
        permanent: list[str] = []
        for _op, info in self._bulk(actions, what, client=client):
            status = info.get("status", 500)
            out[str(info.get("_id"))] = info
            if 200 <= status < 300 or status in ok_statuses:
                continue
            (transient if status == 429 or status >= 500 else permanent).append(
                f"{info.get('_id')}: {_item_reason(info)}")
        if transient:
            raise StoreUnavailable(f"{what}: {len(transient)} item(s) not stored: {transient[:3]}")
        if permanent:
            raise StoreError(f"{what}: {len(permanent)} item(s) rejected: {permanent[:3]}")
        return out

    # -- setup (mediamon setup) --------------------------------------------------------------------
    def setup(self, *, now: datetime | None = None) -> list[str]:
        """Create or update the template, the state indices, the current monthly index and the
        alias.  Idempotent; returns one line per step for the CLI."""
        es = self.client
        done: list[str] = []
        tpl = articles_template(self.prefix, self.es_dir)
        existing = self._call("get template", es.indices.get_index_template, name=self.template_name,
                              not_found=None)
        current = None
        for t in (existing["index_templates"] if existing is not None else []):
            if t.get("name") == self.template_name:
                current = t["index_template"]
        # _meta is stored verbatim: its content hash tells whether the file changed since the last put
        if current is not None and current.get("_meta") == tpl["_meta"]:
            done.append(f"index template {self.template_name}: unchanged")
        else:
            self._call("put template", es.indices.put_index_template, name=self.template_name,
                       index_patterns=tpl["index_patterns"], template=tpl["template"],
                       priority=tpl.get("priority"), version=tpl.get("version"), meta=tpl["_meta"])
            done.append(f"index template {self.template_name}: {'updated' if current else 'created'}")
        mappings = tpl["template"]["mappings"]
        first = self.month_index(now or datetime.now(timezone.utc))
        if self._call("index exists", es.indices.exists, index=first):
            done.append(f"index {first}: exists")
        else:
            self._create_index(first, {}, done)  # the template supplies settings, mappings, alias
        # monthly indices created before a template change get the new (additive) fields too
        self._call("put mapping", es.indices.put_mapping, index=f"{self.prefix}-articles-*",
                   properties=mappings["properties"], dynamic=mappings.get("dynamic"))
        self._call("put alias", es.indices.put_alias, index=f"{self.prefix}-articles-*", name=self.articles_alias)
        done.append(f"alias {self.articles_alias}: ok")
        for suffix in STATE_INDEX_FILES:
            body = state_index_body(suffix, self.es_dir)
            name = self.state_index(suffix)
            if self._call("index exists", es.indices.exists, index=name):
                m = body["mappings"]
                self._call("put mapping", es.indices.put_mapping, index=name, properties=m["properties"],
                           dynamic=m.get("dynamic"))
                done.append(f"index {name}: exists (mapping checked)")
            else:
                self._create_index(name, {"settings": body.get("settings"), "mappings": body["mappings"]}, done)
        self._checked = True
        return done

    def _create_index(self, name: str, body: dict, done: list[str]) -> None:
        from elasticsearch import BadRequestError

        try:
            self.client.indices.create(index=name, **{k: v for k, v in body.items() if v})
            done.append(f"index {name}: created")
        except BadRequestError as exc:
            if "resource_already_exists_exception" in str(exc):
                done.append(f"index {name}: exists")
                return
            raise StoreError(f"cannot create index {name}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - mapped like every other call
            self._call(f"create index {name}", _raise, exc)

    def drop_all(self) -> None:
        """Delete every index and the template of this prefix (tests and `setup --reset`)."""
        es = self.client
        # concrete names: wildcard deletes are refused by default (action.destructive_requires_name)
        found = self._call("list indices", es.indices.get, index=f"{self.prefix}-articles-*",
                           allow_no_indices=True, not_found=None)
        names = sorted(found.body if hasattr(found, "body") else (found or {}))
        names += [self.state_index(s) for s in STATE_INDEX_FILES]
        for name in names:
            self._call("delete index", es.indices.delete, index=name, ignore_unavailable=True, not_found=None)
        self._call("delete template", es.indices.delete_index_template, name=self.template_name, not_found=None)
        self._checked = False

    # -- articles ----------------------------------------------------------------------------------
    def _search(self, what: str, **kwargs) -> dict:
        resp = self._call(what, self.client.search, index=self.articles_alias, not_found=None, **kwargs)
        if resp is None:  # alias missing: nothing indexed yet
            return {"hits": {"total": {"value": 0}, "hits": []}, "aggregations": {}}
        return resp.body if hasattr(resp, "body") else resp

    def _lookup(self, ids: list[str], *, source: Any = True) -> dict[str, dict]:
        """id -> hit (with ``_index`` and ``_source``) for the ids that exist, via the read alias."""
        found: dict[str, dict] = {}
        for i in range(0, len(ids), 1000):
            chunk = ids[i:i + 1000]
            resp = self._search("lookup", query={"ids": {"values": chunk}}, size=len(chunk), source=source)
            for hit in resp["hits"]["hits"]:
                found[hit["_id"]] = hit
        return found

    def count(self) -> int:
        resp = self._call("count", self.client.count, index=self.articles_alias, not_found=None)
        return 0 if resp is None else int(resp["count"])

    def known_ids(self, ids: Iterable[str]) -> set[str]:
        ids = list(dict.fromkeys(ids))
        return set(self._lookup(ids, source=False)) if ids else set()

    def stored_versions(self, ids: Iterable[str]) -> dict[str, StoredVersion]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        out: dict[str, StoredVersion] = {}
        for aid, h in self._lookup(ids, source=["content_hash", "feed_id", "guid"]).items():
            src = h.get("_source") or {}
            out[aid] = StoredVersion(str(src.get("content_hash") or ""), str(src.get("feed_id") or ""),
                                     src.get("guid") or None)
        return out

    def index(self, articles: Sequence[Article]) -> IndexResult:
        if not articles:
            return IndexResult()
        self._require_setup()
        latest: dict[str, Article] = {}
        for a in articles:  # one document per id; the last version in the batch wins
            latest[a.id] = a
        existing = self._lookup(list(latest))
        unchanged: list[str] = []
        actions: list[dict] = []
        for aid, a in latest.items():
            doc = _jsonable(article_doc(a))
            hit = existing.get(aid)
            if hit is not None:
                if hit.get("_source") == doc:
                    unchanged.append(aid)
                    continue
                actions.append({"_op_type": "index", "_index": hit["_index"], "_id": aid, "_source": doc})
            else:
                actions.append({"_op_type": "create", "_index": self.month_index(a.published_at),
                                "_id": aid, "_source": doc})
        created: list[str] = []
        updated: list[str] = []
        failed: dict[str, str] = {}
        transient: dict[str, str] = {}
        for op, info in self._bulk(actions, "bulk index"):
            aid = str(info.get("_id"))
            status = info.get("status", 500)
            if 200 <= status < 300:
                (created if info.get("result") == "created" else updated).append(aid)
            elif status == 409 and op == "create":
                unchanged.append(aid)  # another writer stored it first
            elif status == 429 or status >= 500:
                transient[aid] = _item_reason(info)
            else:
                failed[aid] = _item_reason(info)
                log(logger, logging.WARNING, "es_dead_letter", article_id=aid, reason=failed[aid])
        result = IndexResult(created=tuple(created), updated=tuple(updated), unchanged=tuple(unchanged),
                             failed=failed)
        if transient:
            first = next(iter(transient.items()))
            raise PartialWriteError(
                f"Elasticsearch did not store {len(transient)} of {len(latest)} article(s) after "
                f"{self.max_retries} retries (first: {first[0]}: {first[1]})", result)
        return result

    def get_articles(self, ids: Iterable[str]) -> list[Article]:
        ids = list(ids)
        found = self._lookup(list(dict.fromkeys(ids)))
        return self._articles(found[i] for i in ids if i in found)

    def build_ids_with_prefix(self, prefix: str, limit: int = 2) -> dict[str, Any]:
        return {"query": {"prefix": {"id": prefix}}, "size": limit, "sort": [{"id": "asc"}],
                "source": False}

    def ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Stored ids that start with ``prefix`` (``mediamon show`` takes the short id), at most ``limit``."""
        if not prefix:
            return []
        resp = self._search("ids by prefix", **self.build_ids_with_prefix(prefix, limit))
        return [h["_id"] for h in resp["hits"]["hits"]]

    def articles_pending_translation(self, limit: int = 1000) -> list[Article]:
        resp = self._search("pending translations",
                            query={"terms": {"translation.status": ["unavailable", "pending"]}},
                            sort=[{"published_at": "desc"}, {"id": "desc"}], size=min(limit, _MAX_WINDOW))
        return self._articles(resp["hits"]["hits"])

    def _articles(self, hits: Iterable[dict]) -> list[Article]:
        """The Articles of search/mget hits; a corrupt ``_source`` is logged, counted and skipped."""
        return [a for h in hits if (a := self.corrupt.article(h.get("_source"), h.get("_id"))) is not None]

    def _filters(self, req: SearchRequest) -> list[dict]:
        f: list[dict] = []
        for field, values in (("topics", req.topics), ("language", req.languages), ("source", req.sources),
                              ("feed_id", req.feed_ids)):
            if values:
                f.append({"terms": {field: list(values)}})
        rng: dict[str, str | None] = {}
        if req.since:
            rng["gte"] = to_iso(req.since)
        if req.until:
            rng["lt"] = to_iso(req.until)
        if rng:
            f.append({"range": {"published_at": rng}})
        if not req.include_undated:
            f.append({"bool": {"must_not": [{"term": {"date_inferred": True}}]}})
        return f

    def build_query(self, req: SearchRequest) -> dict:
        """The ``query`` clause for a SearchRequest (query language + filters)."""
        must: list[dict] = []
        if req.query and req.query.strip():
            from ..query import parse_query, to_es

            must.append(to_es(parse_query(req.query, req.aliases)))
        filters = self._filters(req)
        if not must and not filters:
            return {"match_all": {}}
        b: dict = {}
        if must:
            b["must"] = must
        if filters:
            b["filter"] = filters
        return {"bool": b}

    def build_search(self, req: SearchRequest) -> dict:
        """Keyword arguments of ``client.search`` for a SearchRequest."""
        # items with an inferred date (the feed gave none) after the dated ones, newest or oldest first
        undated_last = {"date_inferred": {"order": "asc", "missing": "_first"}}
        sort: list[dict[str, Any]]
        if req.sort == "oldest":
            sort = [undated_last, {"published_at": "asc"}, {"id": "asc"}]
        elif req.sort == "relevance" and req.query and req.query.strip():
            sort = [{"_score": "desc"}, {"published_at": "desc"}, {"id": "desc"}]
        else:
            sort = [undated_last, {"published_at": "desc"}, {"id": "desc"}]
        kw: dict[str, Any] = {"query": self.build_query(req), "sort": sort, "size": req.limit,
                              "track_total_hits": True}
        if req.cursor:
            kw["search_after"] = _decode_cursor(req.cursor)
        elif req.offset:
            kw["from_"] = req.offset
        return kw

    def search(self, request: SearchRequest) -> SearchResult:
        kw = self.build_search(request)
        resp = self._search("search", **kw)
        hits = resp["hits"]["hits"]
        total = resp["hits"]["total"]["value"] if isinstance(resp["hits"]["total"], dict) else resp["hits"]["total"]
        next_cursor = None
        if hits and len(hits) == request.limit and "sort" in hits[-1]:
            next_cursor = _encode_cursor(hits[-1]["sort"])
        return SearchResult(total=int(total), hits=tuple(self._articles(hits)),
                            next_cursor=next_cursor)

    def build_stats(self, req: SearchRequest) -> dict:
        return {
            "query": self.build_query(req), "size": 0, "track_total_hits": True,
            "aggs": {
                "by_source": {"terms": {"field": "source.raw", "size": 1000}},
                "by_language": {"terms": {"field": "language.raw", "size": 200, "missing": "unknown"}},
                "by_topic": {"terms": {"field": "topics.raw", "size": 1000}},
                "by_day": {"date_histogram": {"field": "published_at", "calendar_interval": "day",
                                              "format": "yyyy-MM-dd", "min_doc_count": 1, "time_zone": "UTC"}},
            },
        }

    def stats(self, request: SearchRequest | None = None) -> Stats:
        resp = self._search("stats", **self.build_stats(request or SearchRequest()))
        aggs = resp.get("aggregations") or {}

        def terms(name: str) -> dict[str, int]:
            buckets = (aggs.get(name) or {}).get("buckets", [])
            pairs = sorted(((str(b["key"]), int(b["doc_count"])) for b in buckets), key=lambda kv: (-kv[1], kv[0]))
            return dict(pairs)

        days = {b["key_as_string"]: int(b["doc_count"]) for b in (aggs.get("by_day") or {}).get("buckets", [])
                if b["doc_count"]}
        total = resp["hits"]["total"]
        total = total["value"] if isinstance(total, dict) else total
        return Stats(total=int(total), by_source=terms("by_source"), by_language=terms("by_language"),
                     by_topic=terms("by_topic"), by_day=dict(sorted(days.items(), reverse=True)))

    # -- feed state ------------------------------------------------------------------------------------
    def _all_docs(self, index: str, what: str, query: dict | None = None, sort: list | None = None) -> list[dict]:
        """Every document of a small state index, paged with search_after."""
        out: list[dict] = []
        sort = sort or [{"_doc": "asc"}]
        after = None
        while True:
            kw: dict[str, Any] = {"index": index, "query": query or {"match_all": {}}, "size": 1000, "sort": sort}
            if after is not None:
                kw["search_after"] = after
            resp = self._call(what, self.client.search, not_found=None, **kw)
            if resp is None:
                return out
            hits = resp["hits"]["hits"]
            out.extend(hits)
            if len(hits) < 1000:
                return out
            after = hits[-1]["sort"]

    def get_feed_states(self) -> dict[str, FeedState]:
        hits = self._all_docs(self.state_index("feed-state"), "get feed states", sort=[{"feed_id": "asc"}])
        return {st.feed_id: st for h in hits
                if (st := self.corrupt.feed_state(h.get("_source"), h.get("_id"))) is not None}

    def save_feed_states(self, states: Iterable[FeedState]) -> None:
        actions = [{"_op_type": "index", "_index": self.state_index("feed-state"), "_id": s.feed_id,
                    "_source": s.to_dict()} for s in states]
        if not actions:
            return
        self._require_setup()
        self._simple_bulk(actions, "save feed states")

    # -- translation cache ---------------------------------------------------------------------------
    def _mget(self, index: str, ids: list[str], what: str) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for i in range(0, len(ids), 1000):
            chunk = ids[i:i + 1000]
            resp = self._call(what, self.client.mget, index=index, ids=chunk, not_found=None)
            if resp is None:
                return found
            for d in resp["docs"]:
                if d.get("found"):
                    found[d["_id"]] = d["_source"]
        return found

    def get_translations(self, keys: Iterable[TranslationKey]) -> dict[TranslationKey, str]:
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        by_id = {translation_doc_id(k): k for k in keys}
        docs = self._mget(self.state_index("translations"), list(by_id), "get translations")
        return {by_id[i]: d["translation"] for i, d in docs.items()}

    def put_translations(self, items: Iterable[tuple[TranslationKey, str]]) -> None:
        now = to_iso(datetime.now(timezone.utc))
        actions = [{"_op_type": "index", "_index": self.state_index("translations"), "_id": translation_doc_id(k),
                    "_source": {"model": k[0], "language": k[1], "text_hash": k[2], "translation": v,
                                "created_at": now}} for k, v in items]
        if not actions:
            return
        self._require_setup()
        self._simple_bulk(actions, "put translations")

    # -- alerts (contract: see the comment above AlertEntry in base.py) ----------------------------
    def alert_enqueue(self, entries: Iterable[AlertEntry]) -> int:
        pairs: dict[str, AlertEntry] = {}
        for e in entries:
            pairs.setdefault(pair_id(e.rule_id, e.article_id), e)
        if not pairs:
            return 0
        self._require_setup()
        sent = self._mget(self.state_index("alerts-sent"), list(pairs), "alert sent-log lookup")
        now = datetime.now(timezone.utc)
        actions = [{"_op_type": "create", "_index": self.state_index("alerts-queue"), "_id": pid,
                    "_source": {"rule_id": e.rule_id, "article_id": e.article_id, "terms": list(e.terms),
                                "queued_at": to_iso(e.queued_at or now), "status": "pending", "attempts": 0,
                                "last_error": None, "last_attempt_at": None}}
                   for pid, e in pairs.items() if pid not in sent]
        items = self._simple_bulk(actions, "alert enqueue", ok_statuses=(409,))  # 409: already queued
        return sum(1 for i in items.values() if i.get("status") == 201)

    def _entry(self, src: dict) -> AlertEntry:
        return AlertEntry(rule_id=src["rule_id"], article_id=src["article_id"], terms=tuple(src.get("terms") or ()),
                          queued_at=from_iso(src.get("queued_at")), status=src.get("status", "pending"),
                          attempts=int(src.get("attempts") or 0), last_error=src.get("last_error"),
                          last_attempt_at=from_iso(src.get("last_attempt_at")))

    def alert_pending(self, rule_id: str) -> list[AlertEntry]:
        hits = self._all_docs(self.state_index("alerts-queue"), "alert pending",
                              query={"bool": {"filter": [{"term": {"rule_id": rule_id}},
                                                         {"term": {"status": "pending"}}]}},
                              sort=[{"queued_at": "asc"}, {"article_id": "asc"}])
        if not hits:
            return []
        sent = self._mget(self.state_index("alerts-sent"), [h["_id"] for h in hits], "alert sent-log lookup")
        return [self._entry(h["_source"]) for h in hits if h["_id"] not in sent]

    def alert_record_attempt(self, rule_id: str, article_ids: Iterable[str], *, at: datetime,
                             error: str | None, failed: bool = False, count: bool = True) -> None:
        ids = list(dict.fromkeys(article_ids))
        if not ids:
            return
        self._require_setup()
        script = {"lang": "painless",
                  "source": "ctx._source.attempts = (ctx._source.attempts == null ? 0 : ctx._source.attempts) "
                            "+ params.inc; ctx._source.status = params.status; "
                            "ctx._source.last_error = params.error; ctx._source.last_attempt_at = params.at;",
                  "params": {"inc": int(count), "status": "failed" if failed else "pending", "error": error,
                             "at": to_iso(at)}}
        actions = [{"_op_type": "update", "_index": self.state_index("alerts-queue"),
                    "_id": pair_id(rule_id, a), "script": script} for a in ids]
        # the increment is not idempotent: a request that timed out may have been applied, so the
        # client must not resend it (retry_on_timeout) -- an attempt is counted once or, when the
        # store is unreachable, not at all (StoreUnavailable), never twice
        client = self.client.options(retry_on_timeout=False) if count else None
        self._simple_bulk(actions, "alert record attempt", ok_statuses=(404,), client=client)  # 404: not queued

    def alert_claim(self, rule_id: str, article_ids: Iterable[str], *, at: datetime, stale_before: datetime,
                    marker: str) -> set[str]:
        """One scripted update per pair; the script is the compare-and-set (Elasticsearch applies
        updates of one document one at a time): a pair claimed since ``stale_before``, failed or
        gone is a ``noop``, the rest are claimed (``updated``).  Pairs already in the sent-log are
        left out first."""
        ids = list(dict.fromkeys(article_ids))
        if not ids:
            return set()
        self._require_setup()
        sent = self._mget(self.state_index("alerts-sent"), [pair_id(rule_id, a) for a in ids], "alert sent-log lookup")
        ids = [a for a in ids if pair_id(rule_id, a) not in sent]
        script = {"lang": "painless", "source": CLAIM_SCRIPT,
                  "params": {"marker": marker, "at": to_iso(at), "stale_before": to_iso(stale_before)}}
        actions = [{"_op_type": "update", "_index": self.state_index("alerts-queue"), "_id": pair_id(rule_id, a),
                    "script": script, "retry_on_conflict": 3} for a in ids]
        # not resent on a timeout (see alert_record_attempt): a claim applied whose answer was lost
        # would be a noop the second time and the pair would look claimed by someone else
        items = self._simple_bulk(actions, "alert claim", ok_statuses=(404,),
                                  client=self.client.options(retry_on_timeout=False))
        by_pid = {pair_id(rule_id, a): a for a in ids}
        return {by_pid[i] for i, info in items.items() if info.get("result") == "updated" and i in by_pid}

    def alert_mark_sent(self, rule_id: str, article_ids: Iterable[str], *, message_id: str,
                        sent_at: datetime) -> int:
        ids = list(dict.fromkeys(article_ids))
        self._require_setup()
        ts = to_iso(sent_at)
        # denormalised title/source/url for the "latest alerts" panel in Kibana
        meta = {h: s["_source"] for h, s in self._lookup(ids, source=["title", "source", "url"]).items()} if ids else {}
        sent_actions = [{"_op_type": "create", "_index": self.state_index("alerts-sent"), "_id": pair_id(rule_id, a),
                         "_source": {"rule_id": rule_id, "article_id": a, "sent_at": ts, "message_id": message_id,
                                     "title": meta.get(a, {}).get("title"), "source": meta.get(a, {}).get("source"),
                                     "url": meta.get(a, {}).get("url")}} for a in ids]
        # 1. the sent-log (authority); 409 = this pair was already sent
        items = self._simple_bulk(sent_actions, "alert sent-log", ok_statuses=(409,))
        logged = sum(1 for i in items.values() if i.get("status") == 201)
        # 2. the queue rows (404 = not queued) and 3. the email log (409 = already logged)
        self._simple_bulk([{"_op_type": "delete", "_index": self.state_index("alerts-queue"),
                            "_id": pair_id(rule_id, a)} for a in ids], "alert dequeue", ok_statuses=(404,))
        self._simple_bulk([{"_op_type": "create", "_index": self.state_index("alerts-emails"),
                            "_id": _sha1(rule_id, message_id),
                            "_source": {"rule_id": rule_id, "message_id": message_id, "sent_at": ts,
                                        "items": len(ids)}}], "alert email log", ok_statuses=(409,))
        return logged

    def alert_mark_summarised(self, rule_id: str, article_ids: Iterable[str], *, at: datetime, note: str) -> int:
        ids = list(dict.fromkeys(article_ids))
        if not ids:
            return 0
        self._require_setup()
        script = {"lang": "painless",
                  "source": "if (ctx._source.status != 'pending') { ctx.op = 'noop'; } else {"
                            " ctx._source.status = 'summarised'; ctx._source.last_error = params.note;"
                            " ctx._source.last_attempt_at = params.at; }",
                  "params": {"note": note, "at": to_iso(at)}}
        items = self._simple_bulk([{"_op_type": "update", "_index": self.state_index("alerts-queue"),
                                    "_id": pair_id(rule_id, a), "script": script} for a in ids],
                                  "alert summarised", ok_statuses=(404,))
        return sum(1 for i in items.values() if i.get("result") == "updated")

    def alert_emails_since(self, rule_id: str, since: datetime) -> int:
        resp = self._call("alert emails since", self.client.count, index=self.state_index("alerts-emails"),
                          query={"bool": {"filter": [{"term": {"rule_id": rule_id}},
                                                     {"range": {"sent_at": {"gt": to_iso(since)}}}]}},
                          not_found=None)
        return 0 if resp is None else int(resp["count"])

    def alert_sent_ids(self, rule_id: str, article_ids: Iterable[str]) -> set[str]:
        ids = list(dict.fromkeys(article_ids))
        if not ids:
            return set()
        by_pid = {pair_id(rule_id, a): a for a in ids}
        found = self._mget(self.state_index("alerts-sent"), list(by_pid), "alert sent-log lookup")
        return {by_pid[p] for p in found}

    def alert_summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}

        def agg(suffix: str, aggs: dict) -> dict:
            resp = self._call("alert summary", self.client.search, index=self.state_index(suffix), size=0,
                              aggs=aggs, not_found=None)
            return {} if resp is None else (resp.get("aggregations") or {})

        q = agg("alerts-queue", {"r": {"terms": {"field": "rule_id", "size": 10000},
                                       "aggs": {"s": {"terms": {"field": "status", "size": 10}}}}})
        for b in q.get("r", {}).get("buckets", []):
            for s in b["s"]["buckets"]:
                out.setdefault(b["key"], {})[s["key"]] = int(s["doc_count"])
        for suffix, key in (("alerts-sent", "sent"), ("alerts-emails", "emails")):
            a = agg(suffix, {"r": {"terms": {"field": "rule_id", "size": 10000}}})
            for b in a.get("r", {}).get("buckets", []):
                out.setdefault(b["key"], {})[key] = int(b["doc_count"])
        return out

    def alert_retry_failed(self, rule_id: str) -> int:
        self._require_setup()
        resp = self._call("alert retry failed", self.client.update_by_query, index=self.state_index("alerts-queue"),
                          query={"bool": {"filter": [{"term": {"rule_id": rule_id}}, {"term": {"status": "failed"}}]}},
                          script={"lang": "painless",
                                  "source": "ctx._source.status = 'pending'; ctx._source.last_error = null;"},
                          refresh=True, conflicts="proceed")
        return int(resp["updated"])


    # -- the cycle lease (pipeline/lock.py) -------------------------------------------------------
    def _lease_call(self, what: str, fn, **kwargs) -> Any:
        """A lease request: 409 -> None (someone else wrote first); a missing index -> a clear StoreError."""
        from elasticsearch import ConflictError, NotFoundError

        try:
            return self._call(what, _passthrough, fn, kwargs)
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, ConflictError):
                return None
            if isinstance(cause, NotFoundError) and "index_not_found" in str(cause):
                raise StoreError(f"Elasticsearch index {self.state_index('lease')} is missing: run "
                                 "`mediamon setup` (it holds the cycle lock)") from cause
            raise

    def _lease_doc(self, owner: str, now: datetime, ttl: Any, acquired_at: str | None = None) -> dict:
        return {"owner": owner, "acquired_at": acquired_at or to_iso(now), "renewed_at": to_iso(now),
                "expires_at": to_iso(now + ttl)}

    def lease_acquire(self, owner: str, *, ttl: Any, now: datetime) -> None:
        """Take the cycle lease: create it (``op_type=create``), or take it over when it is ours
        or has expired (an ``index`` conditional on the ``_seq_no``/``_primary_term`` just read,
        so of two cycles taking over the same expired lease exactly one wins).  Raises
        ``pipeline.lock.Locked`` when a live lease belongs to someone else."""
        from elasticsearch import NotFoundError

        from ..errors import Locked

        index = self.state_index("lease")
        for _ in range(3):
            created = self._lease_call("lease create", self.client.create, index=index, id=LEASE_ID,
                                       document=self._lease_doc(owner, now, ttl), refresh=True)
            if created is not None:
                self._lease_seq = (created["_seq_no"], created["_primary_term"])
                return
            try:
                cur = self.client.get(index=index, id=LEASE_ID)
            except NotFoundError:
                continue  # released between our create and get: create again
            except Exception as exc:  # noqa: BLE001 - mapped like every other call
                self._call("lease read", _raise, exc)
            src = cur["_source"]
            expires = from_iso(src.get("expires_at"))
            if src.get("owner") != owner and expires is not None and expires > now:
                raise Locked(f"another mediamon cycle holds the Elasticsearch lease {index}/{LEASE_ID} "
                             f"({src.get('owner')}, until {src.get('expires_at')}); try again when it has "
                             "finished", holder=str(src.get("owner")))
            took = self._lease_call("lease take over", self.client.index, index=index, id=LEASE_ID,
                                    document=self._lease_doc(owner, now, ttl), if_seq_no=cur["_seq_no"],
                                    if_primary_term=cur["_primary_term"], refresh=True)
            if took is not None:
                if src.get("owner") != owner:
                    log(logger, 30, "lease_taken_over", owner=owner, previous=src.get("owner"),
                        expired_at=src.get("expires_at"))
                self._lease_seq = (took["_seq_no"], took["_primary_term"])
                return
        raise Locked(f"another mediamon cycle is taking the Elasticsearch lease {index}/{LEASE_ID}; try again")

    def lease_renew(self, owner: str, *, ttl: Any, now: datetime) -> bool:
        seq = self._lease_seq
        if seq is None:
            return False
        done = self._lease_call("lease renew", self.client.index, index=self.state_index("lease"), id=LEASE_ID,
                                document=self._lease_doc(owner, now, ttl), if_seq_no=seq[0],
                                if_primary_term=seq[1], refresh=True)
        if done is None:  # someone else wrote it: expired and taken over
            self._lease_seq = None
            return False
        self._lease_seq = (done["_seq_no"], done["_primary_term"])
        return True

    def lease_release(self, owner: str) -> None:
        seq = self._lease_seq
        if seq is None:
            return
        self._lease_seq = None
        self._lease_call("lease release", self.client.delete, index=self.state_index("lease"), id=LEASE_ID,
                         if_seq_no=seq[0], if_primary_term=seq[1], refresh=True, not_found_ok=True)


def _passthrough(fn, kwargs: dict) -> Any:
    kwargs = dict(kwargs)
    not_found_ok = kwargs.pop("not_found_ok", False)
    if not_found_ok:
        from elasticsearch import NotFoundError

        try:
            return fn(**kwargs)
        except NotFoundError:
            return {}
    return fn(**kwargs)


def _raise(exc: BaseException):
    raise exc
