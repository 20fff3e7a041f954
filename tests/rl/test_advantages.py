"""Group advantages: hand-worked cases, a loop reference, singletons and zero spread."""
import math
from collections import defaultdict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_coreward.rl.advantages import (
    ADVANTAGES,
    dr_grpo_advantages,
    expand_to_tokens,
    group_ids_from_keys,
    grpo_advantages,
    rloo_advantages,
)

EPS = 1e-6
# Four groups with non-contiguous, unsorted ids, interleaved in the batch:
#   id 7:  [1, 0, 1, 0]  mean 0.5, unbiased var = 4 * 0.25 / 3 = 1/3
#   id -2: [5]           singleton
#   id 40: [3, 3]        zero spread
#   id 9:  [2, 0, 1]     mean 1, unbiased var = (1 + 1 + 0) / 2 = 1
REWARDS = torch.tensor([1.0, 5.0, 0.0, 3.0, 2.0, 1.0, 3.0, 0.0, 0.0, 1.0])
GROUPS = torch.tensor([7, -2, 7, 40, 9, 7, 40, 9, 7, 9])


def test_grpo_hand_case():
    a = 0.5 / (math.sqrt(1 / 3) + EPS)  # 0.866024..., group 7
    b = 1.0 / (1.0 + EPS)  # group 9: (r - 1) / (1 + eps)
    expected = torch.tensor([a, 5.0 / (1 + EPS), -a, 0.0, b, a, 0.0, -b, -a, 0.0])
    out = grpo_advantages(REWARDS, GROUPS)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_dr_grpo_hand_case():
    # r - mean; the singleton keeps its reward (verl: mean 0 for a group of one).
    expected = torch.tensor([0.5, 5.0, -0.5, 0.0, 1.0, 0.5, 0.0, -1.0, -0.5, 0.0])
    torch.testing.assert_close(dr_grpo_advantages(REWARDS, GROUPS), expected, rtol=0, atol=1e-6)


def test_rloo_hand_case():
    # group 7: 1 - mean(1, 0, 0) = 2/3 and 0 - mean(1, 1, 0) = -2/3
    # group 9: 2 - mean(0, 1) = 1.5, 0 - mean(2, 1) = -1.5, 1 - mean(2, 0) = 0
    t = 2 / 3
    expected = torch.tensor([t, 0.0, -t, 0.0, 1.5, t, 0.0, -1.5, -t, 0.0])
    torch.testing.assert_close(rloo_advantages(REWARDS, GROUPS), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
def test_zero_spread_is_exactly_zero(name):
    # 0.1 is not a binary fraction: 3 * 0.1 / 3 != 0.1 in floating point, and GRPO would
    # divide that residue by eps. Every estimator must still give exactly 0.
    rewards = torch.tensor([0.1, 0.1, 0.1, 0.7, 0.7], dtype=torch.float64)
    out = ADVANTAGES.get(name)(rewards, torch.tensor([3, 3, 3, 8, 8]))
    assert torch.equal(out, torch.zeros(5, dtype=torch.float64))


def test_singletons():
    rewards = torch.tensor([0.0, 1.0, 0.3])
    ids = torch.tensor([10, 11, 12])
    torch.testing.assert_close(grpo_advantages(rewards, ids), rewards / (1 + EPS),
                               rtol=0, atol=1e-7)
    torch.testing.assert_close(dr_grpo_advantages(rewards, ids), rewards, rtol=0, atol=0)
    assert torch.equal(rloo_advantages(rewards, ids), torch.zeros(3))


def test_dtypes_devices_and_empty_input():
    ints = torch.tensor([1, 0, 1])
    assert grpo_advantages(ints, torch.tensor([0, 0, 0])).dtype == torch.float32
    f64 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert rloo_advantages(f64, torch.tensor([1, 1], dtype=torch.int32)).dtype == torch.float64
    empty = grpo_advantages(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert empty.shape == (0,)


def test_rewards_with_grad_are_detached():
    rewards = torch.tensor([1.0, 0.0], requires_grad=True)
    assert not grpo_advantages(rewards, torch.tensor([0, 0])).requires_grad


@pytest.mark.parametrize(
    "rewards, ids, message",
    [
        (torch.zeros(3), torch.zeros(2, dtype=torch.long), "differ in length"),
        (torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), "rewards must be a 1-D"),
        (torch.zeros(2), torch.zeros(2), "integer tensor"),
        (torch.zeros(2), torch.zeros(2, dtype=torch.bool), "integer tensor"),
        (torch.tensor([1.0, float("nan")]), torch.zeros(2, dtype=torch.long), "NaN or inf"),
    ],
)
def test_bad_input_raises(rewards, ids, message):
    with pytest.raises(ValueError, match=message):
        grpo_advantages(rewards, ids)


def test_negative_eps_rejected():
    with pytest.raises(ValueError, match="eps"):
        grpo_advantages(torch.zeros(2), torch.zeros(2, dtype=torch.long), eps=-1.0)


# ---- loop references, written the way verl's compute_grpo_outcome_advantage reads ----

def _by_group(rewards, ids):
    groups = defaultdict(list)
    for r, g in zip(rewards.tolist(), ids.tolist()):
        groups[g].append(r)
    return groups


def _grpo_loop(rewards, ids, norm_by_std):
    groups = _by_group(rewards, ids)
    out = []
    for r, g in zip(rewards.tolist(), ids.tolist()):
        members = torch.tensor(groups[g], dtype=torch.float64)
        if len(members) == 1:
            mean, std = 0.0, 1.0
        else:
            mean, std = members.mean().item(), members.std().item()
        out.append((r - mean) / (std + EPS) if norm_by_std else r - mean)
    return torch.tensor(out, dtype=torch.float64)


def _rloo_loop(rewards, ids):
    out = []
    for i, (r, g) in enumerate(zip(rewards.tolist(), ids.tolist())):
        others = [q for j, (q, h) in enumerate(zip(rewards.tolist(), ids.tolist()))
                  if h == g and j != i]
        out.append(r - sum(others) / len(others) if others else 0.0)
    return torch.tensor(out, dtype=torch.float64)


REFERENCES = {
    "grpo": lambda r, g: _grpo_loop(r, g, norm_by_std=True),
    "dr_grpo": lambda r, g: _grpo_loop(r, g, norm_by_std=False),
    "rloo": _rloo_loop,
}

# Binary-fraction rewards (exact in floating point, so the loop's zero-spread groups are
# exactly 0 too) and ids drawn from a sparse, signed, unsorted set.
_batches = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.25, 0.5, 1.0, -1.5, 3.0]),
        st.sampled_from([-7, 0, 3, 99, 2**40, 5]),
    ),
    min_size=1,
    max_size=40,
)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@settings(max_examples=60, deadline=None)
@given(batch=_batches)
def test_vectorised_matches_loop_reference(name, batch):
    rewards = torch.tensor([r for r, _ in batch], dtype=torch.float32)
    ids = torch.tensor([g for _, g in batch], dtype=torch.long)
    out = ADVANTAGES.get(name)(rewards, ids)
    expected = REFERENCES[name](rewards, ids).to(torch.float32)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@settings(max_examples=30, deadline=None)
