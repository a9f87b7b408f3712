"""Reading run configurations: presets and YAML files, their sections, command-line overrides.

A file holds a ``pretrain:`` and a ``finetune:`` section (one name for the whole recipe), or is one
section; ``base: NAME`` makes it inherit a preset's (or another file's) sections, listing only what
differs. Overrides are checked key by key against the dataclass fields.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from eegfm.core.config import Config, ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
KINDS = ("pretrain", "finetune")
# A file's key naming the preset or file it inherits from: it lists only what differs.
BASE = "base"


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 demands ``1.0e-4``)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML ({err})") from err


def list_config_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str | os.PathLike[str]) -> Path:
    """The file of a preset name, or the given path; either must exist."""
    text = os.fspath(name_or_path)
    looks_like_path = isinstance(name_or_path, os.PathLike) or "/" in text or text.endswith((".yaml", ".yml"))
    path = Path(text) if looks_like_path else CONFIG_DIR / f"{text}.yaml"
    if not path.is_file():
        presets = ", ".join(repr(p) for p in list_config_presets())
        raise ConfigError(
            f"config: expected a preset ({presets}) or the path of a YAML file; got {text!r}"
            + (" (no such file)" if looks_like_path else "")
        )
    return path


def read_section(
    path: Path, kind: str, cls: type[Config] | None = None, _within: tuple[Path, ...] = ()
) -> dict[str, Any]:
    """The ``kind`` section of the YAML file ``path`` (the whole file if it has no sections), over the
    same section of the file its ``base:`` names (:func:`inherit`; ``cls``, the section's dataclass,
    says which keys are sections that merge)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from err
    data = parse_yaml(text, str(path))
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level; got {type(data).__name__}")
    data = dict(data)
    base = data.pop(BASE, None)
    if base is not None:
        base_path = _base_path(base, path)
        if base_path.resolve() in (*_within, path.resolve()):
            raise ConfigError(f"{path}: base {base!r} inherits from this file again (a cycle)")
        below = read_section(base_path, kind, cls, (*_within, path.resolve()))
        return inherit(below, _own_section(data, path, kind, optional=True), cls)
    return _own_section(data, path, kind)


def _base_path(base: Any, path: Path) -> Path:
    """A ``base:`` value: a preset name, or a YAML file's path relative to the file that names it."""
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base: expected a preset name or a YAML file's path; got {base!r}")
    if "/" in base or base.endswith((".yaml", ".yml")):
        return resolve_config_path(path.parent / base)
    return resolve_config_path(base)


def _own_section(data: dict[str, Any], path: Path, kind: str, optional: bool = False) -> dict[str, Any]:
    if not any(k in KINDS for k in data):
        return data
    if unknown := sorted(str(k) for k in data if k not in KINDS):
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; allowed: {', '.join(KINDS)}, {BASE}")
    if kind not in data:
        if optional:  # the base's section as it is
            return {}
        raise ConfigError(f"{path}: has no {kind!r} section (sections: {', '.join(map(str, data))})")
    section = data[kind] or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{path}: section {kind!r} must be a mapping; got {type(section).__name__}")
    return dict(section)


def inherit(base: Mapping[str, Any], own: Mapping[str, Any], cls: type[Config] | None) -> dict[str, Any]:
    """``own`` over ``base``: a key naming a section of ``cls`` (a Config field, such as ``loader``
    or ``optim``) merges key by key; any other value, a mapping such as ``model_overrides`` or
    ``augment`` included, replaces the base's whole (``{}`` clears it)."""
    merged = dict(base)
    hints = typing.get_type_hints(cls) if cls is not None else {}
    for key, value in own.items():
        section = hints.get(key)
        is_section = isinstance(section, type) and issubclass(section, Config)
        if is_section and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = inherit(merged[key], value, section)
        else:
            merged[key] = value
    return merged


def dotted(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"a.b": value}``; an empty mapping is a value of its own."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def parse_overrides(overrides: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """``["optim.lr=3e-4", "loader.augment={}"]`` or a (dotted or nested) dict -> ``{dotted: value}``."""
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dotted(overrides)
    if isinstance(overrides, str):
        overrides = [overrides]
    parsed = {}
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override: expected 'key.sub=value'; got {item!r}")
        parsed[key.strip()] = parse_yaml(value, f"override {item!r}")
    return parsed


def apply_override(data: dict[str, Any], cls: type[Config], dotted: str, value: Any) -> None:
    """Set ``data[a][b]... = value`` after checking every key against the dataclass fields."""
    parts = dotted.split(".")
    target, section = data, cls
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if section is not None:
            fields = {f.name for f in dataclasses.fields(section) if f.init}
            if part not in fields:
                where = ".".join(parts[:depth]) or section.__name__
                raise ConfigError(
                    f"override {dotted!r}: unknown key {part!r} in {where}; allowed: {', '.join(sorted(fields))}"
                )
            hint = typing.get_type_hints(section)[part]
            next_section = hint if isinstance(hint, type) and issubclass(hint, Config) else None
            if not last and next_section is None and typing.get_origin(hint) is not dict:
                raise ConfigError(f"override {dotted!r}: {'.'.join(parts[: depth + 1])} is a value, not a section")
            section = next_section
        if last:
            target[part] = value
        else:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
