"""Polite, bounded HTTP fetching of feeds (httpx, asyncio).

* bounded concurrency across feeds (``Settings.fetch_concurrency``) and per host
  (``Settings.fetch_per_host``: several feeds of one outlet are not fetched all at once);
* conditional GET with the stored ETag / Last-Modified (a 304 means no parse);
* our own total deadline per request (connect + redirects + body), so a server
  trickling one byte at a time cannot hold a worker;
* a cap on the *decoded* body size; we decompress gzip/deflate ourselves with a
  bounded output size (gzip bombs stop at the cap);
* redirects followed by hand: every hop is checked (scheme http/https only,
  address not loopback/private/link-local unless ``allow_private_networks``);
  a chain of 301/308 updates the stored feed URL, a 302/303/307 does not;
* the connection goes to the address we checked (pinned IP, SNI/Host kept), so
  DNS rebinding between check and connect does not help an attacker;
* local paths and file:// URLs from the configuration are read from disk (never
  reachable through a redirect).

The result of a fetch is a ``FetchResult``; turning it into the next feed
state is ``pipeline.politeness.next_state`` (pure, unit-tested).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import ipaddress
import os
import re
import socket
import stat
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from urllib.parse import unquote, urljoin, urlsplit

from typing import cast

import httpx

from .config import FeedConfig
from .errors import BlockedAddressError, FeedError, PermanentFeedError, TransientFeedError
from .logs import get_logger, log
from .models import FeedState
from .settings import Settings

logger = get_logger(__name__)

REDIRECT_CODES = {301, 302, 303, 307, 308}
PERMANENT_REDIRECTS = {301, 308}
ACCEPT = ("application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
          "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5")


@dataclass(frozen=True, slots=True)
class FetchResult:
    feed_id: str
    url: str  # the URL we started from
    final_url: str  # after redirects
    status: int | None = None
    content: bytes | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None  # set when every hop was a 301/308
    error: FeedError | None = None
    elapsed: float = 0.0
    fetched_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    content_language: str | None = None  # the Content-Language header: a language hint for parsing

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def ok(self) -> bool:
        return self.error is None and self.content is not None


def is_local(url: str) -> bool:
    return url.startswith("file://") or "://" not in url


def _local_path(url: str) -> Path:
    if url.startswith("file://"):
        return Path(urlsplit(url).path)
    return Path(url)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():  # also '²' or '٣': str.isdigit is wider than delta-seconds' ASCII DIGIT
        return float(value) if value.isascii() else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 forms whose traffic goes to an IPv4 address written inside them.  Python's ipaddress calls
# most of them "global" (3.11: all but Teredo), so on a NAT64 network, or a host with 6to4/Teredo
# routes, ``64:ff9b::7f00:1`` or ``2002:7f00:1::`` reaches 127.0.0.1.
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible ::a.b.c.d (RFC 4291 2.5.5.1)
_SIIT = ipaddress.ip_network("::ffff:0:0:0/96")  # IPv4-translated ::ffff:0:a.b.c.d (RFC 2765)
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: the operator picks /48 ... /96 inside


def _nat64_local_candidates(n: int) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a 64:ff9b:1::/48 address can carry (RFC 6052 section 2.2): the prefix length
    is the operator's choice (/48, /56, /64 or /96), so every layout whose reserved octet (bits 64-71)
    and suffix are zero counts."""
    out = [ipaddress.IPv4Address(n & 0xFFFFFFFF)]  # /96
    if (n >> 56) & 0xFF:  # the "u" octet must be zero in the shorter layouts
        return out
    packed = ((n >> 64) << 56) | (n & ((1 << 56) - 1))  # 120 bits: the address without the u octet
    for plen in (48, 56, 64):
        shift = 120 - plen - 32
        if packed & ((1 << shift) - 1) == 0:  # the suffix after the IPv4 bits is zero
            out.append(ipaddress.IPv4Address((packed >> shift) & 0xFFFFFFFF))
    return out


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[list[ipaddress.IPv4Address], bool]:
    """The IPv4 address(es) that an IPv6 address sends its traffic to, and whether they alone decide
    (translation forms: the IPv6 address itself is only a way of writing them) or the IPv6 address
    must be global too (tunnels: 6to4, Teredo's server and XOR-ed client)."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped], True
    n = int(ip)
    if ip in _V4_COMPATIBLE or ip in _SIIT or ip in _NAT64_WELL_KNOWN:
        return [ipaddress.IPv4Address(n & 0xFFFFFFFF)], True
    if ip in _NAT64_LOCAL:
        return _nat64_local_candidates(n), True
    if ip.sixtofour is not None:
        return [ip.sixtofour], False
    if ip.teredo is not None:
        return list(ip.teredo), False
    return [], False


def _v4_allowed(ip: ipaddress.IPv4Address) -> bool:
    return ip.is_global and not ip.is_multicast


def _ip_allowed(ip: IPAddress) -> bool:
    """A connection may go to ``ip``: it is global and not multicast, and so is every IPv4 address
    embedded in it (v4-mapped, IPv4-compatible, SIIT, NAT64 well-known and local-use, 6to4, Teredo)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_allowed(ip)
    inner, decides = embedded_ipv4(ip)
    if inner and not all(_v4_allowed(v4) for v4 in inner):
        return False
    if inner and decides:
        return True
    return ip.is_global and not ip.is_multicast


