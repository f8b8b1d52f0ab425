"""pipeline.models: the Article's dict form never invents a date."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pipeline.models import Article

AT = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


def test_from_dict_without_dates_is_explicit():
    with pytest.raises(ValueError, match="published_at and fetched_at missing"):
        Article.from_dict({"id": "x", "title": "t"})
    a = Article.from_dict({"id": "x", "title": "t"}, missing_dates=AT)
    assert a.published_at == AT and a.fetched_at == AT and a.date_inferred  # filled in: marked inferred
    full = a.replace(date_inferred=False)
    assert Article.from_dict(full.to_dict()) == full  # a stored article needs no default
    b = Article.from_dict({"id": "y", "published_at": "2026-11-20T10:00:00+00:00"}, missing_dates=AT)
    assert b.published_at == datetime(2026, 11, 20, 10, tzinfo=timezone.utc) and b.fetched_at == AT
    assert not b.date_inferred
