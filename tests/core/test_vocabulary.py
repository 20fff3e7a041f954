"""One vocabulary for both trainers: a setting is spelled the same in the embedded config
and in the NeMo-Aligner ``coreward:`` section, with the same dataclass behind it."""
from __future__ import annotations

import dataclasses

import pytest

from nemo_coreward.aligner.config import CoRewardConfig
from nemo_coreward.embedded.config import RENAMED, TrainConfig
from nemo_coreward.rl import AdvantageSection, KLSection, LossSection, TeacherConfig

SHARED = {"advantage": AdvantageSection, "kl": KLSection, "loss": LossSection,
          "teacher": TeacherConfig}
# What only one trainer does (docs/embedded.md, docs/nemo-aligner.md).
ONLY_EMBEDDED = {"loss": {"entropy_coef"}}
ONLY_ALIGNER = {"loss": {"ppo_clip", "truncated"}, "teacher": {"keep_checkpoints"}}


def _section(cls: type, name: str) -> type:
    (f,) = [f for f in dataclasses.fields(cls) if f.name == name]
    return type(f.default_factory())  # type: ignore[misc]


def _keys(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("name", sorted(SHARED))
def test_a_shared_section_has_the_same_keys_in_both_trainers(name):
    embedded, aligner = _section(TrainConfig, name), _section(CoRewardConfig, name)
    assert issubclass(embedded, SHARED[name]) and issubclass(aligner, SHARED[name])
    assert _keys(embedded) - _keys(SHARED[name]) == ONLY_EMBEDDED.get(name, set())
    assert _keys(aligner) - _keys(SHARED[name]) == ONLY_ALIGNER.get(name, set())


@pytest.mark.parametrize("name", sorted(SHARED))
def test_a_shared_section_has_the_same_defaults_in_both_trainers(name):
    embedded, aligner = _section(TrainConfig, name)(), _section(CoRewardConfig, name)()
    for key in _keys(SHARED[name]):
        assert getattr(embedded, key) == getattr(aligner, key), f"{name}.{key}"


def test_the_old_spellings_point_into_the_shared_vocabulary():
    for new in RENAMED.values():
        section, key = new.split(".")
        assert section in SHARED and key in _keys(SHARED[section]), new
