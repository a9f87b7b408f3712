"""The configuration pattern shared by every eegfm stage: small dataclasses that validate themselves
and load from YAML or a dict, with errors that name the parameter, what is allowed and what came."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import numbers
import os
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml


class ConfigError(ValueError):
    """A configuration value is not allowed; the message names the field and the allowed values."""


def check_option(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{name}: expected one of {', '.join(repr(a) for a in allowed)}; got {value!r}")
    return value


def check_int(
    name: str, value: Any, low: int, high: float | None = None, *, optional: bool = False, whole_float: bool = False
) -> Any:
    """``value`` if it is an integer (numpy's too, not a bool) >= ``low`` (and <= ``high``, which
    may be ``math.inf``), or None with ``optional``. ``whole_float``: YAML's ``1e5`` counts."""
    if optional and value is None:
        return value
    if whole_float and isinstance(value, float) and value.is_integer():
        value = int(value)
    not_int = isinstance(value, bool) or not isinstance(value, numbers.Integral)
    if high is None:
        if not_int or value < low:
            raise ConfigError(f"{name}: expected an integer >= {low}{' or None' if optional else ''}; got {value!r}")
    elif not_int:
        raise ConfigError(f"{name}: expected an integer; got {value!r}")
    elif not low <= value <= high:
        raise ConfigError(f"{name}: expected an integer in [{low}, {high}]; got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true or false; got {value!r}")
    return value


def check_mapping(name: str, value: Any) -> dict[str, Any]:
    """A copy of ``value`` as a dict, if it is a mapping with string keys."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{name}: expected a mapping with string keys; got {value!r}")
    return dict(value)


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    what: str = "a value",
) -> float:
    """``value`` if it is a number within the bounds (``None``: unbounded); ``what`` is what the
    message calls an allowed one ("a value in [0, 1]", or a family's own word)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: expected a number; got {value!r}")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high or value != value:  # NaN compares false with every bound
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        lb, hb = ("[" if low_inclusive else "("), ("]" if high_inclusive else ")")
        raise ConfigError(f"{name}: expected {what} in {lb}{lo}, {hi}{hb}; got {value!r}")
    return value


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None, **options: Any) -> float:
    """``check_range``, the value returned as a float (YAML may give an int)."""
    return float(check_range(name, value, low, high, **options))


def user_path(text: str) -> str:
    """A command-line path with a leading ``~`` expanded (the shell leaves ``--output=~/x`` alone);
    object-store URLs come back as given."""
    return text if "://" in text else os.path.expanduser(text)


def user_file_path(text: str) -> Path:
    return Path(user_path(text))


def named_pattern(text: str) -> tuple[str, str]:
    """An argparse type: ``NAME=PATTERN`` (a corpus by a name of the user's choice and its files: a
    file, folder or glob) as ``(NAME, PATTERN)``."""
    name, sep, pattern = text.partition("=")
    if not sep or not name or not pattern:
        raise argparse.ArgumentTypeError(f"expected NAME=PATTERN (a file, folder or glob); got {text!r}")
    return name, user_path(pattern)


def add_corpus_argument(parser: argparse.ArgumentParser) -> None:
    """``--corpus NAME=PATTERN``, required and repeatable (:func:`named_pattern`): the corpora of a
    command that reports on recordings under the names the user gives them, never their paths."""
    parser.add_argument(
        "--corpus",
        type=named_pattern,
        action="append",
        required=True,
        metavar="NAME=PATTERN",
        help="a corpus by a name of your choice and its recordings: a file, folder or glob (repeatable)",
    )


T = TypeVar("T", bound="Config")


@dataclasses.dataclass
class Config:
    """Base class: subclasses are dataclasses that validate in ``validate``."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError for any value that is not allowed."""

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__}: expected a mapping of fields; got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}"
            )
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in data.items():
            hint = hints.get(key)
            if isinstance(hint, type) and issubclass(hint, Config) and isinstance(value, Mapping):
                value = hint.from_dict(value)
            elif isinstance(value, list) and typing.get_origin(hint) is tuple:
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls: type[T], path: str | Path) -> T:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from err
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)

    def with_settings(self: T, settings: Mapping[str, Any]) -> T:
        """A copy with each setting applied in order, then validated once: ``name`` replaces a
        field, ``section.name`` a field of a Config section, ``mapping.key`` one key of a dict field."""
        fields: dict[str, Any] = {}
        for key, value in settings.items():
            head, _, rest = key.partition(".")
            current = fields.get(head, getattr(self, head))
            if not rest:
                fields[head] = value
            elif isinstance(current, Config):
                fields[head] = current.with_settings({rest: value})
            elif isinstance(current, dict):
                fields[head] = {**current, rest: value}
            else:
                raise ConfigError(f"{key}: {head} is a value, not a section")
        return dataclasses.replace(self, **fields)

    def config_hash(self) -> str:
        """A stable short hash of the configuration, for provenance fields."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
