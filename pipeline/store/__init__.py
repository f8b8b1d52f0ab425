"""Stores: ``open_store(settings)`` picks the backend from the settings."""

from __future__ import annotations

from ..errors import StoreError, StoreMissing
from ..settings import Settings
from .base import IndexResult, SearchRequest, SearchResult, Stats, Store

__all__ = ["IndexResult", "SearchRequest", "SearchResult", "Stats", "Store", "open_existing_store", "open_store"]


def open_store(settings: Settings) -> Store:
    """The Elasticsearch store when ``MEDIAMON_ELASTICSEARCH_URL`` is set, else embedded SQLite."""
    if settings.uses_elasticsearch:
        from .elasticsearch import ElasticsearchStore  # heavy import only when used

        return ElasticsearchStore.from_settings(settings)
    from .sqlite import SQLiteStore

    return SQLiteStore(settings.store_path)


def open_existing_store(settings: Settings) -> Store:
    """The store for a read-only command (``search``, ``stats``, ``show``): never creates anything.

    With the embedded store, a missing data directory or store file is a :class:`StoreMissing` that
    says where it looked and how to create it (``mediamon run``), instead of an empty store (and a
    new ``data/`` directory) that answers every query with nothing.  Elasticsearch is opened as
    usual (the cluster, not this machine, holds the data).
    """
    if settings.uses_elasticsearch:
        return open_store(settings)
    path = settings.store_path
    if path.parent.exists() and not path.parent.is_dir():
        raise StoreError(f"data directory {path.parent} is a file, not a directory "
                         "(set --data-dir or MEDIAMON_DATA_DIR)")
    if not path.is_file():
        where = "data directory" if not path.parent.exists() else "store"
        missing = path.parent if not path.parent.exists() else path
        raise StoreMissing(f"no mediamon store: {where} {missing} does not exist; run `mediamon run` "
                         "first, or point --data-dir / MEDIAMON_DATA_DIR at an existing one")
    return open_store(settings)
