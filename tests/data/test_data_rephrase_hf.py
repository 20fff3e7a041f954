"""End to end through the local Hugging Face backend with a tiny Llama made in the test.

A randomly initialised 2-layer Llama (hidden 32) with a word-level tokenizer is first
overfitted for a few dozen steps to answer the rewrite prompt for "What is 3 + 4?" with a
valid result block, then saved, and ``coreward rephrase --backend hf`` loads it from disk
and samples with the paper's defaults. The trained question gets its twin; an unseen one
gets the memorised text back, which the numbers rule rejects.
"""
from __future__ import annotations

import json

import pytest
import torch

from nemo_coreward.data import rephrase_cli
from nemo_coreward.data.records import PairRecord, load_records, write_records
from nemo_coreward.data.rephrase.backends import _chat_prompt
from nemo_coreward.data.rephrase.prompt import Template

QUESTION = "What is 3 + 4?"
TARGET = ("### RESULT_START ORIGINAL: What is 3 + 4? REWRITE: Tom has 3 apples and gets 4 more. "
          "How many apples does Tom have now? ### RESULT_END")
CHAT = "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}<|assistant|> "


def _tiny_model(path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = sorted(set(f"{Template().render(QUESTION)} {TARGET} <|user|> <|assistant|>".split()))
    vocab = {"<unk>": 0, "<pad>": 1, "</s>": 2}
    for word in words:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>",
                                        pad_token="<pad>", eos_token="</s>")
    tokenizer.chat_template = CHAT
    prompt = tokenizer(_chat_prompt(tokenizer, Template().messages(QUESTION)),
                       add_special_tokens=False)["input_ids"]
    target = tokenizer(TARGET, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, pad_token_id=1, eos_token_id=2,
                         bos_token_id=None)
    model = LlamaForCausalLM(config)
    ids = torch.tensor([prompt + target])
    labels = ids.clone()
    labels[0, : len(prompt)] = -100
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = model(input_ids=ids, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if loss.item() < 0.01:
            break
    assert loss.item() < 0.01, "the tiny model did not memorise its answer"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.mark.slow
def test_hf_backend_end_to_end(tmp_path, capsys):
    torch.set_num_threads(2)
    model_dir = tmp_path / "tiny-llama"
    _tiny_model(model_dir)
    records = [PairRecord("seen", QUESTION, answer="7"),
               PairRecord("unseen", "What is 5 + 6?", answer="11")]
    src = write_records(records, tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    code = rephrase_cli.main([str(src), "--out", str(out), "--backend", "hf",
                              "--model", str(model_dir), "--max-tokens", "40",
                              "--concurrency", "1", "--max-candidates", "2", "--seed", "0",
                              "--no-progress"])
    assert code == 1  # "unseen" failed: rerunning would retry it
    [rec] = load_records(out)
    assert rec.id == "seen"
    assert rec.rephrasings == (
        "Tom has 3 apples and gets 4 more. How many apples does Tom have now?",)
    side_file = tmp_path / "out.jsonl.rejected.jsonl"
    rejected = [json.loads(x) for x in side_file.read_text().splitlines()]
    assert [(r["id"], r["rule"]) for r in rejected] == [
        ("unseen", "numbers"), ("unseen", "numbers"), ("unseen", "record")]
    assert rejected[0]["reason"] == "missing 5, 6 from the question"
    assert "1 records written, 0 already done, 1 failed (of 2)" in capsys.readouterr().out
