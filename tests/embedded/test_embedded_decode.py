"""The decode loop samples exactly what a plain loop of full forwards samples, and its
sampler is Hugging Face's distribution."""
from __future__ import annotations

import torch
from transformers import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from nemo_coreward.embedded.prefix import regroup, shared_columns
from nemo_coreward.embedded.prompts import PromptConfig, render
from nemo_coreward.embedded.rollout import SamplingConfig, encode_prompts, eos_ids, sample
from nemo_coreward.embedded.sampler import draw, uniforms, warp

PROMPT = PromptConfig(system="Answer in \\boxed{}.", example_question="What is 2 + 3?",
                      example_answer="\\boxed{5}")
QUESTIONS = ["What is 1 + 1?", "Double 4.", "Tom has 3 apples and buys 5 more. How many now?",
             "Add 6 and 2."]


def _plain_sample(model, ids, mask, cfg, n, eos, pad):
    """One full forward per sequence per token, no cache, no padding, no shared anything;
    the same uniforms per (call, step) as ``sample``."""
    per_call = max(1, cfg.batch_size // n)
    rows = []
    for s in range(0, ids.shape[0], per_call):
        seqs = [ids[q][mask[q].bool()] for q in range(s, min(s + per_call, ids.shape[0]))
                for _ in range(n)]
        out = [[] for _ in seqs]
        done = [False] * len(seqs)
        for _ in range(cfg.max_new_tokens):
            u = uniforms(len(seqs))
            for i, seq in enumerate(seqs):
                if done[i]:
                    continue
                full = torch.cat([seq, torch.tensor(out[i], dtype=torch.long)])[None]
                logits = model(input_ids=full).logits[:, -1]
                tok = int(draw(warp(logits, cfg.temperature, cfg.top_k, cfg.top_p), u[i:i + 1]))
                out[i].append(tok)
                done[i] = tok in eos
            if all(done):
                break
        rows += [o + [pad] * (cfg.max_new_tokens - len(o)) for o in out]
    return torch.tensor(rows)


def test_sampled_tokens_equal_a_plain_loop_of_full_forwards(sharp):
    model, tok = sharp
    # A third of the vocabulary ends a response, so responses finish at different steps
    # and the loop drops finished rows from its cache mid-batch.
    model.generation_config.eos_token_id = list(range(0, len(tok), 3))
    eos = eos_ids(model, tok)
    ids, mask = encode_prompts(tok, render(tok, QUESTIONS, PROMPT), 512)
    assert shared_columns(ids, mask) > 10  # the template + system + example are shared
    assert mask.sum(-1).unique().numel() > 1  # and the tails differ in length
    cfg = SamplingConfig(n=3, temperature=0.7, top_k=50, top_p=0.9, max_new_tokens=9,
                         batch_size=6)  # two prompts per call: two calls
    torch.manual_seed(3)
    ours = sample(model, tok, ids, mask, cfg)
    torch.manual_seed(3)
    with torch.no_grad():
        ref = _plain_sample(model, ids, mask, cfg, 3, set(eos), tok.pad_token_id)
    lengths = ours.response_mask.sum(-1)
    assert int(lengths.min()) < 9 == int(lengths.max())  # some finished early
    assert lengths.unique().numel() > 2
    width = ours.response_ids.shape[1]
    assert torch.equal(ours.response_ids, ref[:, :width])
    assert bool((ref[:, width:] == tok.pad_token_id).all())


def test_regroup_puts_the_common_prefix_first_and_keeps_every_row(tiny):
    _, tok = tiny
    enc = tok(render(tok, QUESTIONS, PROMPT), return_tensors="pt", padding=True,
              add_special_tokens=False)
    ids, mask = regroup(enc["input_ids"], enc["attention_mask"], tok.pad_token_id)
    c = shared_columns(ids, mask)
    assert c > 10 and bool((ids[:, :c] == ids[:1, :c]).all())
    for q in range(len(QUESTIONS)):
        before = enc["input_ids"][q][enc["attention_mask"][q].bool()]
        assert torch.equal(ids[q][mask[q].bool()], before)


def test_warp_is_hugging_face_temperature_top_k_top_p():
    torch.manual_seed(0)
    logits = torch.randn(5, 300) * 3
    logits[0, :10] = 4.0  # ties at the top-k boundary
    for temperature, top_k, top_p in ((1.0, 0, 1.0), (0.7, 0, 1.0), (0.8, 40, 1.0),
                                      (1.3, 0, 0.8), (0.6, 25, 0.5)):
        procs = LogitsProcessorList([TemperatureLogitsWarper(temperature)]
                                    + ([TopKLogitsWarper(top_k)] if top_k else [])
                                    + ([TopPLogitsWarper(top_p)] if top_p < 1 else []))
        expected = procs(torch.zeros(5, 1, dtype=torch.long), logits.clone())
        ours = warp(logits, temperature, top_k, top_p)
        assert torch.equal(torch.isinf(ours), torch.isinf(expected))
        torch.testing.assert_close(ours.softmax(-1), expected.softmax(-1))


def test_draw_inverts_the_cumulative_distribution():
    z = torch.log(torch.tensor([[0.1, 0.0, 0.2, 0.7]]))  # token 1 can never be drawn
    cases = {1e-9: 0, 0.0999: 0, 0.1001: 2, 0.2999: 2, 0.3001: 3, 1.0: 3}
    for u, expected in cases.items():
        assert int(draw(z, torch.tensor([u], dtype=torch.float64))) == expected
    torch.manual_seed(0)
    probs = torch.tensor([0.05, 0.15, 0.3, 0.5])
    drawn = draw(probs.log().expand(40000, 4), uniforms(40000))
    freq = torch.bincount(drawn, minlength=4).double() / 40000
    # 4 standard errors of a binomial share at 40k draws
    assert bool(((freq - probs.double()).abs() < 4 * (probs * (1 - probs) / 40000).sqrt()).all())
