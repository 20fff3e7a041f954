"""The update's shared-prefix log-probabilities equal plain full-sequence forwards, and
micro-batching does not change the accumulated gradient."""
from __future__ import annotations

import dataclasses

import torch

from nemo_coreward.embedded.prefix import shared_columns
from nemo_coreward.embedded.rollout import SamplingConfig, encode_prompts, sample
from nemo_coreward.embedded.update import UpdateConfig, sequence_logprobs, update_policy
from nemo_coreward.rl import LossConfig, token_logprobs

QUESTIONS = ["What is 2 + 3?", "Double 7, then tell me the answer in a box please.", "Add 1 and 8."]


def _rollouts(model, tok, n=3, new=7):
    """Sampled rollouts, then EOS + padding written into some rows by hand: a random
    model over 49k tokens practically never samples EOS itself."""
    texts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                     add_generation_prompt=True) for q in QUESTIONS]
    ids, mask = encode_prompts(tok, texts, 512)
    torch.manual_seed(1)
    r = sample(model, tok, ids, mask, SamplingConfig(n=n, max_new_tokens=new, batch_size=4))
    resp, rmask = r.response_ids.clone(), r.response_mask.clone()
    for row, end in ((0, 2), (4, 0), (7, 5)):  # EOS at position `end`, padding after it
        resp[row, end] = tok.eos_token_id
        resp[row, end + 1:] = tok.pad_token_id
        rmask[row, end + 1:] = False
    return dataclasses.replace(r, response_ids=resp, response_mask=rmask)


def _full_logprobs(model, r, temperature=1.0):
    """Reference: one full forward per sequence, no padding at all."""
    rows = []
    for i in range(r.response_ids.shape[0]):
        q = i // r.n
        prompt = r.prompt_ids[q][r.prompt_mask[q].bool()]
        resp = r.response_ids[i]
        seq = torch.cat([prompt, resp])[None]
        logits = model(input_ids=seq).logits[:, prompt.numel() - 1:-1] / temperature
        rows.append(token_logprobs(logits, resp[None])[0])
    return torch.stack(rows)


def test_shared_prefix_logprobs_and_gradients_match_full_forwards(sharp):
    model, tok = sharp
    r = _rollouts(model, tok)
    assert r.prompt_mask.sum(-1).unique().numel() > 1  # prompts really are padded
    assert shared_columns(r.prompt_ids, r.prompt_mask) > 0  # and share a prefix
    assert not bool(r.response_mask.all())  # some responses end early (padding after EOS)
    mask = r.response_mask
    model.zero_grad()
    shared, _ = sequence_logprobs(model, r.prompt_ids, r.prompt_mask, r.response_ids, mask, r.n,
                                  temperature=0.7)
    (shared * mask).sum().backward()
    g_shared = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    full = _full_logprobs(model, r, temperature=0.7)
    (full * mask).sum().backward()
    g_full = [p.grad.clone() for p in model.parameters()]
    torch.testing.assert_close(shared[mask], full[mask], rtol=1e-5, atol=1e-5)
    # Normwise: the two sum thousands of float32 terms in different orders.
    for a, b in zip(g_shared, g_full):
        assert float(b.abs().max()) > 0
        assert float((a - b).abs().max()) <= 1e-4 * float(b.abs().max())


class _Fabric:
    """The two Fabric calls update_policy makes, on CPU in float32."""

    def backward(self, loss):
        loss.backward()

    def clip_gradients(self, model, optimizer, max_norm):
        return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)


def _step(tiny_dir, r, adv, micro, agg, sides=None):
    from nemo_coreward.embedded.model import ModelConfig, load_causal_lm

    model = load_causal_lm(tiny_dir, ModelConfig())
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    metrics = update_policy(_Fabric(), model, opt, r, adv, LossConfig(kl_coef=0.0, agg=agg),
                            UpdateConfig(micro_batch_prompts=micro), grad_clip=0.0,
                            sides=sides)
    return [p.detach() - b for p, b in zip(model.parameters(), before)], metrics


