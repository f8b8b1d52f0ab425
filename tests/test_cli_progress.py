"""``mediamon run`` progress (issue 18): on a terminal, feeds polled / items stored / translation;
nothing when stdout is not a terminal or with --json."""

from __future__ import annotations

import io

from rich.console import Console
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.cycle import run_cycle

from .conftest import FEED_FIXTURES, make_settings, write_feeds_yaml

runner = CliRunner()


def _env(tmp_path):
    cfg = tmp_path / "config"
    cfg.mkdir(exist_ok=True)
    write_feeds_yaml(cfg, [
        {"id": "ru", "url": str(FEED_FIXTURES / "ru_news.xml"), "source": "RU", "language": "ru"},
        {"id": "en", "url": str(FEED_FIXTURES / "en_news.xml"), "source": "EN", "language": "en"}])
    return {"MEDIAMON_CONFIG_DIR": str(cfg), "MEDIAMON_DATA_DIR": str(tmp_path / "data"),
            "MEDIAMON_TRANSLATION_BACKEND": "none", "MEDIAMON_ALLOW_PRIVATE_NETWORKS": "true"}


def test_run_cycle_reports_progress_with_the_counters_so_far(tmp_path):
    settings = make_settings(tmp_path)
    write_feeds_yaml(settings.config_dir, [
        {"id": "ru", "url": str(FEED_FIXTURES / "ru_news.xml"), "source": "RU", "language": "ru"}])
    seen: list[tuple[str, int]] = []
    run_cycle(settings, on_progress=lambda stage, c: seen.append((stage, c.get("indexed", 0))))
    stages = [s for s, _ in seen]
    assert stages[0] == "planned" and "translated" in stages and "indexed" in stages and stages[-1] == "committed"
    assert dict(seen)["indexed"] == 4


def test_progress_on_a_terminal_shows_feeds_items_and_translation(tmp_path, monkeypatch):
    from pipeline.commands import core

    buf = io.StringIO()
    monkeypatch.setattr(core, "console", Console(file=buf, force_terminal=True, width=160))
    res = runner.invoke(app, ["run"], env=_env(tmp_path))
    assert res.exit_code == 0, res.output
    shown = buf.getvalue()
    assert "feeds polled" in shown and "items stored" in shown and "translation" in shown
    assert "2/2" in shown  # both feeds polled


def test_no_progress_when_not_a_terminal_or_with_json(tmp_path, monkeypatch):
    from pipeline.commands import core

    res = runner.invoke(app, ["run"], env=_env(tmp_path))
    assert res.exit_code == 0 and "feeds polled" not in res.output and "mediamon run" in res.output
    buf = io.StringIO()
    monkeypatch.setattr(core, "console", Console(file=buf, force_terminal=True, width=160))
    res = runner.invoke(app, ["run", "--json", "--force"], env=_env(tmp_path))
    assert res.exit_code == 0 and buf.getvalue() == "" and res.stdout.lstrip().startswith("{")
