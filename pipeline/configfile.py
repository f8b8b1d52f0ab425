"""What every configuration file shares: YAML reading with errors that name the file, and ids.

Kept apart from :mod:`pipeline.config` (the entry models) so that :mod:`pipeline.aliases` can use it
without importing the config loader that imports it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

# libyaml's C loader when PyYAML was built with it, else the pure-Python one (same safe subset of
# YAML): 100,000 feeds load in seconds instead of a minute and a half (bench/yaml_load.py)
YAML_LOADER: type = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def check_id(value: str) -> str:
    if not ID_RE.match(value):
        raise ValueError("must be 1-64 chars of lowercase letters, digits, '_', '-', '.'")
    return value


def load_yaml_list(path: Path, key: str, *, allow_empty: bool = True) -> list[Any]:
    """The list of entries under ``key:`` in the YAML file ``path``.

    A top-level key other than ``key`` (``feed:`` for ``feeds:``) is an error naming it, never a
    silent empty list; so is an empty file when ``allow_empty`` is false (feeds.yaml: a run with
    no feeds would do nothing and exit 0).
    """
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)  # noqa: S506 - a safe loader
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, not a file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8: {exc}") from exc
    if raw is None:
        if not allow_empty:
            raise ConfigError(f"{path}: the file is empty; expected a list of entries under '{key}:'")
        return []
    if isinstance(raw, dict):
        unknown = [str(k) for k in raw if k != key]
        if unknown:
            raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(repr(k) for k in unknown)}; "
                              f"expected only '{key}:'")
        raw = raw.get(key)
        if raw is None:
            if not allow_empty:
                raise ConfigError(f"{path}: '{key}:' is empty; expected a list of entries")
            return []
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: expected a list of entries under '{key}:'")
    return raw
