"""Chunked per-token statistics against direct full-vocabulary computations."""
import math

import pytest
import torch

from nemo_coreward.rl.token_stats import (
    masked_sequence_mean,
    token_entropy,
    token_logprobs,
    token_self_certainty,
)

B, T, V = 2, 7, 11
CHUNKS = [1, 2, 3, 7, 100]


def _logits(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(B, T, V, generator=g)).to(dtype)


def _tokens(seed=0):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("chunk", CHUNKS)
def test_logprobs_match_direct(chunk):
    z, tok = _logits(), _tokens()
    direct = torch.log_softmax(z, -1).gather(-1, tok[..., None]).squeeze(-1)
    out = token_logprobs(z, tok, chunk_size=chunk)
    assert out.shape == (B, T) and out.dtype == torch.float32
    torch.testing.assert_close(out, direct, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_entropy_matches_direct(chunk):
    z = _logits()
    logp = torch.log_softmax(z.double(), -1)  # float64 reference
    direct = -(logp.exp() * logp).sum(-1).float()
    torch.testing.assert_close(token_entropy(z, chunk_size=chunk), direct, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_self_certainty_is_kl_from_uniform_plus_log_v(chunk):
    z = _logits()
    logp = torch.log_softmax(z.double(), -1)  # float64 reference
    kl_u_p = (math.log(1 / V) - logp).mean(-1)  # sum_v (1/V) log((1/V) / p_v)
    out = token_self_certainty(z, chunk_size=chunk)
    # values up to ~9: float32 resolution there is ~1e-6
    torch.testing.assert_close(out, (kl_u_p + math.log(V)).float(), rtol=1e-6, atol=1e-6)
    assert bool((out >= math.log(V) - 1e-5).all())  # KL >= 0


def test_uniform_logits_hand_case():
    # all logits equal: p = 1/V, log p = -log V, H = log V, self-certainty = log V (KL = 0)
    z = torch.zeros(1, 2, 4)
    torch.testing.assert_close(token_logprobs(z, torch.tensor([[0, 3]])),
                               torch.full((1, 2), -math.log(4)), rtol=0, atol=1e-6)
    torch.testing.assert_close(token_entropy(z), torch.full((1, 2), math.log(4)),
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(token_self_certainty(z), torch.full((1, 2), math.log(4)),
                               rtol=0, atol=1e-6)


def test_bf16_logits_are_upcast():
    z = _logits(torch.bfloat16)
    tok = _tokens()
    ref = torch.log_softmax(z.float(), -1)
    out = token_logprobs(z, tok, chunk_size=3)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref.gather(-1, tok[..., None]).squeeze(-1),
                               rtol=1e-6, atol=1e-6)
    ref64 = torch.log_softmax(z.double(), -1)
    torch.testing.assert_close(token_entropy(z, chunk_size=3),
                               -(ref64.exp() * ref64).sum(-1).float(), rtol=1e-6, atol=1e-6)


def test_gradient_through_chunks_matches_direct():
    z1 = _logits().requires_grad_(True)
    z2 = z1.detach().clone().requires_grad_(True)
    tok = _tokens()
    weights = torch.randn(B, T, generator=torch.Generator().manual_seed(5))
    (weights * token_logprobs(z1, tok, chunk_size=2)).sum().backward()
    (weights * torch.log_softmax(z2, -1).gather(-1, tok[..., None]).squeeze(-1)).sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-6, atol=1e-6)
    z3 = z1.detach().clone().requires_grad_(True)
    z4 = z1.detach().double().requires_grad_(True)  # float64 reference
    (weights * token_entropy(z3, chunk_size=3)).sum().backward()
    lp = torch.log_softmax(z4, -1)
    (weights.double() * -(lp.exp() * lp).sum(-1)).sum().backward()
    torch.testing.assert_close(z3.grad, z4.grad.float(), rtol=1e-5, atol=1e-6)


def test_masked_vocabulary_entries():
    z = torch.tensor([[[0.0, 0.0, float("-inf")]]])
    # two live entries at p = 1/2: H = ln 2 (not NaN); KL(U || p) is infinite
    assert token_entropy(z).item() == pytest.approx(math.log(2), rel=1e-6)
    assert token_self_certainty(z).item() == math.inf


def test_empty_time_axis():
    z = torch.zeros(3, 0, 5)
    assert token_logprobs(z, torch.zeros(3, 0, dtype=torch.long)).shape == (3, 0)
    assert token_entropy(z).shape == (3, 0)


def test_bad_input():
    z = _logits()
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 11\)"):
        token_logprobs(z, torch.full((B, T), V))
    with pytest.raises(ValueError, match=r"tokens \(2, 6\) must be \(B, T\)"):
        token_logprobs(z, torch.zeros(B, T - 1, dtype=torch.long))
    with pytest.raises(ValueError, match="integer ids"):
        token_logprobs(z, torch.zeros(B, T))
    with pytest.raises(ValueError, match=r"logits must be \(B, T, V\)"):
        token_entropy(z[0])
    with pytest.raises(ValueError, match="chunk_size"):
        token_self_certainty(z, chunk_size=0)


def test_masked_sequence_mean_hand_case():
    values = torch.tensor([[1.0, 2.0, float("nan")], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    # row 0: (1 + 2) / 2 = 1.5, the NaN is masked out; row 1 has no token -> 0
    assert torch.equal(masked_sequence_mean(values, mask), torch.tensor([1.5, 0.0]))
    with pytest.raises(ValueError, match="same shape"):
        masked_sequence_mean(values, mask[:, :2])
