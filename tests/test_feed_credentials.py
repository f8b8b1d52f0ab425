"""Issue 16, item 8: a feed URL's password (``https://user:secret@host/feed``) never appears in
logs, errors, ``feeds list``, ``feeds check`` or the stored feed state (``user:***@`` there), and
stored article links never carry it; the fetch still authenticates, also after a 301 on the same
origin.  Loopback server, real CLI (``typer.testing.CliRunner``)."""

from __future__ import annotations

import base64
import json

import pytest
from typer.testing import CliRunner
from werkzeug import Request, Response

from pipeline.cli import app
from pipeline.fetch import redact_url, scrub_secrets, strip_userinfo, with_credentials
from pipeline.store.sqlite import SQLiteStore

from .conftest import write_feeds_yaml

runner = CliRunner()
SECRET = "s3cret-Pa55"
AUTH = "Basic " + base64.b64encode(f"reader:{SECRET}".encode()).decode()


def _rss(n: int) -> str:
    items = "".join(f"<item><title>Item {i}</title><link>/news/{i}</link><guid>g{i}</guid>"
                    "<pubDate>Mon, 23 Nov 2026 10:00:00 +0000</pubDate></item>" for i in range(n))
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>/</link>'
            f"<description>d</description>{items}</channel></rss>")


def _protected(httpserver, path: str, body: str) -> None:
    def handler(request: Request) -> Response:
        if request.headers.get("Authorization") != AUTH:
            return Response("auth required", status=401)
        return Response(body, content_type="application/rss+xml")

    httpserver.expect_request(path).respond_with_handler(handler)


@pytest.fixture
def env(tmp_path):
    cfg = tmp_path / "config"
    cfg.mkdir()
    return {"MEDIAMON_CONFIG_DIR": str(cfg), "MEDIAMON_DATA_DIR": str(tmp_path / "data"),
            "MEDIAMON_TRANSLATION_BACKEND": "none", "MEDIAMON_ALLOW_PRIVATE_NETWORKS": "true"}


def test_redaction_helpers():
    assert redact_url(f"https://reader:{SECRET}@host.example/feed?x=1") == "https://reader:***@host.example/feed?x=1"
    assert redact_url("https://TOKEN123@host.example/feed") == "https://***@host.example/feed"
    assert redact_url("https://host.example/a@b") == "https://host.example/a@b"  # '@' in the path is no userinfo
    assert strip_userinfo(f"https://reader:{SECRET}@host.example/f") == "https://host.example/f"
    configured = f"https://reader:{SECRET}@host.example/feed"
    assert with_credentials("https://reader:***@host.example/moved", configured) == \
        f"https://reader:{SECRET}@host.example/moved"
    # another origin never gets them
    assert with_credentials("https://reader:***@other.example/feed", configured) == "https://other.example/feed"
    assert with_credentials("http://reader:***@host.example/feed", configured) == "http://host.example/feed"
    assert SECRET not in scrub_secrets(f"invalid URL '{configured}' ({SECRET.lower()}{SECRET})", configured)


def test_feed_password_never_logged_shown_or_stored(tmp_path, env, httpserver):
    _protected(httpserver, "/feed", _rss(2))
    httpserver.expect_request("/old").respond_with_response(Response(status=301, headers={"Location": "/moved"}))
    _protected(httpserver, "/moved", _rss(3))
    port = httpserver.port
    write_feeds_yaml(tmp_path / "config", [
        {"id": "auth", "url": f"http://reader:{SECRET}@localhost:{port}/feed", "source": "A"},
        {"id": "moved", "url": f"http://reader:{SECRET}@localhost:{port}/old", "source": "M"},
        {"id": "broken", "url": f"http://reader:{SECRET}@[::1/x", "source": "B"},
        {"id": "bad-port", "url": f"http://reader:{SECRET}@localhost:99999999/x", "source": "P"},
    ])
    outputs = []
    for failed in (2, 0):  # the second run fetches from the stored (redacted) URLs; "broken" backs off
        res = runner.invoke(app, ["run", "--json", "-vv"], env=env)  # debug log lines on stderr, in the output
        outputs.append(res.output)
        counts = json.loads(res.output.strip().splitlines()[-1])
        assert counts["failed_feeds"] == failed and counts["fetched"] == 2, res.output
    auth_headers = [req.headers.get("Authorization") for req, _ in httpserver.log
                    if req.path in ("/feed", "/moved")]
    assert auth_headers and set(auth_headers) == {AUTH}  # authenticated every time, also after the 301

    with SQLiteStore(tmp_path / "data" / "mediamon.sqlite3") as store:
        states = store.get_feed_states()
        assert states["auth"].url == f"http://reader:***@localhost:{port}/feed"
        assert states["moved"].url == f"http://reader:***@localhost:{port}/moved"
        assert "invalid URL" in (states["broken"].last_error or "")
        assert "port 99999999 out of range" in (states["bad-port"].last_error or "")  # not "unexpected error"
        raw_states = store._db.execute("SELECT group_concat(state) FROM feed_state").fetchone()[0]
        raw_docs = store._db.execute("SELECT group_concat(doc) FROM articles").fetchone()[0]
    assert SECRET not in raw_states and SECRET not in raw_docs and "reader" not in raw_docs

    res = runner.invoke(app, ["feeds", "list", "--json"], env=env)
    outputs.append(res.output)
    assert f"reader:***@localhost:{port}/moved" in res.output
    res = runner.invoke(app, ["feeds", "list"], env=env)
    outputs.append(res.output)
    for args in (["--json"], []):
        res = runner.invoke(app, ["feeds", "check", f"http://reader:{SECRET}@localhost:{port}/old", *args], env=env)
        assert res.exit_code == 0, res.output
        outputs.append(res.output)
    assert "/news/0" in outputs[-2] and f"http://localhost:{port}/news/0" in outputs[-2]  # links without userinfo
    res = runner.invoke(app, ["feeds", "check", f"http://reader:{SECRET}@localhost:99999999/x"], env=env)
    outputs.append(res.output)

    assert "fetch_failed" in outputs[0] and "redirect" in outputs[0] and "reader:***@" in outputs[0]
    for text in outputs:
        assert SECRET not in text
