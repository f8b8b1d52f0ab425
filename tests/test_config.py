"""Config validation: errors name the file, the entry and the field."""

from __future__ import annotations

import pytest

from pipeline.config import load_alerts, load_feeds
from pipeline.errors import ConfigError

from .conftest import ROOT


def _write(tmp_path, name, text):
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("text,needle", [
    ("feeds:\n  - {id: a, url: 'gopher://x', source: A}\n", "entry 1 (id 'a'): field 'url'"),
    ("feeds:\n  - {id: a, url: 'https://x', source: A}\n  - {id: b, url: 'https://y'}\n",
     "entry 2 (id 'b'): field 'source': Field required"),
    ("feeds:\n  - {id: a, url: 'https://x', source: A, langauge: ru}\n", "field 'langauge': unknown field"),
    ("feeds:\n  - {id: a, url: 'https://x', source: A, language: russian}\n", "field 'language'"),
    ("feeds:\n  - {id: A B, url: 'https://x', source: A}\n", "field 'id'"),
    ("feeds:\n  - {id: a, url: 'https://x', source: A}\n  - {id: a, url: 'https://y', source: B}\n",
     "entry 2 (id 'a'): field 'id': duplicate of entry 1"),
    ("feeds: [\n", "invalid YAML"),
    ("feeds:\n  - just a string\n", "entry 1: expected a mapping"),
    ("feeds:\n  - {id: a, url: 'https://x', source: A, interval: -5}\n", "field 'interval'"),
])
def test_feed_errors_name_file_entry_field(tmp_path, text, needle):
    _write(tmp_path, "feeds.yaml", text)
    with pytest.raises(ConfigError) as exc:
        load_feeds(tmp_path)
    assert str(tmp_path / "feeds.yaml") in str(exc.value)
    assert needle in str(exc.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="feeds.yaml: file not found"):
        load_feeds(tmp_path)


def test_local_paths_resolve_relative_to_config_dir(tmp_path):
    _write(tmp_path, "feeds.yaml", "feeds:\n  - {id: a, url: 'fixtures/x.xml', source: A}\n")
    assert load_feeds(tmp_path)[0].url == str((tmp_path / "fixtures" / "x.xml").resolve())


def test_alert_recipients_cannot_inject_headers(tmp_path):
    _write(tmp_path, "alerts.yaml",
           "alerts:\n  - {id: r, query: x, recipients: ['a@example.org\\r\\nBcc: evil@example.org']}\n")
    with pytest.raises(ConfigError, match="entry 1 \\(id 'r'\\): field 'recipients"):
        load_alerts(tmp_path)


def test_shipped_feeds_config_is_valid():
    feeds = load_feeds(ROOT / "config")
    langs = [f.language for f in feeds]
    assert len(feeds) >= 12 and langs.count("ru") >= 6 and langs.count("en") >= 6
    assert all(f.url.startswith("https://") for f in feeds)


def test_yaml_is_loaded_with_the_c_loader_when_available_and_reads_the_same(tmp_path, monkeypatch):
    """Issue 16, item 8: 100,000 feeds took ~90 s with the pure-Python loader (bench/yaml_load.py)."""
    import yaml

    from pipeline import configfile
    from pipeline.config import load_topics

    if getattr(yaml, "__with_libyaml__", False):
        assert configfile.YAML_LOADER is yaml.CSafeLoader
    config = ROOT / "config"
    loaded = {}
    for loader in (yaml.SafeLoader, configfile.YAML_LOADER):
        monkeypatch.setattr(configfile, "YAML_LOADER", loader)
        loaded[loader] = (load_feeds(config), load_topics(config), load_alerts(config))
        # still a safe loader: no Python objects, and a syntax error still names the file
        with pytest.raises(ConfigError, match="feeds.yaml: invalid YAML"):
            load_feeds(_write(tmp_path, "feeds.yaml", "feeds: !!python/object/apply:os.system ['true']\n"))
        with pytest.raises(ConfigError, match="feeds.yaml: invalid YAML"):
            load_feeds(_write(tmp_path, "feeds.yaml", "feeds:\n  - {id: a, url: [\n"))
    assert len(set(map(repr, loaded.values()))) == 1 and loaded[yaml.SafeLoader][0]
