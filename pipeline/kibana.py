"""Elasticsearch + Kibana setup (``mediamon setup``): indices, aliases and the Kibana saved objects.

Idempotent: templates are put only when the file changed (content hash in ``_meta``), indices
and aliases are created only when missing (new fields are added to existing mappings), and
Kibana objects are imported with ``overwrite=true`` under fixed ids, so running it twice
changes nothing the second time.  The HTTP edge to Kibana is injectable (``transport``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .errors import ConfigError, StoreUnavailable
from .settings import Settings

KIBANA_FILE = "mediamon.ndjson"
_REPO_KIBANA = Path(__file__).resolve().parents[1] / "config" / "kibana"
DEFAULT_PREFIX = "mediamon"


def kibana_dir(settings: Settings) -> Path:
    for cand in (Path(settings.config_dir) / "kibana", _REPO_KIBANA):
        if (cand / KIBANA_FILE).is_file():
            return cand
    raise ConfigError(f"{KIBANA_FILE} not found in {settings.config_dir}/kibana or {_REPO_KIBANA}")


def _reprefix(value: str, prefix: str) -> str:
    if prefix != DEFAULT_PREFIX and value.startswith(DEFAULT_PREFIX + "-"):
        return prefix + value[len(DEFAULT_PREFIX):]
    return value


def topic_search(topic: Any, prefix: str) -> dict:
    """A saved search per topic: articles the pipeline classified into it (``topics:<id>``)."""
    ssj = {"query": {"query": f'topics:"{topic.id}"', "language": "kuery"}, "filter": [],
           "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
    return {
        "type": "search", "id": f"{prefix}-topic-{topic.id}",
        "attributes": {
            "title": f"{prefix} topic: {topic.name}",
            "description": f"{topic.description}\nRule query: {topic.query}".strip(),
            # date_inferred: true when the feed gave no date (published_at is the time first seen);
            # those items are listed after the dated ones
            "columns": ["source", "language", "title", "title_en", "topic_matches.terms", "date_inferred", "url"],
            "sort": [["date_inferred", "asc"], ["published_at", "desc"]],
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(ssj, ensure_ascii=False)},
        },
        "references": [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern",
                        "id": f"{prefix}-articles"}],
        "coreMigrationVersion": "8.8.0", "typeMigrationVersion": "8.0.0",
    }


def kibana_objects(settings: Settings) -> list[dict]:
    """The saved objects of config/kibana/*.ndjson for ``settings.index_prefix``, plus one saved
    search per topic in topics.yaml."""
    from .config import load_topics

    prefix = settings.index_prefix
    objects: list[dict] = []
    for path in sorted(kibana_dir(settings).glob("*.ndjson")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}: line {n}: {exc.msg}") from exc
            obj["id"] = _reprefix(obj["id"], prefix)
            for ref in obj.get("references", []):
                ref["id"] = _reprefix(ref["id"], prefix)
            if obj["type"] == "index-pattern":
                obj["attributes"]["title"] = _reprefix(obj["attributes"]["title"], prefix)
            objects.append(obj)
    objects += [topic_search(t, prefix) for t in load_topics(settings.config_dir)]
    return objects


def _kibana_auth(settings: Settings) -> dict[str, str]:
    import base64

    if settings.elasticsearch_api_key is not None:
        return {"Authorization": "ApiKey " + settings.elasticsearch_api_key.get_secret_value()}
    if settings.elasticsearch_username:
        pw = settings.elasticsearch_password.get_secret_value() if settings.elasticsearch_password else ""
        token = base64.b64encode(f"{settings.elasticsearch_username}:{pw}".encode()).decode()
        return {"Authorization": "Basic " + token}
    return {}


def import_kibana(settings: Settings, objects: list[dict], *, wait: float = 180.0, transport: Any = None) -> int:
    """POST the objects to Kibana's saved objects import API (overwrite=true).  Waits up to
    ``wait`` seconds while Kibana is starting (connection refused, 503).  Returns the count."""
    import httpx

    assert settings.kibana_url
    url = settings.kibana_url.rstrip("/") + "/api/saved_objects/_import"
    body = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects).encode("utf-8")
    verify: Any = str(settings.elasticsearch_ca_certs) if settings.elasticsearch_ca_certs else True
    headers = {"kbn-xsrf": "mediamon", **_kibana_auth(settings)}
    deadline = time.monotonic() + wait
    with httpx.Client(timeout=60, verify=verify, transport=transport) as client:
        while True:
            try:
                resp = client.post(url, params={"overwrite": "true"}, headers=headers,
                                   files={"file": ("mediamon.ndjson", body, "application/ndjson")})
                if resp.status_code not in (502, 503, 504):
                    break
                why = f"HTTP {resp.status_code}"
            except httpx.TransportError as exc:
                why = str(exc) or type(exc).__name__
            if time.monotonic() >= deadline:
                raise StoreUnavailable(f"Kibana at {settings.kibana_url} not ready after {wait:.0f} s: {why}")
            time.sleep(3)
    if resp.status_code in (401, 403):
        raise ConfigError(f"Kibana refused the import (HTTP {resp.status_code}): check the credentials")
    if resp.status_code >= 400:
        raise ConfigError(f"Kibana import failed (HTTP {resp.status_code}): {resp.text[:500]}")
    result = resp.json()
    if not result.get("success"):
        errors = [f"{e.get('type')}/{e.get('id')}: {e.get('error')}" for e in result.get("errors", [])]
        raise ConfigError(f"Kibana rejected {len(errors)} saved object(s): {errors[:5]}")
    return int(result.get("successCount", len(objects)))


def run_setup(settings: Settings, *, kibana: bool = True, wait: float = 180.0) -> list[str]:
    """Create the Elasticsearch template, indices and alias, then import the Kibana objects
    (when ``MEDIAMON_KIBANA_URL`` is set); one line per thing done.  Raises ConfigError without
    Elasticsearch settings, StoreUnavailable / StoreError from the store and Kibana."""
    if not settings.uses_elasticsearch:
        raise ConfigError("MEDIAMON_ELASTICSEARCH_URL is not set: the embedded SQLite store needs no setup")
    from .store.elasticsearch import ElasticsearchStore

    with ElasticsearchStore.from_settings(settings) as store:
        lines = store.setup()
    if kibana and settings.kibana_url:
        objects = kibana_objects(settings)
        n = import_kibana(settings, objects, wait=wait)
        lines.append(f"kibana: {n} saved object(s) imported (data views, dashboard, "
                     f"{sum(1 for o in objects if o['id'].startswith(settings.index_prefix + '-topic-'))} topic searches)")
    elif kibana:
        lines.append("kibana: skipped (MEDIAMON_KIBANA_URL not set)")
    return lines
