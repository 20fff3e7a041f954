"""Sampling: shared prefill changes nothing, EOS ends a response, token stats are right."""
from __future__ import annotations

import torch
from transformers import GenerationConfig

from nemo_coreward.embedded.prompts import PromptConfig, render
from nemo_coreward.embedded.rollout import SamplingConfig, _response_mask, encode_prompts, sample
from nemo_coreward.embedded.update import sequence_logprobs
from nemo_coreward.rl import masked_sequence_mean, token_entropy, token_self_certainty

PROMPT = PromptConfig(system="Answer in \\boxed{}.", example_question="What is 2 + 3?",
                      example_answer="\\boxed{5}")
QUESTIONS = ["What is 1 + 1?", "Double 4.", "Tom has 3 apples and buys 5 more. How many now?"]


def _encoded(tok):
    return encode_prompts(tok, render(tok, QUESTIONS, PROMPT), 512)


def test_prompt_has_system_one_shot_and_question(tiny):
    _, tok = tiny
    text = render(tok, ["What is 7 + 1?"], PROMPT)[0]
    for part in ("Answer in \\boxed{}.", "What is 2 + 3?", "\\boxed{5}", "What is 7 + 1?"):
        assert part in text
    assert text.index("\\boxed{5}") < text.index("What is 7 + 1?")
    assert text.endswith("<|im_start|>assistant\n")


def test_greedy_with_shared_prefill_equals_plain_generate(tiny):
    model, tok = tiny
    ids, mask = _encoded(tok)
    assert mask.sum(-1).unique().numel() > 1  # left padding is exercised
    ours = sample(model, tok, ids, mask, SamplingConfig(max_new_tokens=8, batch_size=2),
                  greedy=True)
    with torch.inference_mode():
        ref = model.generate(input_ids=ids, attention_mask=mask, generation_config=GenerationConfig(
            do_sample=False, max_new_tokens=8, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id))
    assert torch.equal(ours.response_ids, ref[:, ids.shape[1]:])


def test_n_rollouts_per_prompt_are_prompt_major_and_seeded(tiny):
    model, tok = tiny
    ids, mask = _encoded(tok)
    cfg = SamplingConfig(n=4, temperature=1.0, max_new_tokens=5, batch_size=8)
    torch.manual_seed(0)
    a = sample(model, tok, ids, mask, cfg)
    torch.manual_seed(0)
    b = sample(model, tok, ids, mask, cfg)
    assert a.response_ids.shape == (12, 5) and len(a.texts) == 12 and a.n == 4
    assert torch.equal(a.response_ids, b.response_ids)
    assert len({tuple(r.tolist()) for r in a.response_ids[:4]}) > 1  # samples differ
    assert not a.response_ids.is_inference()  # usable in the backward pass


def test_response_mask_keeps_the_first_eos_and_drops_what_follows():
    eos = [2, 7]
    resp = torch.tensor([[5, 2, 2, 2], [5, 6, 8, 9], [7, 5, 2, 2]])
    assert _response_mask(resp, eos).tolist() == [
        [True, True, False, False], [True, True, True, True], [True, False, False, False]]


def test_token_stats_recorded_during_generation_match_a_forward_pass(tiny):
    model, tok = tiny
    ids, mask = _encoded(tok)
    torch.manual_seed(0)
    r = sample(model, tok, ids, mask, SamplingConfig(n=2, max_new_tokens=6), token_stats=True)
    assert r.self_certainty.shape == (6,) and r.entropy.shape == (6,)
    # teacher-forced logits of the sampled responses, predicted position by position
    with torch.no_grad():
        logits = _teacher_forced_logits(model, r)
    sc = masked_sequence_mean(token_self_certainty(logits), r.response_mask)
    ent = masked_sequence_mean(token_entropy(logits), r.response_mask)
    torch.testing.assert_close(r.self_certainty, sc, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(r.entropy, ent, rtol=1e-4, atol=1e-4)


def _teacher_forced_logits(model, r):
    rows = []
    for i in range(r.response_ids.shape[0]):
        q = i // r.n
        prompt = r.prompt_ids[q][r.prompt_mask[q].bool()]
        seq = torch.cat([prompt, r.response_ids[i]])[None]
        rows.append(model(input_ids=seq).logits[0, prompt.numel() - 1:-1])
    return torch.stack(rows)


def test_update_logprobs_of_sampled_tokens_are_finite_and_negative(tiny):
    model, tok = tiny
    ids, mask = _encoded(tok)
    r = sample(model, tok, ids, mask, SamplingConfig(n=2, max_new_tokens=4))
    with torch.no_grad():
        logp, ent = sequence_logprobs(model, r.prompt_ids, r.prompt_mask, r.response_ids,
                                      r.response_mask, r.n, with_entropy=True)
    assert logp.shape == r.response_ids.shape and bool((logp < 0).all())
    assert bool((ent > 0).all())
