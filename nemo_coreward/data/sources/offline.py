"""Sources that need no hub: CHAMP, DeepMind's mathematics_dataset, synthetic, local files.

CHAMP (``champ-dataset`` on PyPI, MIT): 270 competition problems with answers, shipped
inside the package as ``dataset_files/v0.json``; ``champ_dataset.load("v0")`` returns a
``Dataset`` whose ``problems`` map an identifier to a ``Problem`` with ``text``,
``answer`` and ``category``.

mathematics_dataset (``mathematics-dataset`` 1.0.1, 2019, Apache-2.0): DeepMind's generator
of school maths questions. Its last release imports two names that later libraries removed:
``sympy.solvers.diophantine.base_solution_linear`` (moved to
``sympy.solvers.diophantine.diophantine`` in sympy 1.7) and ``np.object`` (removed in
numpy 1.24). ``_import_mathematics_dataset`` re-exposes exactly those two names to the
package's own ``polynomials`` module before use; with them every one of its 381 module
generators runs (checked on Python 3.11, sympy 1.14, numpy 1.26).
"""
from __future__ import annotations

import importlib
import random
import sys
import types
from collections.abc import Sequence

from nemo_coreward.data.records import PairRecord, load_records
from nemo_coreward.data.sources.tables import SourceError

MATHEMATICS_REGIMES = ("train-easy", "train-medium", "train-hard", "train",
                       "interpolate", "extrapolate")
DEFAULT_MATHEMATICS_MODULES = ("arithmetic__add_or_sub", "arithmetic__mul",
                               "arithmetic__add_sub_multiple")


def load_champ(*, version: str = "v0") -> list[PairRecord]:
    try:
        import champ_dataset
    except ImportError:
        raise SourceError(
            "source 'champ' needs the champ-dataset package: pip install champ-dataset"
        ) from None
    dataset = champ_dataset.load(version)
    return [
        PairRecord(
            id=f"champ-{identifier}",
            question=problem.text,
            answer=(problem.answer or "").strip() or None,
            source="champ",
            meta={"category": problem.category, "version": version},
        )
        for identifier, problem in dataset.problems.items()
    ]


class _NumpyWithObject(types.ModuleType):
    """numpy as mathematics_dataset expects it: ``np.object`` is the builtin ``object``."""

    def __init__(self, numpy_module: types.ModuleType) -> None:
        super().__init__("numpy")
        self._numpy = numpy_module

    def __getattr__(self, name: str):
        return object if name == "object" else getattr(self._numpy, name)


def _import_mathematics_dataset():
    try:
        importlib.import_module("sympy.solvers.diophantine")
        diophantine_pkg = sys.modules["sympy.solvers.diophantine"]
        if not hasattr(diophantine_pkg, "base_solution_linear"):
            from sympy.solvers.diophantine.diophantine import base_solution_linear

            diophantine_pkg.base_solution_linear = base_solution_linear
        import numpy
        from mathematics_dataset.sample import polynomials

        if "object" not in vars(numpy) and not isinstance(polynomials.np, _NumpyWithObject):
            polynomials.np = _NumpyWithObject(numpy)
        from mathematics_dataset import generate_settings
        from mathematics_dataset.modules import modules
    except ImportError as exc:
        raise SourceError(
            "source 'mathematics' needs the mathematics-dataset package "
            f"(pip install mathematics-dataset): {exc}"
        ) from None
    return modules, generate_settings


def _entropy_fn(level: int, num_levels: int):
    """The generator's difficulty slice: level ``i`` of ``n`` takes the i-th n-th of range."""
    def modify(range_):
        low, high = range_
        width = high - low
        return (low + level / num_levels * width, low + (level + 1) / num_levels * width)
    return modify


def _flatten(tree, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}__{key}" if prefix else key
        flat.update(_flatten(value, name) if isinstance(value, dict) else {name: value})
    return flat


def mathematics_modules(regime: str = "train-easy") -> dict:
    """``{"arithmetic__add_or_sub": generator, ...}`` for one regime of the generator."""
    modules, _ = _import_mathematics_dataset()
    if regime not in MATHEMATICS_REGIMES:
        raise SourceError(f"unknown regime {regime!r}; valid: {', '.join(MATHEMATICS_REGIMES)}")
    if regime.startswith("train"):
        level = {"train": (0, 1), "train-easy": (0, 3), "train-medium": (1, 3),
                 "train-hard": (2, 3)}[regime]
        tree = modules.train(_entropy_fn(*level))
    else:
        tree = modules.test() if regime == "interpolate" else modules.test_extra()
    return _flatten(tree)


def load_mathematics(
    *, n: int = 100, modules: Sequence[str] = DEFAULT_MATHEMATICS_MODULES,
    regime: str = "train-easy", seed: int = 0,
) -> list[PairRecord]:
    """``n`` questions per named module, reproducible for ``seed``.

    Like the generator's own scripts, questions longer than its ``MAX_QUESTION_LENGTH`` or
    answers longer than ``MAX_ANSWER_LENGTH`` are dropped and redrawn. The global ``random``
    and ``numpy.random`` states are restored afterwards.
    """
    import numpy

    available = mathematics_modules(regime)
    _, settings = _import_mathematics_dataset()
    unknown = [m for m in modules if m not in available]
    if unknown:
        raise SourceError(
            f"unknown mathematics_dataset module {unknown[0]!r} for regime {regime!r}; "
            f"valid: {', '.join(available)}"
        )
    py_state, np_state = random.getstate(), numpy.random.get_state()
    out = []
    try:
        for m_index, name in enumerate(modules):
            random.seed(f"{seed}|{name}")
            numpy.random.seed((seed * 1_000_003 + m_index) % 2**32)
            for i in range(n):
                while True:
                    problem = available[name]()
                    question, answer = str(problem.question), str(problem.answer)
                    if (len(question) <= settings.MAX_QUESTION_LENGTH
                            and len(answer) <= settings.MAX_ANSWER_LENGTH):
                        break
                out.append(
                    PairRecord(
                        id=f"mathematics-{regime}-{name}-{seed}-{i:05d}",
                        question=question,
                        answer=answer,
                        source="mathematics",
                        meta={"module": name, "regime": regime, "seed": seed},
                    )
                )
    finally:
        random.setstate(py_state)
        numpy.random.set_state(np_state)
    return out


def load_synthetic(
    *, n: int = 256, families: Sequence[str] | None = None, levels: Sequence[int] = (1,),
    k: int = 1, seed: int = 0, split: str = "train",
) -> list[PairRecord]:
    from nemo_coreward.data import synthetic

    return synthetic.generate(n, families=tuple(families or synthetic.EASY_FAMILIES),
                              levels=tuple(levels), k=k, seed=seed, split=split)


def load_local(*, data_files) -> list[PairRecord]:
    """Pair-record files (JSONL or parquet in this project's schema), concatenated."""
    from nemo_coreward.data.sources.tables import expand_files

    out, seen = [], {}
    for path in expand_files(data_files):
        for rec in load_records(path):
            if rec.id in seen:
                raise SourceError(f"{path}: duplicate id {rec.id!r} (also in {seen[rec.id]})")
            seen[rec.id] = path
            out.append(rec)
    return out