async def resolve_checked(host: str, port: int, settings: Settings) -> str | None:
    """Resolve ``host``; refuse non-public addresses.  Returns the IP to connect to
    (None when private networks are allowed: httpx resolves as usual)."""
    if settings.allow_private_networks:
        return None
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TransientFeedError(f"cannot resolve {host!r}: {exc}") from exc
    addrs = []
    for info in infos:
        try:
            addrs.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
        except ValueError:
            continue
    if not addrs:
        raise TransientFeedError(f"no address for {host!r}")
    bad = [str(a) for a in addrs if not _ip_allowed(a)]
    if bad:
        raise BlockedAddressError(
            f"refused: {host!r} resolves to non-public address {bad[0]} "
            "(set MEDIAMON_ALLOW_PRIVATE_NETWORKS=true to allow)")
    # prefer IPv4 for reachability; all addresses were checked
    addrs.sort(key=lambda a: a.version)
    return str(addrs[0])


# (host, port) -> the checked resolution, shared by the fetches of one poll (set by
# poll.poll_async with remember_resolutions(); the tasks it starts inherit it).  A cycle of 500 feeds
# on 50 outlets resolves 50 names, not 500: getaddrinfo runs in the loop's small thread pool.
_RESOLUTIONS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("mediamon_resolutions", default=None)


def remember_resolutions() -> None:
    """From now on, in this task and the tasks it starts, resolve each (host, port) once."""
    _RESOLUTIONS.set({})


async def _resolve_once(host: str, port: int, settings: Settings) -> str | None:
    memo = _RESOLUTIONS.get()
    if memo is None:
        return await resolve_checked(host, port, settings)
    task = memo.get((host, port))
    if task is None:
        task = memo[(host, port)] = asyncio.ensure_future(resolve_checked(host, port, settings))
    # a fetch cancelled by its deadline must not cancel the lookup other fetches wait for
    return await asyncio.shield(task)


