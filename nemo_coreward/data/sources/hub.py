"""Loaders for the maths sets that live on the Hugging Face hub.

Each takes the hub id (a common one by default, overridable), a split and, instead of the
hub, ``data_files``: local parquet/JSONL files with the same columns. Column names and
answer conventions are those of the published sets:

- MATH (Hendrycks et al.): ``problem``, ``solution``, ``level``, ``type``; the answer is
  the last ``\\boxed{}`` of the solution. 7,500 train / 5,000 test. Default id
  ``DigitalLearningGmbH/MATH-lighteval`` (the copy the Co-Reward code prepares);
  ``EleutherAI/hendrycks_math`` (one config per subject) and the original release's folder
  layout (``MATH/train/<subject>/<n>.json``) are read too.
- MATH500: ``problem``, ``answer``, ``level``, ``subject``, ``unique_id`` (split ``test``).
- GSM8K: ``question``, ``answer``; the final answer follows ``####`` (commas removed).
- AMC / AIME: ``problem``, ``answer`` (``Problem``/``Answer`` accepted too).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nemo_coreward.data.records import PairRecord
from nemo_coreward.data.sources.tables import SourceError, answer_text, column, load_rows

MATH_HUB_ID = "DigitalLearningGmbH/MATH-lighteval"
HENDRYCKS_HUB_ID = "EleutherAI/hendrycks_math"
HENDRYCKS_CONFIGS = (
    "algebra", "counting_and_probability", "geometry", "intermediate_algebra",
    "number_theory", "prealgebra", "precalculus",
)
MATH500_HUB_ID = "HuggingFaceH4/MATH-500"
GSM8K_HUB_ID = "openai/gsm8k"
AMC_HUB_ID = "AI-MO/aimo-validation-amc"
AIME_HUB_ID = "AI-MO/aimo-validation-aime"

QUESTION_COLUMNS = ("problem", "Problem", "question", "Question")
ANSWER_COLUMNS = ("answer", "Answer")
ID_COLUMNS = ("id", "ID", "unique_id")


def _boxed_answer(solution: str) -> str | None:
    from nemo_coreward.answers.extract import last_boxed

    answer = last_boxed(solution)
    return answer.strip() if answer and answer.strip() else None


def _math_record(row: dict[str, Any], rid: str, split: str, where: str) -> PairRecord:
    problem = column(row, ("problem",), where=where)
    solution = column(row, ("solution",), where=where)
    return PairRecord(
        id=rid,
        question=problem,
        answer=_boxed_answer(solution),
        source="math",
        meta={"level": row.get("level"), "type": row.get("type"), "split": split},
    )


def _raw_math_folder(root: Path, split: str) -> list[Path] | None:
    """The per-problem JSON files of the original release, or None if ``root`` is not one."""
    split_dir = root / split
    if not split_dir.is_dir():
        return None
    files = sorted(split_dir.glob("*/*.json"), key=lambda p: (p.parent.name, _natural(p.stem)))
    return files or None


def _natural(stem: str) -> tuple[int, str]:
    return (int(stem), "") if stem.isdigit() else (0, stem)


def load_math(
    *, split: str = "train", data_files=None, hub_id: str = MATH_HUB_ID,
    config: str | None = None, cache_dir: str | None = None,
) -> list[PairRecord]:
    folder = data_files[0] if isinstance(data_files, (list, tuple)) and len(data_files) == 1 \
        else data_files
    if isinstance(folder, (str, Path)) and Path(folder).is_dir():
        files = _raw_math_folder(Path(folder), split)
        if files is not None:
            out = []
            for path in files:
                try:
                    row = json.loads(path.read_text(encoding="utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise SourceError(f"{path}: not a MATH problem file ({exc}); fix or "
                                      "remove it") from None
                rid = f"math-{split}-{path.parent.name}-{path.stem}"
                out.append(_math_record(row, rid, split, where=str(path)))
            return out
    if data_files is None and hub_id == HENDRYCKS_HUB_ID and config is None:
        configs: Sequence[str | None] = HENDRYCKS_CONFIGS
    else:
        configs = (config,)
    out = []
    for cfg in configs:
        rows = load_rows(hub_id, split=split, config=cfg, data_files=data_files,
                         cache_dir=cache_dir)
        for row in rows:
            where = f"math {hub_id if data_files is None else data_files} row {len(out) + 1}"
            out.append(_math_record(row, f"math-{split}-{len(out):05d}", split, where))
    return out


def load_math500(
    *, split: str = "test", data_files=None, hub_id: str = MATH500_HUB_ID,
    config: str | None = None, cache_dir: str | None = None,
) -> list[PairRecord]:
    out = []
    for i, row in enumerate(load_rows(hub_id, split=split, config=config,
                                      data_files=data_files, cache_dir=cache_dir)):
        where = f"math500 row {i + 1}"
        uid = row.get("unique_id") or f"{i:03d}"
        out.append(
            PairRecord(
                id=f"math500-{uid}",
                question=column(row, ("problem",), where=where),
                answer=answer_text(column(row, ("answer",), where=where)),
                source="math500",
                meta={"level": row.get("level"), "subject": row.get("subject"), "split": split},
            )
        )
    return out


def gsm8k_answer(solution: str, where: str = "gsm8k") -> str:
    """The number after the last ``####`` of a GSM8K solution, commas removed."""
    final = solution.rsplit("####", 1)[1].strip().replace(",", "") if "####" in solution else ""
    if not final:
        raise SourceError(f"{where}: answer has no final '#### <number>' line")
    return final


