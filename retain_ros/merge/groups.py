"""Parameter groups: which parameters are the vision encoder, the language backbone and the action expert.

A group preset is a YAML file of ordered (group, regex) rules; the first rule whose regex matches a parameter name
(`re.search`) decides its group. Presets ship in config/groups/ for the reference VLA and the common VLA families; a
user can pass their own YAML file. Every parameter must land in a group, or in the preset's explicit `default`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from retain_ros.errors import ConfigError
from retain_ros.paths import config_dir

ALL_GROUP = "all"
AUTO = "auto"


@dataclass(frozen=True)
class GroupPreset:
    """Ordered regex rules that assign each parameter name to a group."""

    name: str
    groups: tuple[str, ...]
    rules: tuple[tuple[str, re.Pattern], ...]
    default: str | None = None
    description: str = ""
    source: str = "builtin"

    def group_of(self, name: str) -> str | None:
        """Return the group of one parameter name, or None when no rule matches and there is no default."""
        for group, pattern in self.rules:
            if pattern.search(name):
                return group
        return self.default

    def assign(self, names: Iterable[str]) -> GroupAssignment:
        """Assign every name; unmatched names are collected, not raised (the dry run reports them)."""
        group_of, unmatched = {}, []
        for name in names:
            group = self.group_of(name)
            if group is None:
                unmatched.append(name)
            else:
                group_of[name] = group
        return GroupAssignment(self, group_of, unmatched)


@dataclass
class GroupAssignment:
    """The outcome of applying a preset to a checkpoint's names."""

    preset: GroupPreset
    group_of: dict[str, str]
    unmatched: list[str] = field(default_factory=list)

    def names_in(self, group: str) -> list[str]:
        return [n for n, g in self.group_of.items() if g == group]

    def require_complete(self) -> None:
        """Raise if some names matched no rule.

        Raises:
            ConfigError: lists the unmatched names and how to fix the preset.
        """
        if self.unmatched:
            shown = "\n  ".join(self.unmatched[:20])
            more = f"\n  ... and {len(self.unmatched) - 20} more" if len(self.unmatched) > 20 else ""
            raise ConfigError(f"{len(self.unmatched)} parameter(s) match no rule of group preset "
                              f"'{self.preset.name}':\n  {shown}{more}\nFix: pick the preset for this model "
                              "(--groups), or add rules or a `default:` group to your preset YAML "
                              "(see --dry-run for the per-group counts).")


def builtin_presets_dir() -> Path:
    return config_dir() / "groups"


def builtin_preset_names() -> list[str]:
    """Names of the presets shipped in config/groups/ (plus 'all', one group for everything)."""
    return sorted([p.stem for p in builtin_presets_dir().glob("*.yaml")] + [ALL_GROUP])


def all_in_one_preset() -> GroupPreset:
    """The trivial preset: every parameter in one group (a plain uniform merge)."""
    return GroupPreset(ALL_GROUP, (ALL_GROUP,), (), default=ALL_GROUP, description="every parameter in one group")


def load_preset(name_or_path: str) -> GroupPreset:
    """Load a shipped preset by name, or a user YAML file by path.

    Raises:
        ConfigError: unknown name (lists the known ones and the closest), unreadable or malformed YAML.
    """
    if name_or_path == ALL_GROUP:
        return all_in_one_preset()
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(f"group preset file not found: {candidate}")
        return _parse_preset(candidate.stem, candidate.read_text(), source=str(candidate))
    path = builtin_presets_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        known = builtin_preset_names()
        close = difflib.get_close_matches(name_or_path, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown group preset '{name_or_path}'. Known presets: {', '.join(known)}, or a path to a "
                          f"YAML file.{hint}")
    return _parse_preset(name_or_path, path.read_text(), source=f"builtin:{path.name}")


def _parse_preset(name: str, text: str, source: str) -> GroupPreset:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"group preset {source}: invalid YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise ConfigError(f"group preset {source}: expected a mapping with a `rules:` list of [group, regex] pairs")
    rules = []
    for i, rule in enumerate(data["rules"]):
        if not (isinstance(rule, (list, tuple)) and len(rule) == 2 and all(isinstance(x, str) for x in rule)):
            raise ConfigError(f"group preset {source}: rule {i} is {rule!r}; each rule is [group, regex]")
        try:
            rules.append((rule[0], re.compile(rule[1])))
        except re.error as exc:
            raise ConfigError(f"group preset {source}: rule {i} has an invalid regex {rule[1]!r} ({exc})") from None
    default = data.get("default")
    listed = list(data.get("groups") or [])
    groups = tuple(dict.fromkeys(listed + [g for g, _ in rules] + ([default] if default else [])))
    return GroupPreset(name, groups, tuple(rules), default, str(data.get("description", "")), source)


def resolve_preset(spec: str, names: Iterable[str]) -> GroupPreset:
    """Turn --groups into a preset. 'auto' picks the shipped preset that covers every name, else 'all'."""
    if spec != AUTO:
        return load_preset(spec)
    names = list(names)
    for preset_name in builtin_preset_names():
        if preset_name == ALL_GROUP:
            continue
        preset = load_preset(preset_name)
        if preset.default is None and not preset.assign(names).unmatched:
            return preset
    return all_in_one_preset()