class _BoundedDecoder:
    """gzip/deflate decoding with a hard cap on output size, that knows when a body is whole.

    * gzip: every member is decoded (RFC 1952 allows several, one after the other); the body must
      end at the end of a member: a stream cut short is an error, not a shorter document;
    * deflate: the zlib format (RFC 1950) or, as servers also send it, raw deflate (RFC 1951),
      told apart by the zlib header; it too must reach its end-of-stream marker.
    """

    def __init__(self, encoding: str, cap: int):
        self.cap = cap
        self.total = 0
        enc = (encoding or "identity").strip().lower()
        self.kind: str | None  # gzip | deflate | None (identity)
        if enc in ("gzip", "x-gzip"):
            self.kind = "gzip"
        elif enc == "deflate":
            self.kind = "deflate"
        elif enc in ("identity", ""):
            self.kind = None
        else:
            raise PermanentFeedError(f"unsupported Content-Encoding {encoding!r}")
        self._d: "zlib._Decompress | None" = None
        self._head = b""  # deflate: bytes held back until the header decides zlib vs raw
        self.members = 0
        self.parts: list[bytes] = []

    def _add(self, data: bytes) -> None:
        self.total += len(data)
        if self.total > self.cap:
            raise PermanentFeedError(f"response body exceeds {self.cap} bytes (decoded)")
        self.parts.append(data)

    def _new_stream(self, first: bytes) -> "zlib._Decompress":
        self.members += 1
        if self.kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # a zlib header: CM = 8 in the low nibble and the 16-bit header a multiple of 31
        is_zlib = len(first) >= 2 and (first[0] & 0x0F) == 8 and ((first[0] << 8) | first[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if is_zlib else -zlib.MAX_WBITS)

    def _decompress(self, data: bytes) -> None:
        while data:
            if self._d is None or self._d.eof:
                if self._d is not None and self.kind == "deflate":
                    return  # bytes after the end of a deflate stream: ignored (as browsers do)
                if self._d is not None and not data.startswith(b"\x1f"):
                    return  # padding or junk after the last gzip member (ignored, as curl and browsers do)
                self._d = self._new_stream(data)
            out = self._d.decompress(data, self.cap - self.total + 1)
            self._add(out)
            while self._d.unconsumed_tail:
                out = self._d.decompress(self._d.unconsumed_tail, self.cap - self.total + 1)
                if not out:
                    break
                self._add(out)
            data = self._d.unused_data if self._d.eof else b""

    def feed(self, chunk: bytes) -> None:
        if self.kind is None:
            self._add(chunk)
            return
        if self._d is None and self.kind == "deflate" and len(self._head) + len(chunk) < 2:
            self._head += chunk
            return
        chunk, self._head = self._head + chunk, b""
        try:
            self._decompress(chunk)
        except zlib.error as exc:
            raise PermanentFeedError(f"corrupt compressed body: {exc}") from exc

    def finish(self) -> bytes:
        if self.kind is not None:
            if self._head:
                self._decompress_final(self._head)
            if self._d is not None:
                try:
                    self._add(self._d.flush())
                except zlib.error as exc:
                    raise PermanentFeedError(f"corrupt compressed body: {exc}") from exc
            if self._d is None or not self._d.eof:
                raise TransientFeedError(f"{self.kind} body ended before its end-of-stream marker "
                                         "(truncated in transit); not parsed, feed state kept")
        return b"".join(self.parts)

    def _decompress_final(self, data: bytes) -> None:
        try:
            self._decompress(data)
        except zlib.error as exc:
            raise PermanentFeedError(f"corrupt compressed body: {exc}") from exc


_END_TAG_AT_END_RE = re.compile(rb"</\s*([A-Za-z_][\w.:-]*)\s*>\s*$")
_ROOT_START_RE = re.compile(rb"<([A-Za-z_][\w.:-]*)")


def _root_closed(body: bytes) -> bool:
    """Whether a body ends with the end tag of its root element (NUL bytes of UTF-16/32 ignored):
    the only sign of a whole document when the connection's close was the only delimiter."""
    tail = body[-4096:].replace(b"\0", b"")
    for _ in range(8):  # comments and PIs after the root ("<!-- generated in 0.2 s -->") are fine
        tail = tail.rstrip()
        if tail.endswith(b"-->") and (c := tail.rfind(b"<!--")) >= 0:
            tail = tail[:c]
        elif tail.endswith(b"?>") and (c := tail.rfind(b"<?")) >= 0:
            tail = tail[:c]
        else:
            break
    m = _END_TAG_AT_END_RE.search(tail)
    if m is None:
        return False
    head = body[:1 << 16].replace(b"\0", b"")
    i = 0
    while True:  # the first start tag outside comments (the declaration, PIs and DOCTYPE never match)
        sm = _ROOT_START_RE.search(head, i)
        if sm is None:
            return True  # no root in the head (a long prolog): the end tag is all we can check
        c = head.rfind(b"<!--", 0, sm.start())
        if c >= 0 and head.find(b"-->", c, sm.start()) < 0:  # inside a comment: skip past it
            e = head.find(b"-->", sm.start())
            if e < 0:
                return True
            i = e + 3
            continue
        return sm.group(1) == m.group(1)


def _header_text(response: httpx.Response, name: str) -> str | None:
    """A response header as text that round-trips to the exact bytes the server sent (latin-1);
    httpx would decode a non-ASCII ETag as UTF-8 or latin-1, and then fail to send it back."""
    raw = [v for k, v in response.headers.raw if k.lower() == name.encode()]
    if not raw:
        return None
    return raw[-1].decode("latin-1")


def _header_bytes(value: str) -> bytes | None:
    """A stored validator as the header bytes to send: latin-1 (what ``_header_text`` stored), else
    UTF-8 (states saved before); None for one that cannot be sent (a control character)."""
    try:
        data = value.encode("latin-1")
    except UnicodeEncodeError:
        data = value.encode("utf-8")
    if any(b < 0x20 and b != 0x09 or b == 0x7F for b in data):
        return None
    return data


def _check_scheme(url: str) -> httpx.URL:
    try:
        u = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise PermanentFeedError(f"invalid URL {url!r}: {exc}") from exc
    if u.scheme not in ("http", "https"):
        raise BlockedAddressError(f"refused: scheme {u.scheme!r} is not http(s) ({url})")
    if not u.host:
        raise PermanentFeedError(f"invalid URL without host: {url!r}")
    if u.port is not None and not 0 < u.port < 65536:  # httpx accepts it; the connect then fails oddly
        raise PermanentFeedError(f"invalid URL {url!r}: port {u.port} out of range")
    return u


def _conditional_headers(state: FeedState | None) -> dict[str, str | bytes]:
    """If-None-Match / If-Modified-Since from the stored validators.  Non-ASCII ones go as the
    bytes the server sent (as text they made every request fail with UnicodeEncodeError, and a
    failure never clears them: the feed was broken for good); one that cannot be sent is dropped
    with a log line."""
    h: dict[str, str | bytes] = {}
    if state is not None:
        for header, value in (("If-None-Match", state.etag), ("If-Modified-Since", state.last_modified)):
            if not value:
                continue
            if value.isascii() and value.isprintable():
                h[header] = value
                continue
            data = _header_bytes(value)
            if data is None:
                log(logger, 30, "validator_dropped", feed_id=state.feed_id, header=header, value=repr(value)[:200])
                continue
            h[header] = data
    return h


async def _fetch_http(client: httpx.AsyncClient, feed: FeedConfig, url: str, state: FeedState | None,
                      settings: Settings) -> FetchResult:
    started = time.monotonic()
    headers: dict[str, str | bytes] = {"User-Agent": settings.user_agent, "Accept": ACCEPT,
                                       "Accept-Encoding": "gzip, deflate"}
    headers.update(_conditional_headers(state))
    current = url
    all_permanent = True
    for hop in range(settings.max_redirects + 1):
        u = _check_scheme(current)
        port = u.port or (443 if u.scheme == "https" else 80)
        pinned = await _resolve_once(u.host, port, settings)
        req_url = u
        extensions: dict = {}
        hop_headers = dict(headers)
        if pinned is not None:
            host_for_url = f"[{pinned}]" if ":" in pinned else pinned
            req_url = u.copy_with(host=host_for_url)
            hop_headers["Host"] = u.netloc.decode("ascii")
            if u.scheme == "https":
                extensions["sni_hostname"] = u.host
        # validators go back as the exact bytes the server sent; httpx.Headers takes str or bytes
        # values at run time, its annotation lists one or the other
        request = client.build_request("GET", req_url, headers=cast("dict[str, str]", hop_headers),
                                       extensions=extensions)
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.InvalidURL as exc:
            # httpx builds ``response.next_request`` from a 3xx Location even when not following;
            # a Location such as "javascript:alert(1)" fails there, before we see the response
            raise PermanentFeedError(f"refused: {u.host} redirected to an invalid URL ({exc})") from exc
        except httpx.TimeoutException as exc:
            raise TransientFeedError(f"timeout connecting to {u.host}: {exc.__class__.__name__}") from exc
        except httpx.TransportError as exc:
            raise TransientFeedError(f"connection failed to {u.host}: {exc}") from exc
        try:
            status = response.status_code
            if status in REDIRECT_CODES:
                location = response.headers.get("location")
                if not location:
                    raise PermanentFeedError(f"HTTP {status} without Location header")
                if status not in PERMANENT_REDIRECTS:
                    all_permanent = False
                current = urljoin(current, location.strip())
                log(logger, 10, "redirect", feed_id=feed.id, status=status, to=redact_url(current))
                continue
            if status == 304:
                return FetchResult(feed.id, url, current, status=304,
                                   etag=_header_text(response, "etag") or (state.etag if state else None),
                                   last_modified=_header_text(response, "last-modified")
                                   or (state.last_modified if state else None),
                                   permanent_url=current if (hop and all_permanent) else None,
                                   elapsed=time.monotonic() - started)
            if status == 429 or status == 503:
                raw_ra = response.headers.get("retry-after")
                ra = parse_retry_after(raw_ra)
                if raw_ra and ra is None:  # neither delta-seconds nor an HTTP date: the usual backoff
                    log(logger, 30, "retry_after_ignored", feed_id=feed.id, status=status, value=raw_ra[:100])
                raise TransientFeedError(f"HTTP {status} (retry after {ra}s)" if ra is not None
                                         else f"HTTP {status}", status=status, retry_after=ra)
            if status == 410:
                raise PermanentFeedError("HTTP 410 Gone: the feed was removed", status=410)
            if status >= 500:
                raise TransientFeedError(f"HTTP {status}", status=status)
            if status >= 400:
                raise PermanentFeedError(f"HTTP {status}", status=status)
            if status != 200:
                raise PermanentFeedError(f"unexpected HTTP {status}", status=status)
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
                raise PermanentFeedError(f"response body exceeds {settings.max_body_bytes} bytes "
                                         f"(Content-Length {declared})", status=status)
            decoder = _BoundedDecoder(response.headers.get("content-encoding", ""), settings.max_body_bytes)
            try:
                async for chunk in response.aiter_raw():
                    decoder.feed(chunk)
            except httpx.TransportError as exc:
                raise TransientFeedError(f"connection dropped while reading body: {exc}") from exc
            body = decoder.finish()
            if (decoder.kind is None and declared is None and response.http_version.startswith("HTTP/1")
                    and "chunked" not in response.headers.get("transfer-encoding", "").lower()
                    and not _root_closed(body)):
                # neither a length nor chunked framing: the connection's close ended the body, and a
                # close too early looks the same; a document that does not end with its root's end
                # tag did not arrive whole (parsed, its validators would be saved and the rest of
                # the feed lost: the server answers 304 from then on)
                raise TransientFeedError("connection closed before the document ended (no Content-Length, "
                                         "the root element not closed); not parsed, feed state kept")
            return FetchResult(feed.id, url, current, status=200, content=body,
                               content_type=response.headers.get("content-type"),
                               content_language=response.headers.get("content-language"),
                               etag=_header_text(response, "etag"),
                               last_modified=_header_text(response, "last-modified"),
                               permanent_url=current if (hop and all_permanent) else None,
                               elapsed=time.monotonic() - started)
        finally:
            await response.aclose()
    raise PermanentFeedError(f"too many redirects (> {settings.max_redirects})")


LOCAL_READ_CHUNK = 1 << 20


def _fetch_local(feed: FeedConfig, url: str, state: FeedState | None, settings: Settings,
                 deadline: float | None = None) -> FetchResult:
    """Read a configured local file with the limits of an HTTP fetch: only a regular file (a FIFO,
    a device or a socket is refused: opening or reading one can block for ever, and a thread
    blocked in a read cannot be cancelled), opened without blocking, read in chunks up to the
    size cap and within the fetch deadline."""
    started = time.monotonic()
    deadline = deadline if deadline is not None else started + settings.fetch_timeout
    path = _local_path(url)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise PermanentFeedError(f"no such file: {path}") from exc
    except OSError as exc:
        raise TransientFeedError(f"cannot read {path}: {exc}") from exc
    try:
        st = os.fstat(fd)  # of what was opened (no swap between a check and the open)
        if not stat.S_ISREG(st.st_mode):
            raise PermanentFeedError(f"refused: {path} is not a regular file (a FIFO, device or socket "
                                     "could block the cycle)")
        if st.st_size > settings.max_body_bytes:
            raise PermanentFeedError(f"file exceeds {settings.max_body_bytes} bytes: {path}")
        modified = format_datetime(datetime.fromtimestamp(st.st_mtime, timezone.utc), usegmt=True)
        if state is not None and state.last_modified == modified and state.etag == f"size:{st.st_size}":
            return FetchResult(feed.id, url, url, status=304, etag=state.etag, last_modified=modified,
                               elapsed=time.monotonic() - started)
        parts: list[bytes] = []
        total = 0
        while True:
            if time.monotonic() > deadline:
                raise TransientFeedError(f"deadline of {settings.fetch_timeout:g}s exceeded reading {path}")
            try:
                chunk = os.read(fd, LOCAL_READ_CHUNK)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            except OSError as exc:
                raise TransientFeedError(f"cannot read {path}: {exc}") from exc
            if not chunk:
                break
            total += len(chunk)
            if total > settings.max_body_bytes:
                raise PermanentFeedError(f"file exceeds {settings.max_body_bytes} bytes: {path}")
            parts.append(chunk)
    finally:
        os.close(fd)
    return FetchResult(feed.id, url, url, status=200, content=b"".join(parts), content_type=None,
                       etag=f"size:{st.st_size}", last_modified=modified, elapsed=time.monotonic() - started)


async def fetch_feed(client: httpx.AsyncClient, feed: FeedConfig, state: FeedState | None,
                     settings: Settings) -> FetchResult:
    """Fetch one feed; never raises: errors are returned in ``FetchResult.error``.  The result
    holds no credentials of a ``https://user:password@host/`` feed URL (see ``_redacted``)."""
    url = with_credentials(state.url if (state is not None and state.url) else feed.url, feed.url)
    return _redacted(await _fetch_feed(client, feed, url, state, settings), feed.url)


async def _fetch_feed(client: httpx.AsyncClient, feed: FeedConfig, url: str, state: FeedState | None,
                      settings: Settings) -> FetchResult:
    started = time.monotonic()
    try:
        if is_local(url):
            return await asyncio.to_thread(_fetch_local, feed, url, state, settings,
                                           time.monotonic() + settings.fetch_timeout)
        async with asyncio.timeout(settings.fetch_timeout):
            return await _fetch_http(client, feed, url, state, settings)
    except TimeoutError as exc:
        err: FeedError = TransientFeedError(f"deadline of {settings.fetch_timeout:g}s exceeded")
        err.__cause__ = exc
    except FeedError as exc:
        err = exc
    except Exception as exc:  # noqa: BLE001 - one bad feed never fails the batch
        err = TransientFeedError(f"unexpected error: {exc.__class__.__name__}: {exc}")
        err.__cause__ = exc
        log(logger, 40, "fetch_unexpected_error", feed_id=feed.id, error=scrub_secrets(str(exc), url))
    log(logger, 30, "fetch_failed", feed_id=feed.id, url=redact_url(url), error=scrub_secrets(str(err), url),
        status=err.status)
    return FetchResult(feed.id, url, url, status=err.status, error=err, elapsed=time.monotonic() - started)


def feed_host(url: str) -> str:
    """The host a feed URL is fetched from (lowercase; '' for local files): the per-host limit's key."""
    if is_local(url):
        return ""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def make_client(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The client every poll uses.  ``transport`` replaces the network (a test's
    ``httpx.MockTransport``); limits, timeouts and the hop-by-hop redirect checks stay the same."""
    # the pool no larger than the requests we let in flight: httpcore scans every pooled connection
    # for every request (twice the size cost a quarter of the CPU of a 500-feed steady-state cycle)
    limits = httpx.Limits(max_connections=settings.fetch_concurrency,
                          max_keepalive_connections=settings.fetch_concurrency)
    timeout = httpx.Timeout(settings.fetch_timeout, connect=settings.connect_timeout)
    return httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False, trust_env=False,
                             transport=transport)


REDACTED = "***"
# scheme://userinfo@ : the userinfo ends at the last '@' before the first '/', '?' or '#'
_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@")


def _userinfo(url: str) -> str | None:
    m = _USERINFO_RE.match(url or "")
    return m.group(2) if m else None


def redact_url(url: str) -> str:
    """The URL as it may be logged, shown or stored: a password becomes ``***``
    (``https://user:***@host/feed``), a user name alone (often a token) too (``https://***@host/``)."""
    info = _userinfo(url)
    if info is None:
        return url
    user, sep, _ = info.partition(":")
    shown = f"{user}:{REDACTED}" if sep else REDACTED
    return _USERINFO_RE.sub(lambda m: f"{m.group(1)}{shown}@", url, count=1)


def strip_userinfo(url: str) -> str:
    """The URL without any user name or password (the base that relative links are resolved
    against: a stored article link never carries the feed's credentials)."""
    return _USERINFO_RE.sub(lambda m: m.group(1), url, count=1) if _userinfo(url) is not None else url


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def with_credentials(url: str, configured: str) -> str:
    """The URL to request: a stored (redacted) URL gets the credentials of the configured URL back,
    but only on the configured URL's own origin (scheme, host, port); elsewhere they are dropped."""
    info = _userinfo(url)
    if info is None or REDACTED not in info:
        return url
    secret = _userinfo(configured)
    if secret is not None and _origin(url) == _origin(configured):
        return _USERINFO_RE.sub(lambda m: f"{m.group(1)}{secret}@", url, count=1)
    return strip_userinfo(url)


def scrub_secrets(text: str, url: str) -> str:
    """``text`` (an error message, a log value) without the password or token of ``url``."""
    info = _userinfo(url)
    if not info or not text:
        return text
    user, sep, password = info.partition(":")
    secret = password if sep else user
    text = text.replace(f"{info}@", f"{_userinfo(redact_url(url))}@")
    for form in {secret, unquote(secret)}:
        if len(form) >= 3:  # shorter ones would mangle ordinary words; they are also no secret
            text = text.replace(form, REDACTED)
    return text


def _redacted(result: FetchResult, configured: str) -> FetchResult:
    """A FetchResult that holds no credentials: ``url`` / ``permanent_url`` redacted (they end up in
    the stored feed state), ``final_url`` without userinfo (the base for relative links), the error
    message scrubbed (it becomes the feed state's ``last_error``)."""
    if _userinfo(configured) is None and _userinfo(result.url) is None and _userinfo(result.final_url) is None:
        return result
    err = result.error
    if err is not None:
        clean = scrub_secrets(scrub_secrets(str(err), configured), result.url)
        if clean != str(err):
            new = type(err)(clean, status=err.status, retry_after=err.retry_after)
            new.__cause__ = err.__cause__
            err = new
    return dataclasses.replace(
        result, url=redact_url(result.url), final_url=strip_userinfo(result.final_url),
        permanent_url=redact_url(result.permanent_url) if result.permanent_url else None, error=err)
