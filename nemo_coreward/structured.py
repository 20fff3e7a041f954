"""A config (a plain mapping or an OmegaConf node) checked against frozen dataclasses.

Both trainers validate their configuration here: the embedded trainer its whole tree
(``embedded.config.validate``), the NeMo-Aligner trainer its ``coreward:`` section
(``aligner.config.CoRewardConfig.from_mapping``, with ``prefix="coreward"``). Three checks,
each failing with a ``ConfigError`` that names the key's full dotted path:

1. renamed keys, looked up first in the caller's table of old -> new spellings:
   ``config key 'loss.kl_coef' was renamed: use kl.coef``;
2. OmegaConf's structured-config merge: an unknown or misspelt key, or a value of the
   wrong type: ``config key 'coreward.kl.typ': Key 'typ' not in 'KLSection' (valid: ...)``;
3. the dataclasses are then built from the leaves up, so a section's ``__post_init__``
   range and name checks are reported with that section's path: a message that names its
   key as ``section.key`` (or ``ClassName.key``) gets the full path in front
   (``config: coreward.kl.type 'k9' unknown; ...``), any other gets
   ``config key 'coreward.server': ...``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf, ValueNode
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

T = TypeVar("T")

__all__ = ["ConfigError", "merge", "refuse_renamed", "schema"]


class ConfigError(ValueError):
    """A configuration mistake; the message names the key by its full dotted path."""


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _unfreeze(node: Any) -> None:
    """Structured configs of frozen dataclasses are read-only node by node; the merge with
    YAML must write into them (the dataclasses stay frozen once built)."""
    node._set_flag("readonly", None)
    if isinstance(node, DictConfig):
        for key in node.keys():
            _unfreeze(node._get_node(key))
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            _unfreeze(node._get_node(i))


def schema(cls: type) -> DictConfig:
    """The writable structured config of dataclass ``cls`` with its defaults."""
    base = OmegaConf.structured(cls)
    _unfreeze(base)
    return base


def refuse_renamed(keys: Iterable[str], renames: Mapping[str, str], prefix: str = "") -> None:
    """``ConfigError`` for the first of ``keys`` (dotted, relative to ``prefix``) that
    ``renames`` lists as an old spelling."""
    for key in keys:
        if key in renames:
            raise ConfigError(f"config key '{_join(prefix, key)}' was renamed: "
                              f"use {_join(prefix, renames[key])}")


def _present(data: Any, dotted: str) -> bool:
    node = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node._get_node(part) if isinstance(node, DictConfig) else node[part]
    return True


def _check_sections(base: DictConfig, data: Any, relative: str, prefix: str) -> None:
    """A section given a value that is no mapping (``kl: 0.01``): OmegaConf's merge error
    names no key, so it is found here."""
    for key in list(data.keys()):
        node = base._get_node(key) if key in base else None
        if not isinstance(node, DictConfig) or OmegaConf.get_type(node) in (None, dict):
            continue
        value = data._get_node(key) if isinstance(data, DictConfig) else data[key]
        if isinstance(value, Mapping):
            _check_sections(node, value, _join(relative, str(key)), prefix)
        elif value is not None:
            shown = value._value() if isinstance(value, ValueNode) else value
            raise ConfigError(f"config key '{_join(prefix, relative, str(key))}': a section "
                              f"of keys ({', '.join(map(str, node.keys()))}) expected, "
                              f"got {shown!r}")


def _unknown_key_hint(base: DictConfig, key: str) -> str:
    parent = key.rpartition(".")[0]
    node = OmegaConf.select(base, parent) if parent else base
    if isinstance(node, DictConfig):
        return f" (valid: {', '.join(str(k) for k in node.keys())})"
    return ""


def _names_itself(message: str, relative: str, cls: type) -> str | None:
    """``message`` with its leading key rewritten as ``relative.key``, when it starts with
    the section's own name or one of its classes' names; else None."""
    for name in (relative, *(c.__name__ for c in cls.__mro__)):
        for sep in (".", ":"):
            if name and message.startswith(name + sep):
                return relative + message[len(name):]
    return None


def _build(node: DictConfig, relative: str, prefix: str) -> Any:
    cls = OmegaConf.get_type(node)
    assert cls is not None and dataclasses.is_dataclass(cls), relative
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        value = node[f.name]
        if isinstance(value, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(value)):
            kwargs[f.name] = _build(value, _join(relative, f.name), prefix)
        elif isinstance(value, (DictConfig, ListConfig)):
            kwargs[f.name] = OmegaConf.to_object(value)
        else:
            kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except ValueError as err:
        message = str(err)
        named = _names_itself(message, relative, cls) if relative else None
        if named is not None:
            raise ConfigError(f"config: {_join(prefix, named)}") from None
        where = _join(prefix, relative)
        raise ConfigError(f"config key '{where}': {message}" if where
                          else f"config: {message}") from None


def merge(cls: type[T], data: Mapping[str, Any] | DictConfig | None, prefix: str = "",
          renames: Mapping[str, str] | None = None) -> T:
    """``data`` checked against dataclass ``cls`` -> a ``cls`` instance, or ``ConfigError``.

    ``prefix`` is where ``data`` sits in the whole config (``"coreward"``), put in front
    of every key an error names. ``renames`` maps old dotted keys (relative to ``prefix``)
    to their new spelling; an old key present in ``data`` fails first, saying which to use.
    """
    data = {} if data is None else data
    if renames:
        refuse_renamed([old for old in renames if _present(data, old)], renames, prefix)
    base = schema(cls)
    if isinstance(data, Mapping):
        _check_sections(base, data, "", prefix)
    try:
        merged = OmegaConf.merge(base, data)
        return _build(merged, "", prefix)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        message = str(getattr(err, "msg", None) or err).strip().splitlines()[0]
        if isinstance(err, ConfigKeyError):
            message += _unknown_key_hint(base, key)
        raise ConfigError(f"config key '{_join(prefix, key) or '?'}': {message}") from None
