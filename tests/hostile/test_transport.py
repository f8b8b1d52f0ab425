"""Hostile *servers*: huge bodies, compression bombs, a trickling server, endless redirects and
redirects into loopback/private/link-local space or to other schemes — each through a whole cycle,
bounded in time and peak-RSS growth, with a clear per-feed error and the feed's state recorded.

Only loopback traffic: the address tests refuse before connecting (and assert nothing reached the
target path); the first hop is made to count as public with the monkeypatch of tests/test_fetch.py."""

from __future__ import annotations

import ipaddress
import time

import pytest
from werkzeug import Response

from pipeline import fetch as fetch_mod

from . import generators as gen
from .conftest import MiB, bounded, cycle, feed


# IPv6 forms that carry 127.0.0.1 (or another private IPv4) inside them; Python's ipaddress calls all
# but Teredo "global" (issue 16, item 5)
EMBEDDED_LOOPBACK = {
    "v4-compatible": "::127.0.0.1",
    "siit": "::ffff:0:7f00:1",
    "nat64": "64:ff9b::7f00:1",
    "nat64-local-96": "64:ff9b:1::7f00:1",
    "nat64-local-48": "64:ff9b:1:7f00:0:100::",  # RFC 6052 /48 layout: 7f00, u-octet 00, 0001: 127.0.0.1
    # /64 layout (u-octet 00, then 7f000001); read as /96 it would be the public 1.0.0.0
    "nat64-local-64": "64:ff9b:1:0:7f:0:100:0",
    "6to4": "2002:7f00:1::",
    "6to4-private": "2002:a00:1::1",  # 10.0.0.1
    "teredo": "2001:0:4136:e378:8000:63bf:80ff:fffe",  # client 127.0.0.1, XOR-ed
}


def _control(hserver):
    hserver.expect_request("/control").respond_with_data(
        gen.rss(gen.plain_items(2, "https://control.example/")).encode(), content_type="application/rss+xml")
    return feed("control", hserver.url_for("/control"))


def _assert_failed(o, feed_id: str, pattern: str, *, control: bool = True):
    f = o.feed(feed_id)
    assert f.status == "failed" and pattern in (f.error or ""), f
    st = o.states[feed_id]
    assert pattern in (st.last_error or "") and st.consecutive_failures == 1 and not st.disabled
    assert st.next_fetch_at is not None  # backing off, will be tried again
    assert not [a for a in o.articles if a.feed_id == feed_id]
    if control:
        assert sorted(a.url for a in o.articles if a.feed_id == "control") == \
            ["https://control.example/0", "https://control.example/1"]


@pytest.mark.parametrize("declared_length", [False, True], ids=["chunked", "content-length"])
def test_50_mib_body_refused_at_the_cap(hserver, hsettings, warm, declared_length):
    total = 50 * MiB
    headers = {"Content-Length": str(total)} if declared_length else {}
    hserver.expect_request("/big").respond_with_response(
        Response(gen.big_stream(total), status=200, headers=headers, content_type="application/rss+xml",
                 direct_passthrough=True))
    settings = hsettings  # default cap: 16 MiB decoded
    with bounded(20, 120):
        o = cycle(settings, [feed("big", hserver.url_for("/big")), _control(hserver)])
    _assert_failed(o, "big", "exceeds")


@pytest.mark.parametrize("encoding,bomb", [("gzip", gen.gzip_bomb), ("deflate", gen.deflate_bomb)])
def test_compression_bomb_stops_at_the_cap(hserver, hsettings, warm, encoding, bomb):
    body = bomb(256 * MiB)
    assert len(body) < 2 * MiB  # ~1000:1
    hserver.expect_request("/bomb").respond_with_data(body, headers={"Content-Encoding": encoding},
                                                      content_type="application/rss+xml")
    with bounded(20, 120) as usage:
        o = cycle(hsettings, [feed("bomb", hserver.url_for("/bomb")), _control(hserver)])
    _assert_failed(o, "bomb", "exceeds")
    print(f"{encoding} bomb: {usage.seconds:.2f}s, +{usage.peak_growth / MiB:.0f} MiB")


def test_stacked_or_unknown_content_encoding_refused(hserver, hsettings, warm):
    import gzip

    twice = gzip.compress(gzip.compress(gen.rss(gen.plain_items(1)).encode()))
    hserver.expect_request("/twice").respond_with_data(twice, headers={"Content-Encoding": "gzip, gzip"})
    hserver.expect_request("/br").respond_with_data(b"xx", headers={"Content-Encoding": "br"})
    with bounded(10, 50):
        o = cycle(hsettings, [feed("twice", hserver.url_for("/twice")), feed("br", hserver.url_for("/br")),
                              _control(hserver)])
    _assert_failed(o, "twice", "Content-Encoding")
    _assert_failed(o, "br", "Content-Encoding")


def test_trickling_server_hits_the_deadline_and_holds_no_one_else(hserver, hsettings, warm):
    """One byte every 2 seconds, forever; the deadline is 3 s; the other feed is not delayed."""
    def trickle():
        yield b"<"
        for _ in range(30):
            time.sleep(2.0)
            yield b"r"

    hserver.expect_request("/slow").respond_with_response(
        Response(trickle(), status=200, content_type="application/rss+xml", direct_passthrough=True))
    settings = hsettings.model_copy(update={"fetch_timeout": 3.0})
    t0 = time.monotonic()
    with bounded(3.0 + 4.0, 50):
        o = cycle(settings, [feed("slow", hserver.url_for("/slow")), _control(hserver)])
    _assert_failed(o, "slow", "deadline")
    assert time.monotonic() - t0 >= 2.5  # it really was the deadline that ended it


