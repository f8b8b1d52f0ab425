"""Every ``mediamon …`` command shown in a README code block runs (issue 18).

Data-driven: the commands are read from README.md when the tests are collected, so a command
added to README is tested without touching this file.  Each runs in bash, as a reader would paste
it, with ``mediamon`` on PATH (this checkout's ``python -m pipeline.cli``), in a workspace whose
configuration is the shipped topics/alerts/aliases with feeds.yaml pointing at local fixture feeds
(nothing leaves the machine), in README order (mute before unmute), after one ``mediamon run``.

* Only the ``mediamon`` part of a line runs: ``pip install … && mediamon run`` runs ``mediamon
  run``; a pipeline into mediamon (``echo '{…}' | mediamon translate -``) runs whole.
* Expected exit code 0, unless the line's comment documents another (``# exit 4``).
* Long-running commands (``serve``) are not started: their command line is parsed by the real
  CLI (options, types, required arguments) and must be accepted.
* Files a command names that a reader would have (``items.jsonl``) are made in the workspace;
  ``../shared`` is the checkout's shared folder (commands that read it skip when it is absent).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from .conftest import FEED_FIXTURES, ROOT, SHARED, write_feeds_yaml

README = ROOT / "README.md"
LONG_RUNNING = {"serve"}
FENCE_LANGS = {"", "bash", "sh", "shell", "console"}
# files a README command reads that a reader is assumed to have
READER_FILES = {
    "items.jsonl": "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in (
        {"id": "1", "title": "Россия разместит «Орешник» в Белоруссии", "summary": ""},
        {"id": "2", "title": "Oreshnik missiles will be stationed in Belarus", "summary": "", "language": "en"})),
}


def _joined_lines(body: str) -> list[str]:
    out: list[str] = []
    buf = ""
    for line in body.splitlines():
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append(buf + line)
        buf = ""
    return out


def _mediamon_segment(line: str) -> str | None:
    """The part of a shell line that runs mediamon: the ``&&``/``;`` segment holding it (a pipe
    into it stays whole), without a trailing comment."""
    segments = re.split(r"\s*(?:&&|;)\s*", line)
    for seg in segments:
        try:
            words = shlex.split(seg, comments=True)
        except ValueError:
            continue
        if "mediamon" in words:
            return seg
    return None


def readme_commands() -> list[tuple[str, int]]:
    """(shell command, expected exit code) for every mediamon command in README code blocks."""
    text = README.read_text(encoding="utf-8")
    out = []
    for lang, body in re.findall(r"^```([\w-]*)[^\n]*\n(.*?)^```", text, re.S | re.M):
        if lang not in FENCE_LANGS:
            continue
        for line in _joined_lines(body):
            if line.lstrip().startswith("#") or "mediamon" not in line:
                continue
            seg = _mediamon_segment(line)
            if seg is None:
                continue
            m = re.search(r"#.*\bexits? (\d+)\b", line)
            out.append((seg.strip(), int(m.group(1)) if m else 0))
    return out


COMMANDS = readme_commands()


def test_readme_shows_commands():
    """The extraction finds README's commands (a guard against a parser that finds nothing)."""
    shown = " ".join(c for c, _ in COMMANDS)
    assert len(COMMANDS) >= 10
    for word in ("mediamon run", "mediamon search", "mediamon alerts"):
        assert word in shown


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    ws = root / "ws"
    cfg = ws / "config"
    cfg.mkdir(parents=True)
    for name in ("topics.yaml", "alerts.yaml", "aliases.yaml"):
        shutil.copy(ROOT / "config" / name, cfg / name)
    write_feeds_yaml(cfg, [
        # local files have no domain: the outlets' domains are declared, so the items keep their URLs'
        # global ids (the ids README shows; issue 16 identity rule)
        {"id": "ru-news", "url": str(FEED_FIXTURES / "ru_news.xml"), "source": "RU Example", "language": "ru",
         "domains": ["example.ru"]},
        {"id": "en-news", "url": str(FEED_FIXTURES / "en_news.xml"), "source": "EN Example", "language": "en",
         "domains": ["example.com"]}])
    for name, content in READER_FILES.items():
        (ws / name).write_text(content, encoding="utf-8")
    if SHARED.exists():
        (root / "shared").symlink_to(SHARED)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "mediamon"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pipeline.cli "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAMON_")}
    env.update({"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "PYTHONPATH": str(ROOT),
                "MEDIAMON_CONFIG_DIR": str(cfg), "MEDIAMON_DATA_DIR": str(ws / "data"),
                "MEDIAMON_TRANSLATION_BACKEND": "none", "MEDIAMON_ALLOW_PRIVATE_NETWORKS": "true",
                # no first-run floor: the fixture items are days old and README's alert commands
                # should have something to show
                "MEDIAMON_ALERT_FIRST_RUN_LOOKBACK": str(3650 * 86400), "COLUMNS": "200"})
    return ws, env


@pytest.fixture(scope="module")
def stored(workspace, tiny_marian_dir):
    ws, env = workspace
    env = dict(env, MEDIAMON_TRANSLATION_MODEL=str(tiny_marian_dir))
    res = subprocess.run(["mediamon", "run", "--json"], cwd=ws, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    return ws, env


@pytest.mark.slow
@pytest.mark.parametrize("command, expected", COMMANDS, ids=[c for c, _ in COMMANDS])
def test_readme_command_runs(stored, command, expected):
    ws, env = stored
    if "../shared" in command and not SHARED.exists():
        pytest.skip("../shared is not present")
    words = [w for w in shlex.split(command.split("|")[-1], comments=True) if not re.match(r"^\w+=", w)]
    args = words[words.index("mediamon") + 1:]
    if args and args[0] in LONG_RUNNING:
        from pipeline.cli import app

        group = typer.main.get_command(app)
        sub = group.commands[args[0]]  # type: ignore[attr-defined]
        sub.make_context(args[0], list(args[1:]))  # raises click.UsageError for a bad command line
        return
    res = subprocess.run(["bash", "-c", command], cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == expected, f"{command}\nexit {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"


def test_segment_extraction_rules():
    """How a README line becomes the command that runs."""
    assert _mediamon_segment("python3 -m venv .venv && pip install -e . && mediamon run") == "mediamon run"
    assert _mediamon_segment("echo '{\"id\": 1}' | mediamon translate -") == "echo '{\"id\": 1}' | mediamon translate -"
    assert _mediamon_segment("pip install -e .") is None
    assert _joined_lines("mediamon search x \\\n  --json") == ["mediamon search x    --json"]
    assert Path(README).is_file()
