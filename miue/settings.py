"""Checked settings for frozen config dataclasses (attacks, defenses, recipes): types, ranges, stable addresses.

A config field is declared with :func:`setting`, which attaches what the value may be (its range or
choices) and whether the field was *added* after records were first written. :func:`check` validates
every field at construction with one message naming the setting, its value and what is allowed.
:func:`address` turns a config into the dict that is hashed into a run's address: a field declared
``added=True`` is left out while it holds its default, so adding a setting with a default never moves
the address of an existing record (the spine issue's "run addresses survive growth").
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from dataclasses import field


class SettingError(ValueError):
    """A setting has the wrong type or is out of range."""


def setting(default, *, low=None, high=None, low_open: bool = False, high_open: bool = False, choices=None,
            added: bool = False, doc: str = ""):
    """A dataclass field with a checked range (``low``/``high``, open or closed ends) or ``choices``.

    ``added=True`` marks a field introduced after records exist: left out of the run address at its default.
    """
    meta = {"low": low, "high": high, "low_open": low_open, "high_open": high_open, "choices": choices,
            "added": added, "doc": doc}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple (immutable) as a setting's default")
    return field(default=default, metadata={"setting": meta})


def _allowed(meta: dict) -> str:
    if meta.get("choices") is not None:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    lo, hi = meta.get("low"), meta.get("high")
    left = "(" if meta.get("low_open") or lo is None else "["  # an infinite end is never included
    right = ")" if meta.get("high_open") or hi is None else "]"
    if lo is None and hi is None:
        return ""
    return f"in {left}{'-∞' if lo is None else f'{lo:g}'}, {'∞' if hi is None else f'{hi:g}'}{right}"


def coerce(owner: str, name: str, value, hint, allowed: str = ""):
    """``value`` as ``hint`` (int, float, str, bool, Optional[...], Tuple[...], Dict[str, ...]) or a SettingError.

    ``allowed`` (the setting's range or choices) is added to the message."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union and type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    kind = getattr(hint, "__name__", str(hint))

    def bad():
        extra = f" {allowed}" if allowed else ""
        return SettingError(f"{owner} setting {name!r} must be {kind}{extra}, "
                            f"got {value!r} ({type(value).__name__})")

    if hint is bool:
        import numpy as np
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise bad()
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise bad()
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise bad()
        value = float(value)
        if math.isnan(value):
            raise SettingError(f"{owner} setting {name!r} is NaN; it must be a number{' ' + allowed if allowed else ''}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise bad()
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad()
        item = args[0] if args else object
        return tuple(coerce(owner, f"{name}[{i}]", v, item) for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise bad()
        item = args[1] if len(args) == 2 else object
        return {k: coerce(owner, f"{name}[{k!r}]", v, item) for k, v in value.items()}
    return value


def check(obj) -> None:
    """Validate and normalise every field of the frozen dataclass ``obj`` in place (call from __post_init__)."""
    owner = getattr(obj, "owner_name", None) or type(obj).__name__
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        meta = f.metadata.get("setting")
        value = coerce(owner, f.name, getattr(obj, f.name), hints.get(f.name, object), _allowed(meta) if meta else "")
        if meta and value is not None:
            if meta["choices"] is not None and value not in meta["choices"]:
                raise SettingError(f"{owner} setting {f.name!r} = {value!r} is not allowed; it must be "
                                   f"{_allowed(meta)}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                lo, hi = meta["low"], meta["high"]
                below = lo is not None and (value <= lo if meta["low_open"] else value < lo)
                above = hi is not None and (value >= hi if meta["high_open"] else value > hi)
                if below or above or (isinstance(value, float) and math.isinf(value)):
                    raise SettingError(f"{owner} setting {f.name!r} = {value!r} is out of range; it must be "
                                       f"{_allowed(meta)}")
        object.__setattr__(obj, f.name, value)


def configure(owner: str, config_cls: type, config=None, overrides: dict | None = None):
    """``config`` (an instance of ``config_cls``, or its defaults) with ``overrides`` applied and checked: the
    constructor of every attack and defense. Unknown names get one message listing the settings."""
    config = config if config is not None else config_cls()
    if not isinstance(config, config_cls):
        raise TypeError(f"{owner} takes a {config_cls.__name__}, got {type(config).__name__}")
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(overrides or {}) - names
    if unknown:
        raise ValueError(f"{owner} has no setting(s) {sorted(unknown)}; its settings are {sorted(names)}")
    return dataclasses.replace(config, **(overrides or {}))


def _plain(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return address(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def address(obj) -> dict:
    """The config as a plain dict for hashing and records, without ``added`` fields at their default."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        meta = f.metadata.get("setting") or {}
        if meta.get("added") and value == f.default:
            continue
        out[f.name] = _plain(value)
    return out


def describe(cls) -> list[dict]:
    """One row per setting of a config class: name, default, allowed values, doc (for tables and --help)."""
    rows = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("setting") or {}
        rows.append({"setting": f.name, "default": f.default, "allowed": _allowed(meta) if meta else "",
                     "doc": meta.get("doc", "")})
    return rows
