"""Stores: ``open_store(settings)`` picks the backend from the settings."""

from __future__ import annotations

from ..settings import Settings
from .base import IndexResult, SearchRequest, SearchResult, Stats, Store

__all__ = ["IndexResult", "SearchRequest", "SearchResult", "Stats", "Store", "open_store"]


def open_store(settings: Settings) -> Store:
    """The Elasticsearch store when ``MEDIAMON_ELASTICSEARCH_URL`` is set, else embedded SQLite."""
    if settings.uses_elasticsearch:
        from .elasticsearch import ElasticsearchStore  # heavy import only when used

        return ElasticsearchStore.from_settings(settings)
    from .sqlite import SQLiteStore

    return SQLiteStore(settings.store_path)
