"""Shared fixtures: settings in a temp dir, a loopback feed server with ETag support."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FEED_FIXTURES = FIXTURES / "feeds"
SHARED = ROOT.parent / "shared"
SHARED_FEEDS = SHARED / "feeds"


@functools.cache
def load_bench(name: str):
    """A script of bench/ as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_settings(tmp_path: Path, **overrides) -> Settings:
    cfg = tmp_path / "config"
    cfg.mkdir(exist_ok=True)
    base = dict(config_dir=cfg, data_dir=tmp_path / "data", allow_private_networks=True,
                translation_backend="none", fetch_timeout=10.0, backoff_base=60.0)
    base.update(overrides)
    return Settings(**base)


def write_feeds_yaml(config_dir: Path, feeds: list[dict]) -> None:
    (config_dir / "feeds.yaml").write_text(yaml.safe_dump({"feeds": feeds}, allow_unicode=True), encoding="utf-8")


def copy_default_topics(config_dir: Path) -> None:
    src = ROOT / "config" / "topics.yaml"
    if src.exists():
        shutil.copy(src, config_dir / "topics.yaml")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path)


class FeedServer:
    """Serves byte bodies on a pytest-httpserver with ETag / Last-Modified / 304 support,
    and records the conditional headers of every request."""

    LAST_MODIFIED = "Mon, 23 Nov 2026 12:00:00 GMT"

    def __init__(self, httpserver):
        self.httpserver = httpserver
        self.bodies: dict[str, bytes] = {}
        self.requests: list[dict] = []

    def add(self, path: str, body: bytes, content_type: str = "application/rss+xml") -> str:
        from werkzeug import Response

        self.bodies[path] = body

        def handler(request):
            data = self.bodies[path]
            etag = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
            self.requests.append({"path": path, "if_none_match": request.headers.get("If-None-Match"),
                                  "if_modified_since": request.headers.get("If-Modified-Since"),
                                  "user_agent": request.headers.get("User-Agent")})
            if request.headers.get("If-None-Match") == etag:
                return Response(status=304, headers={"ETag": etag})
            return Response(data, status=200, headers={"ETag": etag, "Last-Modified": self.LAST_MODIFIED,
                                                       "Content-Type": content_type})

        self.httpserver.expect_request(path).respond_with_handler(handler)
        return self.httpserver.url_for(path)


@pytest.fixture
def feed_server(httpserver) -> FeedServer:
    return FeedServer(httpserver)


@pytest.fixture(scope="session")
def tiny_marian_dir(tmp_path_factory) -> Path:
    """A tiny random Marian model (128 positions → at most 127 source tokens per input), built once."""
    from .tiny_marian import build_marian_dir

    return build_marian_dir(tmp_path_factory.mktemp("tiny-marian") / "model", max_positions=128)


@pytest.fixture
def smtp_server():
    """A real SMTP server on loopback (tests/smtp_catcher.py), stopped after the test."""
    from .smtp_catcher import SMTPCatcher

    server = SMTPCatcher().start()
    try:
        yield server
    finally:
        server.stop()
