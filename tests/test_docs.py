"""The docs name things that exist: README's environment variables, the tests RELIABILITY.md cites."""

from __future__ import annotations

import re

from pipeline.settings import Settings

from .conftest import ROOT


def _readme_env_names() -> set[str]:
    names: set[str] = set()
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        names.update(n for n in re.findall(r"`([A-Z][A-Z0-9_]+)`", first))
    return names


def test_every_environment_variable_in_the_readme_exists():
    names = _readme_env_names()
    assert {"FETCH_CONCURRENCY", "FETCH_PER_HOST", "CYCLE_BATCH_ITEMS", "DATA_DIR"} <= names
    sources = "\n".join(p.read_text(encoding="utf-8") for p in [*ROOT.glob("dags/*.py"), *ROOT.glob("pipeline/**/*.py")])
    missing = [n for n in sorted(names)
               if n.lower() not in Settings.model_fields and f"MEDIAMON_{n}" not in sources]
    assert not missing, f"README lists variables that nothing reads: {missing}"


def test_every_test_cited_in_reliability_md_exists():
    text = (ROOT / "docs" / "RELIABILITY.md").read_text(encoding="utf-8")
    cited = set(re.findall(r"`(?:[\w/]+\.py::)?(test_[a-z0-9_]+)", text))
    assert len(cited) >= 5
    defined = set()
    for path in ROOT.glob("tests/**/test_*.py"):
        defined.update(re.findall(r"^def (test_[a-z0-9_]+)", path.read_text(encoding="utf-8"), re.M))
    assert cited <= defined, f"RELIABILITY.md cites tests that do not exist: {sorted(cited - defined)}"
