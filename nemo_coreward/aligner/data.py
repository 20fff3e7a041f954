"""Twin-aware prompts for NeMo-Aligner: one dataset item is one PAIR (q and its twins).

Why one item per pair: NeMo-Aligner's ``MegatronPretrainingRandomSampler`` shards the
dataset contiguously per data-parallel rank and shuffles within the shard, so twins stored
as separate rows would land on different ranks and in different steps. With the pair as
the item, the sampler, ``consumed_samples`` and the epoch length all count pairs, and
``twin_collate`` expands each item into one row per side, so every side of a pair is
generated in the same rollout micro-batch on the same rank.

Why not ``RLHFDataset``: it reads only ``text``, and silently replaces a too-long prompt
with the NEXT index, which would pair a question with someone else's twin. Here the
prompt budget is checked for every side when the dataset is built: offending pairs are
dropped (or rejected) once, so indices never shift at run time and a resumed run sees
the same items.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from nemo_coreward.aligner.config import DataSection
from nemo_coreward.data.records import PairRecord, load_records, sides

log = logging.getLogger(__name__)

__all__ = ["EncodedPair", "TwinPromptDataset", "render_prompt", "select_sides", "twin_collate"]


class Tokenizer(Protocol):
    def text_to_ids(self, text: str) -> list[int]: ...


def render_prompt(template: str, question: str) -> str:
    """The prompt text for one side: ``template`` with ``{question}`` filled in.

    Only ``{question}`` is substituted (``str.replace``, not ``str.format``), so chat
    templates full of braces and LaTeX in questions pass through untouched.
    """
    if "{question}" not in template:
        raise ValueError("prompt template must contain '{question}'")
    return template.replace("{question}", question)


@dataclass(frozen=True)
class EncodedPair:
    """One usable pair: token ids per side (side 0 the original) and its known answer."""

    record_id: str
    sides: tuple[tuple[int, ...], ...]
    answer: str | None


class TwinPromptDataset(torch.utils.data.Dataset):
    """Paired records tokenised once; item i -> {"pair_id": i, "sides": [LongTensor, ...]}.

    ``max_prompt_length`` is the token budget of one prompt (NeMo-Aligner: sequence length
    minus the generation length, and at most TensorRT-LLM's ``max_input_len``). A record
    with fewer twins than the config asks for is an error naming it: Co-Reward cannot
    score it, and dropping it silently would hide a half-rephrased data set.
    """

    def __init__(self, records: Sequence[PairRecord], tokenizer: Tokenizer, *,
                 max_prompt_length: int, data: DataSection, name: str = "train",
                 source: str = "<records>") -> None:
        if max_prompt_length < 1:
            raise ValueError(f"{name} dataset: max_prompt_length must be >= 1, "
                             f"got {max_prompt_length}")
        self.name = name
        self.max_prompt_length = max_prompt_length
        self.pairs: list[EncodedPair] = []
        self.dropped: list[str] = []
        for row, rec in enumerate(records):
            texts = sides(rec)[: data.num_sides]
            if len(texts) < data.num_sides:
                raise ValueError(
                    f"{source}: record {rec.id!r} (row {row}) has {len(texts) - 1} rephrasing(s); "
                    f"coreward.data asks for {data.num_sides - 1} (run `coreward rephrase` first "
                    "or lower coreward.data.max_rephrasings)")
            ids = tuple(tuple(tokenizer.text_to_ids(render_prompt(data.prompt_template, t)))
                        for t in texts)
            longest = max(len(x) for x in ids)
            if longest > max_prompt_length or min(len(x) for x in ids) == 0:
                if data.too_long == "error":
                    raise ValueError(f"{source}: record {rec.id!r} (row {row}) has a side of "
                                     f"{longest} tokens; the prompt budget is {max_prompt_length}")
                self.dropped.append(rec.id)
                continue
            self.pairs.append(EncodedPair(rec.id, ids, rec.answer))
        if self.dropped:
            log.warning("%s dataset %s: dropped %d of %d pairs with a side over %d tokens "
                        "(first: %s)", name, source, len(self.dropped), len(records),
                        max_prompt_length, self.dropped[0])
        if not self.pairs:
            raise ValueError(f"{source}: no usable pair for the {name} dataset")

    @classmethod
    def from_file(cls, path: str, tokenizer: Tokenizer, *, max_prompt_length: int,
                  data: DataSection, name: str = "train") -> TwinPromptDataset:
        """Read a JSONL or parquet file of paired records (``nemo_coreward.data``)."""
        return cls(load_records(path), tokenizer, max_prompt_length=max_prompt_length,
                   data=data, name=name, source=str(path))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        if not 0 <= idx < len(self.pairs):
            raise IndexError(f"{self.name} dataset has {len(self.pairs)} pairs, asked for {idx}")
        pair = self.pairs[idx]
        return {"pair_id": idx,
                "sides": [torch.tensor(s, dtype=torch.long) for s in pair.sides]}

    def ground_truth(self, pair_id: int) -> str | None:
        """The known answer of pair ``pair_id`` (metrics only, never a label-free reward)."""
        return self.pairs[pair_id].answer


def twin_collate(items: Sequence[Mapping[str, Any]], *, response_length: int, eos_id: int
                 ) -> dict[str, Tensor]:
    """Items (pairs) -> one row per side, in item order then side order.

    Returns ``text`` (R, max prompt + response_length) right-padded with ``eos_id`` (the
    layout NeMo-Aligner's collate gives its generation call), ``length`` (R,), and the twin
    keys ``pair_id`` (R,) and ``side`` (R,), which the actor copies into every rollout.
    """
    if not items:
        raise ValueError("twin_collate: empty batch")
    rows, pair_ids, side_ids = [], [], []
    for item in items:
        for side, tokens in enumerate(item["sides"]):
            rows.append(torch.as_tensor(tokens, dtype=torch.long))
            pair_ids.append(int(item["pair_id"]))
            side_ids.append(side)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    width = int(lengths.max()) + response_length
    text = torch.full((len(rows), width), eos_id, dtype=torch.long)
    for i, r in enumerate(rows):
        text[i, : len(r)] = r
    return {"text": text, "length": lengths,
            "pair_id": torch.tensor(pair_ids, dtype=torch.long),
            "side": torch.tensor(side_ids, dtype=torch.long)}


def select_sides(batch: Mapping[str, Tensor], keep: Callable[[int], bool]) -> Mapping[str, Tensor]:
    """The rows of a ``twin_collate`` batch whose side ``keep`` accepts (the batch itself when
    it accepts every side): a reward decides which sides the policy and the teacher roll
    out (``RewardSpec.policy_rolls_out`` / ``teacher_rolls_out``), e.g. the combined reward's
    policy the original questions only and its teacher the rephrasings only."""
    rows = torch.tensor([keep(int(side)) for side in batch["side"]], dtype=torch.bool)
    if bool(rows.all()):
        return batch
    if not bool(rows.any()):
        raise ValueError("select_sides: no row of the batch is rolled out")
    return {key: value[rows] for key, value in batch.items()}
