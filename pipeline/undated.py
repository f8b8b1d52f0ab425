"""Items whose feed gave no date (``Article.date_inferred``): their ``published_at`` is the time
they were first seen, not when they were written.  Japan Times (2017) and AiF (2006) captures in
../shared/feeds are whole feeds of such items.

Rules (docs/RELIABILITY.md, "Dates you can trust"): they are marked everywhere an item is shown
(search, show, the email, the ``date_inferred`` field in Elasticsearch/Kibana), sorted after the
dated items, left out of ``--since`` windows unless ``--include-undated``, and a feed whose items
are all undated is flagged by ``mediamon feeds check``.  Alert delivery decides with
:func:`known_published_at` whether an item's age is known at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from .models import Article


def known_published_at(a: Article) -> datetime | None:
    """When the item was published, if the feed said so; None when the date was inferred (the
    item may be years old: it must not be treated as news by its first-seen time)."""
    return None if a.date_inferred else a.published_at


def all_undated_warning(articles: Sequence[Article]) -> str | None:
    """A warning for a feed none of whose items carries a usable date (None otherwise)."""
    if not articles or not all(a.date_inferred for a in articles):
        return None
    return (f"no item of this feed has a usable date ({len(articles)} undated): they are stamped with "
            "the time first seen, listed after dated items, left out of --since windows unless "
            "--include-undated, and may be old")
