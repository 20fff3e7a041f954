"""The typed merge both trainers validate with: any dataclass, a prefix, a renames table."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from omegaconf import OmegaConf

from nemo_coreward.structured import ConfigError, merge, schema


@dataclass(frozen=True)
class Inner:
    """size: >= 1. name: named in its own errors as ``inner.name``."""

    size: int = 1
    name: str = "a"
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        if self.name == "bad":
            raise ValueError("inner.name: 'bad' is not allowed")
        object.__setattr__(self, "tags", tuple(self.tags))


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    rate: float = 0.5
    note: str | None = None

    def __post_init__(self) -> None:
        if self.rate > 1:
            raise ValueError("rate above 1 needs inner.size > 1")


def test_defaults_values_and_lists_reach_frozen_dataclasses():
    out = merge(Outer, {"inner": {"size": "3", "tags": ["x", "y"]}, "note": "hi"})
    assert out == Outer(inner=Inner(size=3, tags=("x", "y")), note="hi")
    assert merge(Outer, None) == Outer()
    assert merge(Outer, OmegaConf.create({"rate": 0.25})).rate == 0.25
    with pytest.raises(AttributeError):
        out.rate = 1.0  # type: ignore[misc]


def test_schema_is_writable_and_holds_the_defaults():
    base = schema(Outer)
    base.inner.size = 4
    assert OmegaConf.to_container(base) == {"inner": {"size": 4, "name": "a", "tags": []},
                                            "rate": 0.5, "note": None}


@pytest.mark.parametrize("data, prefix, message", [
    # unknown keys, listing the valid ones
    ({"inner": {"sise": 2}}, "", "config key 'inner.sise': Key 'sise' not in 'Inner' "
                                 "(valid: size, name, tags)"),
    ({"inner": {"sise": 2}}, "top", "config key 'top.inner.sise': Key 'sise' not in 'Inner'"),
    ({"outer": 1}, "top", "config key 'top.outer': Key 'outer' not in 'Outer' "
                          "(valid: inner, rate, note)"),
    # values of the wrong type
    ({"inner": {"size": "big"}}, "top", "config key 'top.inner.size': Value 'big' of type "
                                        "'str' could not be converted to Integer"),
    ({"inner": 3}, "top", "config key 'top.inner': a section of keys (size, name, tags) "
                          "expected, got 3"),
    ({"inner": ["x"]}, "", "config key 'inner': a section"),
    # a section's own check, with the section's path in front
    ({"inner": {"size": 0}}, "top", "config key 'top.inner': size must be >= 1, got 0"),
    ({"inner": {"name": "bad"}}, "top", "config: top.inner.name: 'bad' is not allowed"),
    ({"rate": 2.0}, "", "config: rate above 1 needs inner.size > 1"),
    ({"rate": 2.0}, "top", "config key 'top': rate above 1 needs inner.size > 1"),
])
def test_errors_name_the_full_path(data, prefix, message):
    with pytest.raises(ConfigError) as err:
        merge(Outer, data, prefix=prefix)
    assert message in str(err.value)


def test_renamed_keys_fail_first_saying_the_new_name():
    renames = {"inner.count": "inner.size", "speed": "rate"}
    with pytest.raises(ConfigError, match=r"^config key 'inner\.count' was renamed: use "
                                          r"inner\.size$"):
        merge(Outer, {"inner": {"count": 2}}, renames=renames)
    with pytest.raises(ConfigError, match=r"config key 'top\.speed' was renamed: use top\.rate"):
        merge(Outer, OmegaConf.create({"speed": 1}), prefix="top", renames=renames)
    assert merge(Outer, {"inner": {"size": 2}}, renames=renames).inner.size == 2
