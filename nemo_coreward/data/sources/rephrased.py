"""The rephrased sets published with Co-Reward and Co-rewarding, read as pair records.

They let a user reproduce the papers without running a rephrasing LLM. The authors' code
(tmlr-group/Co-Reward ``coreward/data/math/``, tmlr-group/Co-rewarding
``Co-rewarding-*/data/{math,dapo,open-rs}/``) builds them in three shapes, all read here:

- pairs (``train_pairs.parquet``, made by their ``upload_file.py`` for the hub):
  ``idx``, ``original_question``, ``rephrased_question``, ``solution`` (the ground-truth
  *answer*, not a worked solution), ``level`` and ``type`` for MATH, and the chat-format
  ``original_message`` / ``rephrased_message`` (system + user turns);
- messages only: ``original_message`` / ``rephrased_message`` without the plain columns
  (the question is the last user turn);
- the rewrite log (``train_rewrite_Qwen3-32B.jsonl``): ``original``, ``rewritten``, no
  answer.

Hub ids: ``TMLR-Group-HF/CoReward-RephrasedMATH`` (the seed paper's MATH train set, 7,500
rows) and its successor names ``TMLR-Group-HF/Co-rewarding-RephrasedMATH``,
``-RephrasedDAPO-14k`` and ``-RephrasedOpenRS``.
"""
from __future__ import annotations

from typing import Any

from nemo_coreward.data.records import PairRecord
from nemo_coreward.data.sources.tables import SourceError, answer_text, load_rows

REPHRASED_HUB_IDS = {
    "coreward-math": "TMLR-Group-HF/CoReward-RephrasedMATH",
    "corewarding-math": "TMLR-Group-HF/Co-rewarding-RephrasedMATH",
    "corewarding-dapo": "TMLR-Group-HF/Co-rewarding-RephrasedDAPO-14k",
    "corewarding-openrs": "TMLR-Group-HF/Co-rewarding-RephrasedOpenRS",
}


def _user_turn(messages: Any, where: str, key: str) -> str:
    if hasattr(messages, "tolist"):
        messages = messages.tolist()
    users = [m.get("content") for m in messages or () if isinstance(m, dict)
             and m.get("role") == "user"]
    if not users or not isinstance(users[-1], str):
        raise SourceError(f"{where}: column {key!r} has no user turn")
    return users[-1]


def _pair_texts(row: dict[str, Any], where: str) -> tuple[str, str]:
    if "original_question" in row and "rephrased_question" in row:
        return row["original_question"], row["rephrased_question"]
    if "original_message" in row and "rephrased_message" in row:
        return (_user_turn(row["original_message"], where, "original_message"),
                _user_turn(row["rephrased_message"], where, "rephrased_message"))
    if "original" in row and "rewritten" in row:
        return row["original"], row["rewritten"]
    raise SourceError(
        f"{where}: not a rephrased-pair row; expected original_question/rephrased_question, "
        f"original_message/rephrased_message or original/rewritten, found {sorted(row)}"
    )


def load_rephrased(
    name: str, *, split: str = "train", data_files=None, hub_id: str | None = None,
    config: str | None = None, cache_dir: str | None = None,
) -> list[PairRecord]:
    hub_id = hub_id or REPHRASED_HUB_IDS[name]
    out = []
    for i, row in enumerate(load_rows(hub_id, split=split, config=config,
                                      data_files=data_files, cache_dir=cache_dir)):
        where = f"{name} row {i + 1}"
        original, rephrased = _pair_texts(row, where)
        idx = row.get("idx")
        meta = {k: row[k] for k in ("level", "type") if isinstance(row.get(k), str)}
        meta["split"] = split
        out.append(
            PairRecord(
                id=f"{name}-{idx if idx is not None else i}",
                question=original,
                rephrasings=(rephrased,),
                answer=answer_text(row.get("solution")),
                source=name,
                meta=meta,
            )
        )
    return out
