"""Russian search recall on the 61 real feeds in ../shared/feeds (issue 13's target).

The feeds go through `run_cycle` (local paths, as feeds.yaml allows), then the embedded store is
searched as `mediamon search 'Беларусь' --language ru` does, with the shipped aliases.  The items
that name the country are counted independently, by a hand-written list of its forms and spellings.
"""

from __future__ import annotations

import re

import pytest

from pipeline.aliases import load_aliases
from pipeline.cycle import run_cycle
from pipeline.store.base import SearchRequest
from pipeline.store.sqlite import SQLiteStore

from .conftest import ROOT, SHARED_FEEDS, make_settings, write_feeds_yaml

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason="../shared/feeds not present")]

# every case form of both Russian spellings, the Ukrainian and the Latin names (word boundaries)
BELARUS_FORMS = re.compile(
    r"(?<![^\W_])(Беларусь|Беларуси|Беларусью|Белоруссия|Белоруссии|Белоруссию|Белоруссией|Белоруссиею"
    r"|Білорусь|Білорусі|Білоруссю|Belarus|Byelorussia)(?![^\W_])", re.IGNORECASE)


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    settings = make_settings(tmp)
    feeds = [{"id": "s-" + p.stem.lower().replace("_", "-")[:50], "url": str(p), "source": p.stem}
             for p in sorted(SHARED_FEEDS.glob("*.xml"))]
    write_feeds_yaml(settings.config_dir, feeds)
    run_cycle(settings, topics=[], alerts=[])
    store = SQLiteStore(settings.data_dir / "mediamon.sqlite3")
    yield store
    store.close()


def _russian_items(store) -> list:
    res = store.search(SearchRequest(languages=("ru",), limit=100_000))
    return list(res.hits)


def test_belarus_in_any_form_or_spelling_finds_nine_in_ten_russian_items(real_store):
    items = _russian_items(real_store)
    naming = {a.id for a in items
              if BELARUS_FORMS.search(" ".join(filter(None, (a.title, a.summary, a.content))))}
    assert len(naming) >= 50, "the feeds changed: too few items to measure"
    res = real_store.search(SearchRequest(query="Беларусь", languages=("ru",), limit=10_000,
                                          aliases=load_aliases(ROOT / "config")))
    found = {a.id for a in res.hits}
    recall = len(found & naming) / len(naming)
    assert recall >= 0.9, f"{len(found & naming)} of {len(naming)} ({recall:.0%})"
    assert found <= naming, f"hits that do not name the country: {sorted(found - naming)[:5]}"
    # the other spelling and the Latin name find the same items
    for q in ("Белоруссия", "Belarus", "Беларуси"):
        other = real_store.search(SearchRequest(query=q, languages=("ru",), limit=10_000,
                                                aliases=load_aliases(ROOT / "config")))
        assert {a.id for a in other.hits} == found, q
    # without aliases, one spelling still finds all of its own case forms (lemmas)
    plain = real_store.search(SearchRequest(query="Беларусь", languages=("ru",), limit=10_000))
    own = {a.id for a in items if re.search(r"(?<![^\W_])Беларус(ь|и|ью)(?![^\W_])",
                                            " ".join(filter(None, (a.title, a.summary, a.content))), re.I)}
    assert {a.id for a in plain.hits} >= own
