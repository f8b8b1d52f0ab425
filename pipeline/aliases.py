"""Name aliases: groups of names that mean one entity across languages, spellings and abbreviations.

``config/aliases.yaml``::

    aliases:
      - id: belarus
        names: [Belarus, Byelorussia, Беларусь, Белоруссия, "Республика Беларусь"]

A query term (or phrase) that is one of a group's names, in any of its word forms, matches every
name of the group: ``Беларуси`` → ``Беларусь OR Белоруссия OR Belarus OR …``.  The expansion is
done once, on the parsed query (:mod:`pipeline.query`), so the Python evaluator, SQLite FTS5 and
the Elasticsearch DSL see the same ``OR`` and agree.  ``=Беларусь`` (or ``="Республика Беларусь"``)
turns expansion off for that one term.

Which query words belong to a group is decided by their *keys*: the word sequence's lemmas
(Cyrillic words; :func:`pipeline.analysis.lemma`) or stems.  ``Беларуси`` has the lemma of
``Беларусь``; ``Belarusian`` does not have the stem of ``Belarus`` (an adjective is not the
country), so it is not expanded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from .analysis import has_cyrillic, lemmas, stems, tokenize
from .configfile import check_id as _check_id
from .configfile import load_yaml_list as _load_yaml_list
from .errors import ConfigError

__all__ = ["AliasGroup", "Aliases", "load_aliases", "name_keys", "NO_ALIASES"]

Key = tuple[str, ...]


def name_keys(tokens: tuple[str, ...] | list[str]) -> set[Key]:
    """The keys under which a word sequence is looked up: its stems and, when it has Cyrillic, its
    lemmas (the stem of a Latin word stands in for its lemma)."""
    tokens = list(tokens)
    st = tuple(stems(tokens))
    keys = {st}
    if any(has_cyrillic(t) for t in tokens):
        lem = lemmas(tokens)
        keys.add(tuple(lem[i] if has_cyrillic(t) else st[i] for i, t in enumerate(tokens)))
    return keys


@dataclass(frozen=True)
class AliasGroup:
    id: str
    names: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class Aliases:
    """The alias groups of one configuration; hashable, so parsed queries can be cached per table."""

    groups: tuple[AliasGroup, ...] = ()
    _index: dict[Key, AliasGroup] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        index: dict[Key, AliasGroup] = {}
        for g in self.groups:
            for name in g.names:
                for k in name_keys(tokenize(name)):
                    index.setdefault(k, g)
        object.__setattr__(self, "_index", index)

    def __bool__(self) -> bool:
        return bool(self.groups)

    def group_for(self, tokens: tuple[str, ...] | list[str]) -> AliasGroup | None:
        """The group a folded word sequence belongs to, if any."""
        if not self._index or not tokens:
            return None
        for k in name_keys(tokens):
            g = self._index.get(k)
            if g is not None:
                return g
        return None

    def get(self, group_id: str) -> AliasGroup | None:
        return next((g for g in self.groups if g.id == group_id), None)


NO_ALIASES = Aliases()


def _entry_error(path: Path, i: int, entry: Any, fld: str, msg: str) -> ConfigError:
    label = f"entry {i}"
    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
        label += f" (id {entry['id']!r})"
    return ConfigError(f"{path}: {label}: field '{fld}': {msg}")


def load_aliases(config_dir: Path) -> Aliases:
    """Read and validate ``aliases.yaml`` (missing file: no aliases).

    Errors name the file, the entry and the field: an id that is not a slug, a name with no letters
    or digits or with a wildcard, a name that already belongs to another group (under any of its
    word forms), an unknown field."""
    path = Path(config_dir) / "aliases.yaml"
    if not path.exists():
        return NO_ALIASES
    entries = _load_yaml_list(path, "aliases")
    groups: list[AliasGroup] = []
    owner: dict[Key, tuple[int, str, str]] = {}
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: entry {i}: expected a mapping, got {type(entry).__name__}")
        unknown = set(entry) - {"id", "names", "description"}
        if unknown:
            raise _entry_error(path, i, entry, sorted(unknown)[0], "unknown field")
        gid = entry.get("id")
        if not isinstance(gid, str):
            raise _entry_error(path, i, entry, "id", "required, a string")
        try:
            _check_id(gid)
        except ValueError as exc:
            raise _entry_error(path, i, entry, "id", str(exc)) from None
        if any(g.id == gid for g in groups):
            raise _entry_error(path, i, entry, "id", "duplicate id")
        names = entry.get("names")
        if not isinstance(names, list) or len(names) < 2:
            raise _entry_error(path, i, entry, "names", "a list of at least two names")
        clean: list[str] = []
        for name in names:
            if not isinstance(name, str) or not tokenize(name):
                raise _entry_error(path, i, entry, "names", f"{name!r} has no letters or digits")
            if any(c in name for c in '*?"~^\\'):
                raise _entry_error(path, i, entry, "names",
                                   f"{name!r}: write names as plain words (no wildcards, quotes or operators)")
            for k in name_keys(tokenize(name)):
                prev = owner.get(k)
                if prev is not None and prev[1] != gid:
                    raise _entry_error(path, i, entry, "names",
                                       f"{name!r} is already a name of entry {prev[0]} (id {prev[1]!r}: "
                                       f"{prev[2]!r}); a name can belong to one group only")
                owner[k] = (i, gid, name)
            if name not in clean:
                clean.append(name)
        desc = entry.get("description", "")
        if not isinstance(desc, str):
            raise _entry_error(path, i, entry, "description", "must be a string")
        groups.append(AliasGroup(gid, tuple(clean), desc))
    return Aliases(tuple(groups))