def test_endless_redirects_are_bounded(hserver, hsettings, warm):
    """Every hop redirects to a new URL (no loop to detect): stopped after max_redirects."""
    def hop(request):
        n = int(request.path.rsplit("/", 1)[1])
        return Response(status=302, headers={"Location": f"/hop/{n + 1}"})

    hserver.expect_request("/hop/0").respond_with_handler(hop)
    for n in range(1, 50):
        hserver.expect_request(f"/hop/{n}").respond_with_handler(hop)
    settings = hsettings.model_copy(update={"max_redirects": 5})
    with bounded(10, 50):
        o = cycle(settings, [feed("endless", hserver.url_for("/hop/0")), _control(hserver)])
    _assert_failed(o, "endless", "too many redirects")
    hops = [req.path for req, _ in hserver.log if req.path.startswith("/hop/")]
    assert hops == [f"/hop/{n}" for n in range(6)]  # the first request + 5 redirects, no more
    assert o.states["endless"].url == hserver.url_for("/hop/0")  # never moved by a redirect chain


def test_redirects_into_private_space_or_other_schemes_are_refused(hserver, hsettings, warm, monkeypatch):
    strict = hsettings.model_copy(update={"allow_private_networks": False})
    real = fetch_mod.resolve_checked

    async def first_hop_public(host, port, settings):
        if host == "localhost":
            return None  # treated as public: connect normally (it is still loopback in reality)
        return await real(host, port, settings)

    monkeypatch.setattr(fetch_mod, "resolve_checked", first_hop_public)
    port = hserver.port
    targets = {
        "loopback": f"http://127.0.0.1:{port}/secret",
        "loopback-v6": f"http://[::1]:{port}/secret",
        "v4-mapped-v6": f"http://[::ffff:127.0.0.1]:{port}/secret",
        "decimal-ip": f"http://2130706433:{port}/secret",
        "short-ip": f"http://127.1:{port}/secret",
        "private-10": "http://10.0.0.1/secret",
        "private-192": "http://192.168.1.1/secret",
        "link-local": "http://169.254.169.254/latest/meta-data/",
        "unspecified": f"http://0.0.0.0:{port}/secret",
        **{f"embedded-{k}": f"http://[{a}]:{port}/secret" for k, a in EMBEDDED_LOOPBACK.items()},
        "file": "file:///etc/passwd",
        "gopher": "gopher://127.0.0.1:70/_secret",
        "ftp": "ftp://127.0.0.1/secret",
        "javascript": "javascript:alert(1)",
    }
    feeds = []
    for name, target in targets.items():
        hserver.expect_request(f"/to/{name}").respond_with_response(
            Response(status=301, headers={"Location": target}))
        feeds.append(feed(f"to-{name}", f"http://localhost:{port}/to/{name}"))
    hserver.expect_request("/secret").respond_with_data("secret")
    # the control feed goes through the same public-looking name
    hserver.expect_request("/control").respond_with_data(
        gen.rss(gen.plain_items(2, "https://control.example/")).encode(), content_type="application/rss+xml")
    feeds.append(feed("control", f"http://localhost:{port}/control"))
    with bounded(15, 50):
        o = cycle(strict, feeds)
    for name in targets:
        f = o.feed(f"to-{name}")
        assert f.status == "failed" and "refused" in (f.error or ""), (name, f)
        st = o.states[f"to-{name}"]
        assert st.url == f"http://localhost:{port}/to/{name}"  # a refused 301 never moves the feed
        assert "refused" in st.last_error
    assert len([a for a in o.articles if a.feed_id == "control"]) == 2
    assert all(req.path != "/secret" for req, _ in hserver.log)


@pytest.mark.parametrize("address", list(EMBEDDED_LOOPBACK.values()), ids=list(EMBEDDED_LOOPBACK))
def test_embedded_private_ipv4_is_refused(address):
    ip = ipaddress.ip_address(address)
    assert not fetch_mod._ip_allowed(ip)


@pytest.mark.parametrize("address", [
    "93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34",
    "64:ff9b::5db8:d822", "64:ff9b:1::5db8:d822", "2002:5db8:d822::1",
])
def test_embedded_public_ipv4_stays_allowed(address):
    """The check refuses what is inside, not the form: NAT64 of a public address still works."""
    assert fetch_mod._ip_allowed(ipaddress.ip_address(address))


def test_private_feed_urls_refused_without_a_connection(hserver, hsettings, warm):
    strict = hsettings.model_copy(update={"allow_private_networks": False})
    hserver.expect_request("/x").respond_with_data("never")
    port = hserver.port
    urls = {"loopback": hserver.url_for("/x"), "decimal": f"http://2130706433:{port}/x",
            "mapped": f"http://[::ffff:127.0.0.1]:{port}/x", "link-local": "http://169.254.169.254/x",
            "localhost-name": f"http://localhost:{port}/x",
            **{f"embedded-{k}": f"http://[{a}]:{port}/x" for k, a in EMBEDDED_LOOPBACK.items()}}
    o = cycle(strict, [feed(k, u) for k, u in urls.items()])
    for k in urls:
        f = o.feed(k)
        assert f.status == "failed" and "non-public address" in f.error, f
    assert not hserver.log
