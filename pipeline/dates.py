"""Date parsing: localised RFC 822 dates in feeds, and the times a person types (``--since``).

**Feeds.**  Extra date parsing for feeds whose RFC 822 dates use non-English names.

feedparser understands English month/day names only; Russian, Ukrainian,
Portuguese, Spanish, German and French feeds often localise them
("Пн, 23 ноя 2026 10:15:00 +0300", "Seg, 24 Set 2018 19:42:40 -0300").
We translate the names to English and let the standard RFC 822 parser do the
rest.  Registered once with ``feedparser.registerDateHandler``.

**People.**  :func:`parse_since` reads ``7d``, ``24h``, ``30m``, ``2w`` or an ISO date/datetime
(``mediamon search --since``, ``stats``, ``alerts test``); the caller gives the time it counts back from.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_tz

_MONTHS = {
    1: "январ янв січ січня jan ene janv jän janeiro enero janvier januar",
    2: "феврал фев лют лютого fev feb févr fevereiro febrero février februar",
    3: "март мар берез березня mar mars märz março marzo",
    4: "апрел апр квіт квітня abr avr apr abril avril",
    5: "мая май трав травня mai may mayo maio",
    6: "июн черв червня jun juin junho junio juni",
    7: "июл лип липня jul juil julho julio juli",
    8: "август авг серп серпня ago aoû août agosto aug",
    9: "сентябр сен сент верес вересня set sep sept septembre setembro septiembre",
    10: "октябр окт жовт жовтня out oct okt outubro octubre octobre oktober",
    11: "ноябр ноя лист листопада nov novembre novembro noviembre",
    12: "декабр дек груд грудня dez dic déc décembre dezembro diciembre dezember dec",
}
_EN = ["", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_PREFIXES = {p: m for m, words in _MONTHS.items() for p in words.split()}
_LONGEST = max(map(len, _PREFIXES))
_RE = re.compile(r"^\s*(?:[^\W\d_]{2,12}\.?,\s*)?(\d{1,2})\s+([^\W\d_]{3,12})\.?\s+(\d{4})\s+(\d{1,2}:\d{2}(?::\d{2})?)"
                 r"\s*([+-]\d{4}|[A-Za-z]{1,5})?\s*$")


def _month(word: str) -> int | None:
    """Month of a (possibly abbreviated or inflected) name: its longest known prefix decides."""
    w = word.lower()
    for n in range(min(len(w), _LONGEST), 2, -1):
        month = _PREFIXES.get(w[:n])
        if month is not None:
            return month
    return None


def parse_localised_rfc822(value: str):
    """feedparser date handler: a UTC 9-tuple, or None when the string is not ours."""
    m = _RE.match(value or "")
    if not m:
        return None
    day, month_word, year, clock, zone = m.groups()
    if int(year) < 1000:
        # "0001" is the year 1, not a two-digit year: parsedate_tz would make it 2001 (RFC 2822's
        # rule for "01"), a plausible date nobody wrote.  Not ours: feedparser's own RFC 822
        # parser keeps the year as written, and normalize then infers the date (issue 16, item 8)
        return None
    month = _month(month_word)
    if month is None:
        return None
    parsed = parsedate_tz(f"{day} {_EN[month]} {year} {clock} {zone or 'GMT'}")
    if parsed is None:
        return None
    offset = parsed[9] or 0
    return time.gmtime(calendar.timegm(tuple(parsed[:6]) + (0, 0, 0)) - offset)


def register() -> None:
    import feedparser

    if parse_localised_rfc822 not in getattr(feedparser.datetimes, "_date_handlers", []):
        feedparser.registerDateHandler(parse_localised_rfc822)


_SPAN_RE = re.compile(r"\s*(\d+)\s*([mhdw])\s*")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# The range a typed date is clamped to (``--since``, ``--until``): stored articles are all inside it
# (normalize keeps 1990 .. fetch time + 1 day), and its ends leave room for arithmetic on them, so
# ``--since 999999999d`` means "since 1970" and ``--until 99999-…`` or a far future date "until 9999".
QUERY_DATE_MIN = datetime(1970, 1, 1, tzinfo=timezone.utc)
QUERY_DATE_MAX = datetime(9999, 1, 1, tzinfo=timezone.utc)


def clamp_query_date(dt: datetime) -> datetime:
    """``dt`` (aware) inside [QUERY_DATE_MIN, QUERY_DATE_MAX]."""
    return min(max(dt, QUERY_DATE_MIN), QUERY_DATE_MAX)


def parse_since(value: str | None, now: datetime) -> datetime | None:
    """'7d', '24h', '30m', '2w' (counted back from ``now``) or an ISO date/datetime (UTC when it
    has no zone) → aware UTC datetime, clamped to [QUERY_DATE_MIN, QUERY_DATE_MAX]; None for an
    empty value.  Raises ValueError otherwise."""
    if not value:
        return None
    m = _SPAN_RE.fullmatch(value)
    if m:
        digits = m.group(1).lstrip("0") or "0"
        unit = int(timedelta(**{_UNITS[m.group(2)]: 1}).total_seconds())
        # compared in whole seconds before subtracting: a span longer than the range (999999999d,
        # more digits than a C int or a float holds) is simply the earliest date, never an OverflowError
        if len(digits) > 15 or int(digits) * unit >= (now - QUERY_DATE_MIN).total_seconds():
            return QUERY_DATE_MIN
        return clamp_query_date(now - timedelta(seconds=int(digits) * unit))
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"expected an ISO date (2026-11-20) or a duration like 7d, 24h: {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        dt = dt.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00+01:00 or 9999-12-31T23:59-05:00: past datetime's own range
        return QUERY_DATE_MIN if dt.year < 5000 else QUERY_DATE_MAX
    return clamp_query_date(dt)