def load_gsm8k(
    *, split: str = "train", data_files=None, hub_id: str = GSM8K_HUB_ID,
    config: str | None = "main", cache_dir: str | None = None,
) -> list[PairRecord]:
    out = []
    for i, row in enumerate(load_rows(hub_id, split=split, config=config,
                                      data_files=data_files, cache_dir=cache_dir)):
        where = f"gsm8k row {i + 1}"
        out.append(
            PairRecord(
                id=f"gsm8k-{split}-{i:05d}",
                question=column(row, ("question",), where=where),
                answer=gsm8k_answer(column(row, ("answer",), where=where), where),
                source="gsm8k",
                meta={"split": split},
            )
        )
    return out


def load_problem_answer(
    name: str, *, hub_id: str, split: str = "train", data_files=None,
    config: str | None = None, cache_dir: str | None = None,
    question_column: str | None = None, answer_column: str | None = None,
) -> list[PairRecord]:
    """Any table with a problem and an answer column (AMC, AIME and look-alikes)."""
    qcols = (question_column,) if question_column else QUESTION_COLUMNS
    acols = (answer_column,) if answer_column else ANSWER_COLUMNS
    out, seen = [], set()
    for i, row in enumerate(load_rows(hub_id, split=split, config=config,
                                      data_files=data_files, cache_dir=cache_dir)):
        where = f"{name} row {i + 1}"
        raw_id = next((row[c] for c in ID_COLUMNS if row.get(c) is not None), None)
        rid = f"{name}-{raw_id}" if raw_id is not None else f"{name}-{split}-{i:04d}"
        if rid in seen:  # some sets reuse problem numbers across years
            rid = f"{name}-{split}-{i:04d}"
        seen.add(rid)
        extra = {k: row[k] for k in ("url", "year") if isinstance(row.get(k), (str, int))}
        out.append(
            PairRecord(
                id=rid,
                question=column(row, qcols, where=where),
                answer=answer_text(column(row, acols, where=where)),
                source=name,
                meta={"split": split, **extra},
            )
        )
    return out


def load_amc(*, hub_id: str = AMC_HUB_ID, **kwargs: Any) -> list[PairRecord]:
    return load_problem_answer("amc", hub_id=hub_id, **kwargs)


def load_aime(*, hub_id: str = AIME_HUB_ID, **kwargs: Any) -> list[PairRecord]:
    return load_problem_answer("aime", hub_id=hub_id, **kwargs)