@given(
    rewards=st.lists(st.floats(-10, 10, width=32), min_size=2, max_size=24),
    data=st.data(),
)
def test_continuous_rewards_match_loop_and_permute(name, rewards, data):
    ids = data.draw(st.lists(st.integers(-3, 3), min_size=len(rewards), max_size=len(rewards)))
    r = torch.tensor(rewards, dtype=torch.float32)
    g = torch.tensor(ids, dtype=torch.long)
    out = ADVANTAGES.get(name)(r, g)
    expected = REFERENCES[name](r, g).to(torch.float32)
    # Near-equal rewards make GRPO divide by a tiny std; rtol covers that honestly.
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    perm = torch.randperm(len(r), generator=torch.Generator().manual_seed(len(r)))
    # summation order changes with the permutation: float64 last bits, nothing more
    torch.testing.assert_close(ADVANTAGES.get(name)(r[perm], g[perm]), out[perm],
                               rtol=1e-6, atol=1e-6)


def test_rloo_is_scaled_dr_grpo():
    # RLOO = n / (n - 1) * (r - mean): groups of 4 (scale 4/3) and 3 (scale 3/2), all spread.
    rewards = torch.tensor([0.2, 0.9, 0.4, 0.0, 1.0, 0.5, 0.6])
    ids = torch.tensor([1, 1, 1, 1, 2, 2, 2])
    scale = torch.tensor([4 / 3] * 4 + [3 / 2] * 3)
    torch.testing.assert_close(rloo_advantages(rewards, ids),
                               scale * dr_grpo_advantages(rewards, ids), rtol=1e-6, atol=1e-6)


def test_group_ids_from_keys_first_appearance():
    keys = [("q7", 0), ("q7", 1), ("q2", 0), ("q7", 0), ("q2", 0), ("q2", 1)]
    assert group_ids_from_keys(keys).tolist() == [0, 1, 2, 0, 2, 3]
    assert group_ids_from_keys([]).dtype == torch.long
    assert group_ids_from_keys([]).shape == (0,)
    with pytest.raises(ValueError, match="hashable"):
        group_ids_from_keys([["unhashable"]])


def test_expand_to_tokens():
    adv = torch.tensor([1.5, -2.0])
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    expected = torch.tensor([[1.5, 1.5, 0.0], [0.0, -2.0, -2.0]])
    assert torch.equal(expand_to_tokens(adv, mask), expected)
    assert torch.equal(expand_to_tokens(adv, mask.bool()), expected)
    with pytest.raises(ValueError, match=r"advantages \(B,\) and mask \(B, T\)"):
        expand_to_tokens(adv, torch.ones(3, 2))