def _close(a_list, b_list):
    """Normwise; the steps are differences of float32 weights, the norm weights near 1.0,
    where one float32 step is 1.2e-7."""
    for a, b in zip(a_list, b_list):
        assert float((a - b).abs().max()) <= 1e-4 * float(b.abs().max()) + 1.2e-7


def test_micro_batches_accumulate_to_the_full_batch_gradient(tiny, tiny_model_dir):
    model, tok = tiny
    r = _rollouts(model, tok)
    adv = torch.linspace(-1.0, 1.0, r.response_ids.shape[0])
    sides = torch.tensor([0, 0, 0, 1, 1, 1, 0, 0, 0])  # prompts: original, twin, original
    for agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum",
                "side-token-mean-sum"):
        whole, m_whole = _step(tiny_model_dir, r, adv, micro=3, agg=agg, sides=sides)
        split, m_split = _step(tiny_model_dir, r, adv, micro=1, agg=agg, sides=sides)
        assert any(float(d.abs().max()) > 0 for d in whole)
        _close(whole, split)
        assert abs(m_whole["pg_loss"] - m_split["pg_loss"]) < 1e-6
        assert abs(m_whole["grad_norm"] - m_split["grad_norm"]) < 1e-4 * m_whole["grad_norm"]


def test_side_token_mean_sum_is_a_token_mean_per_side_summed(tiny, tiny_model_dir):
    """J = J_original + J_rephrased: on-policy (ratio 1) its gradient is that of
    sum over sides of the token mean of -A logp, written out here by hand."""
    from nemo_coreward.embedded.model import ModelConfig, load_causal_lm

    model, tok = tiny
    r = _rollouts(model, tok)
    adv = torch.linspace(-1.0, 1.0, r.response_ids.shape[0])
    sides = torch.tensor([0, 0, 0, 1, 1, 1, 0, 0, 0])
    step, _ = _step(tiny_model_dir, r, adv, micro=2, agg="side-token-mean-sum", sides=sides)
    ref = load_causal_lm(tiny_model_dir, ModelConfig())
    logp, _ = sequence_logprobs(ref, r.prompt_ids, r.prompt_mask, r.response_ids,
                                r.response_mask, r.n)
    m = r.response_mask.float()
    per_token = -adv[:, None] * logp * m
    loss = sum(per_token[sides == s].sum() / m[sides == s].sum() for s in (0, 1))
    loss.backward()
    _close(step, [-p.grad for p in ref.parameters()])
    token_mean, _ = _step(tiny_model_dir, r, adv, micro=2, agg="token-mean")
    assert not torch.allclose(token_mean[0], step[0], rtol=1e-3)  # the two modes differ


def test_old_and_reference_logprobs_use_the_rollout_temperature(tiny, tiny_model_dir):
    """With two epochs the old log-probs come from a separate no-grad pass, and the KL
    reference from the reference model: at lr 0 (nothing moves) both must be the policy's
    own log-probs at the same temperature, ratio 1 and KL 0."""
    from nemo_coreward.embedded.model import ModelConfig, load_causal_lm

    model, tok = tiny
    r = dataclasses.replace(_rollouts(model, tok), temperature=0.6)
    policy = load_causal_lm(tiny_model_dir, ModelConfig())
    reference = load_causal_lm(tiny_model_dir, ModelConfig())
    adv = torch.linspace(-1.0, 1.0, r.response_ids.shape[0])
    metrics = update_policy(_Fabric(), policy, torch.optim.SGD(policy.parameters(), lr=0.0), r,
                            adv, LossConfig(kl_coef=0.1), UpdateConfig(epochs=2), grad_clip=0.0,
                            reference=reference)
    assert abs(metrics["ratio_mean"] - 1.0) < 1e-5
    assert abs(metrics["approx_kl"]) < 1e-5 and abs(metrics["kl_loss"]) < 1e-6
