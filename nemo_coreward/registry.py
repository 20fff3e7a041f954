"""A name -> callable table, so configs pick a piece of maths by name.

Advantage estimators, KL estimators, loss aggregations and rewards all register here
under one signature per table; trainers look them up with ``get`` and never branch on a
name. An unknown name is a configuration mistake, so the error lists the valid names.
This module imports nothing heavy (no torch) because the reward package shares it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable[..., object])

__all__ = ["Registry", "check_name"]


def check_name(key: str, value: object, valid: Iterable[str]) -> None:
    """ValueError ``"<key> <value> unknown; valid: a, b"`` unless ``value`` is one of
    ``valid`` (a ``Registry``, whose names iterate sorted, or a tuple of choices): the one
    wording of a config key naming something that does not exist."""
    names = tuple(valid)
    if value not in names:
        raise ValueError(f"{key} {value!r} unknown; valid: {', '.join(names)}")


class Registry(Generic[F]):
    """Named callables of one kind; ``kind`` only makes error messages readable."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._table: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: ``@REG.register("grpo")`` adds the function under ``name``.

        The function is returned unchanged, so one function may be registered under
        several names (aliases) by stacking decorators. Registering a taken name raises:
        silently replacing a piece of maths would change results without a trace.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def decorator(fn: F) -> F:
            if name in self._table:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._table[name] = fn
            return fn

        return decorator

    def get(self, name: str) -> F:
        """The callable registered as ``name``; ValueError listing valid names if none."""
        try:
            return self._table[name]
        except (KeyError, TypeError):
            valid = ", ".join(self.names())
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def names(self) -> tuple[str, ...]:
        """Registered names, sorted, for error messages and config validation."""
        return tuple(sorted(self._table))

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
