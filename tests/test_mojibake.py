"""Mojibake (issue 18): repaired where it can be, flagged where it cannot; the Yandex.News sample in
../shared/feeds (UTF-8 read as cp1252 and saved again as UTF-8) is the real case."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.mojibake import repair

from .conftest import SHARED_FEEDS, write_feeds_yaml

runner = CliRunner()
YANDEX = SHARED_FEEDS / "oddity_yandexnews_moscow_2017_mojibake.xml"


@pytest.fixture(autouse=True)
def _wide_consoles(monkeypatch):
    from pipeline.commands import _common

    for c in (_common.console, _common.err_console):
        monkeypatch.setattr(c, "_width", 1000)


def _garble(text: str, *, lossy: bool = False) -> str:
    """UTF-8 bytes read as cp1252; the bytes cp1252 has no character for are kept as C1 controls
    (as in the Yandex sample) or, ``lossy``, dropped."""
    out = []
    for b in text.encode("utf-8"):
        try:
            out.append(bytes([b]).decode("cp1252"))
        except UnicodeDecodeError:
            if not lossy:
                out.append(chr(b))
    return "".join(out)


def test_repair_undoes_utf8_read_as_cp1252_and_leaves_clean_text_alone():
    for clean in ("Россия может разместить «Орешник» в Белоруссии", "Putin’s “red lines” — again", "plain ascii",
                  "Łódź, Zürich, Ελλάδα, 東京", ""):
        assert repair(clean) == (clean, "clean")
    assert repair(_garble("В Москве объявлен «оранжевый» уровень")) == ("В Москве объявлен «оранжевый» уровень", "repaired")
    assert repair("Putinâ€™s") == ("Putin’s", "repaired")


def test_lossy_mojibake_is_flagged_as_garbled():
    text, outcome = repair(_garble("Москва и Россия сообщили о ракетах", lossy=True))
    assert outcome == "garbled"


def _rss(titles: list[str]) -> str:
    items = "".join(f"<item><title>{t}</title><link>https://news.example/{i}</link>"
                    f"<pubDate>Mon, 23 Nov 2026 10:00:00 GMT</pubDate></item>" for i, t in enumerate(titles))
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
            f'<link>https://news.example/</link><description>d</description>{items}</channel></rss>')


def test_feeds_check_names_a_feed_whose_text_cannot_be_repaired(tmp_path):
    path = tmp_path / "garbled.xml"
    path.write_text(_rss([_garble("Москва и Россия сообщили о ракетах", lossy=True), "Clean English title"]),
                    encoding="utf-8")
    res = runner.invoke(app, ["feeds", "check", str(path)])
    assert res.exit_code == 0, res.output
    assert str(path) in res.output
    assert "mojibake: the text of 1 item(s) is garbled and could not be fully repaired" in res.output
    res = runner.invoke(app, ["feeds", "check", str(path), "--json"])
    assert any("garbled" in w for w in json.loads(res.stdout)["warnings"])


@pytest.mark.skipif(not YANDEX.exists(), reason="../shared/feeds not present")
def test_yandex_sample_feed_is_repaired_to_readable_russian(tmp_path):
    res = runner.invoke(app, ["feeds", "check", str(YANDEX), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    titles = [i["title"] for i in out["items"]]
    assert len(titles) == 15
    assert "В Москве из-за сильных морозов объявлен «оранжевый» уровень опасности" in titles
    assert not any("Ð" in t or "Ñ" in t for t in titles)
    assert all(i["language"] == "ru" for i in out["items"])  # detection sees Russian now, not garble
    assert any(w.startswith("mojibake: repaired the text of 15 item(s)") for w in out["warnings"])
    assert not any("garbled" in w for w in out["warnings"])


@pytest.mark.skipif(not YANDEX.exists(), reason="../shared/feeds not present")
def test_repaired_yandex_items_are_stored_and_found_by_russian_words(tmp_path):
    cfg = tmp_path / "config"
    cfg.mkdir()
    write_feeds_yaml(cfg, [{"id": "yandex", "url": str(YANDEX), "source": "Yandex.News", "language": "ru"}])
    env = {"MEDIAMON_CONFIG_DIR": str(cfg), "MEDIAMON_DATA_DIR": str(tmp_path / "data"),
           "MEDIAMON_TRANSLATION_BACKEND": "none"}
    assert runner.invoke(app, ["run", "--json"], env=env).exit_code == 0
    hits = json.loads(runner.invoke(app, ["search", "мороз", "--json"], env=env).stdout)
    assert len(hits) >= 2 and all("Ð" not in h["title"] for h in hits)


def test_the_plain_text_shortcut_never_skips_what_ftfy_flags():
    """``repair`` skips ftfy's badness search for text of ASCII, basic Cyrillic and common
    punctuation (most news); over every title/summary/content of the 61 feeds in ../shared and
    mojibake generated in nine encodings, it never skips a text that ftfy.badness.is_bad flags."""
    from ftfy.badness import is_bad

    from pipeline.mojibake import _NOT_PLAIN
    from pipeline.parse import parse_feed

    texts: list[str] = []
    for path in sorted(SHARED_FEEDS.glob("*.xml")):
        try:
            parsed = parse_feed(path.read_bytes(), url="https://feeds.example/")
        except Exception:  # noqa: BLE001 - a feed our parser refuses has no texts to check
            continue
        texts += [t for e in parsed.entries for t in (e.title, e.summary, e.content) if t]
    for s in ("Россия разместила «Орешник» — в Белоруссии", "Putin’s “deal” — café", "Ärger über Straße"):
        for enc in ("cp1252", "latin-1", "cp1251", "mac_roman", "cp437", "iso-8859-2", "cp1250", "cp1253", "koi8-r"):
            texts.append(s.encode("utf-8").decode(enc, errors="replace"))
    flagged = [t for t in texts if not t.isascii() and is_bad(t)]
    assert len(texts) > 3000 and len(flagged) > 20
    assert [t for t in flagged if not _NOT_PLAIN.search(t)] == []
    skipped = [t for t in texts if not t.isascii() and not _NOT_PLAIN.search(t)]
    assert len(skipped) > 1000  # the shortcut does spare most non-ASCII news text the search
