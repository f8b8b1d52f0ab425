"""Story identity: which id an item gets, and which feed may claim an outlet's URL.

"The same story" (docs/RELIABILITY.md, "Story identity and updates (issue 16)"):

* An item whose canonical URL is on a host its feed is *entitled to* gets the URL's global id,
  ``sha1(canonical URL)``: every entitled feed that links the URL (an outlet's several feeds, a
  re-ingest) lands on the same document.  A feed is entitled to a host when the host has the same
  registrable domain as the feed URL (public-suffix list: ``news.tass.ru`` and ``tass.ru`` are one
  outlet, ``a.github.io`` and ``b.github.io`` are not) or is one of the feed's declared
  ``domains:`` (feeds.yaml) or a subdomain of one.
* Any other item with a link is stored under a *feed-scoped* id,
  ``sha1("feed:" + feed id + "\\n" + canonical URL)``: an aggregator or a hostile feed that links
  TASS's URL never takes the id TASS's own item will have.
* An item without a usable link keeps the old rule: ``sha1(feed URL + guid)``, else of feed URL +
  title + summary (per feed by construction).
* Several *distinct* items under one link (different guids; without guids, different titles)
  are distinct stories: the second and later get ``sha1(id + "\\n" + guid or title)``
  (:func:`distinct_id`); the cycle counts them (``distinct_same_link``) and logs them.

The public-suffix list is tldextract's bundled snapshot; it never fetches the list from the
network (``suffix_list_urls=()``), so the rule gives the same answer offline and on every host.
"""

from __future__ import annotations

import hashlib
import ipaddress
from functools import lru_cache
from typing import TYPE_CHECKING, Iterable
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .config import FeedConfig


# the warning (and counter) for a link under which one document had several distinct stories
DISTINCT_SAME_LINK = "distinct_same_link"


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=1)
def _extractor():
    import tldextract

    # the snapshot bundled with the package, never a download (no network at run time);
    # private suffixes (github.io, blogspot.com) count: a.github.io and b.github.io are two owners
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


@lru_cache(maxsize=65536)
def ascii_host(host: str) -> str | None:
    """``host`` lowercased, without a trailing dot, IDNA-encoded (``пример.рф`` →
    ``xn--e1afmkfd.xn--p1ai``); None for a host that cannot be encoded.  Cached per host (a pure
    function; the idna codec is pure Python, and every item of an outlet has the same host)."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        return None
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


@lru_cache(maxsize=65536)
def registrable_domain(host: str) -> str | None:
    """The registrable domain ("eTLD+1") of ``host``: ``news.tass.ru`` → ``tass.ru``,
    ``www.bbc.co.uk`` → ``bbc.co.uk``; an IP address is its own; a host under a TLD the list does
    not know takes its last two labels (the list's implicit ``*`` rule: ``x.tass.example`` →
    ``tass.example``).  None for a public suffix itself (``co.uk``) or a host that cannot be
    encoded."""
    h = ascii_host(host)
    if h is None:
        return None
    try:
        ipaddress.ip_address(h)
        return h
    except ValueError:
        pass
    if "." not in h:
        return h  # a single label (localhost, an intranet name): the host itself
    parts = _extractor()(h)
    if parts.suffix:
        return parts.top_domain_under_public_suffix or None
    labels = h.split(".")
    return ".".join(labels[-2:]) if len(labels) >= 2 and labels[-2] else None


def _host_of(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def entitled(feed: "FeedConfig", url: str | None) -> bool:
    """May ``feed`` claim the global identity of ``url``?  Yes when the URL's host has the feed
    URL's registrable domain or is one of the feed's declared ``domains`` (or below one)."""
    if not url:
        return False
    host = _host_of(url)
    if not host:
        return False
    h = ascii_host(host)
    if h is None:
        return False
    if any(h == d or h.endswith("." + d) for d in feed.domains):
        return True
    own = _feed_domain(feed.url)
    return own is not None and own == registrable_domain(h)


@lru_cache(maxsize=4096)
def _feed_domain(feed_url: str) -> str | None:
    """The registrable domain of a feed URL's host (once per feed URL, not once per item); None
    for a local file feed (entitled to its declared domains only) or a URL without a host."""
    feed_host = _host_of(feed_url) if "://" in feed_url else None
    return registrable_domain(feed_host) if feed_host else None


def article_id(canonical: str | None, feed_url: str, guid: str | None, title: str, summary: str, *,
               scope: str | None = None) -> str:
    """The id of an item: sha1 of the canonical URL (``scope``: the id of a feed not entitled to
    it, which makes the id feed-scoped), else of feed URL + guid, else of feed URL + text."""
    if canonical:
        return sha1(canonical) if scope is None else sha1(f"feed:{scope}\n{canonical}")
    if guid:
        return sha1(f"{feed_url}\n{guid}")
    return sha1(f"{feed_url}\n{title}\n{summary[:500]}")


def distinct_id(base_id: str, key: str) -> str:
    """The id of a distinct story that shares ``base_id`` (its link) with an earlier one; ``key``
    is what tells it apart (its guid, else its title)."""
    return sha1(f"{base_id}\n{key}")


def distinguishing_key(guid: str | None, title: str) -> str:
    return f"guid:{guid}" if guid else f"title:{title}"


def same_story(guid_a: str | None, title_a: str, guid_b: str | None, title_b: str) -> bool:
    """Two items under one id (one link, or one feed + guid): the same story (one of them an
    update of the other) unless they carry different guids, or neither has a guid and the titles
    differ.  An item with a guid and one without are taken as the same story."""
    if guid_a and guid_b:
        return guid_a == guid_b
    if not guid_a and not guid_b:
        return title_a == title_b
    return True


def normalise_domains(values: Iterable[str]) -> tuple[str, ...]:
    """Validated ``domains:`` of a feed: hosts (no scheme, path, port or wildcard), IDNA-encoded,
    lowercased, none a public suffix itself.  Raises ValueError naming the bad value."""
    out: list[str] = []
    for v in values:
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"domain {v!r}: must be a non-empty host name such as 'tass.ru'")
        raw = v.strip()
        if any(c in raw for c in "/:@*?# ") or raw.startswith("."):
            raise ValueError(f"domain {raw!r}: a host name only (no scheme, port, path or wildcard), "
                             "such as 'tass.ru'")
        h = ascii_host(raw)
        if h is None or any(not label for label in h.split(".")):
            raise ValueError(f"domain {raw!r}: not a valid host name")
        if "." in h and registrable_domain(h) is None:
            raise ValueError(f"domain {raw!r} is a public suffix: it would entitle the feed to every "
                             "site under it; name the outlet's own domain")
        if "." not in h:
            raise ValueError(f"domain {raw!r} is a top-level domain; name the outlet's own domain")
        if h not in out:
            out.append(h)
    return tuple(out)
