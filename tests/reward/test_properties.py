"""Invariants of the rewards, for any batch (hypothesis)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_coreward.reward import RewardConfig, Rollout, score_rollouts

RESP = st.sampled_from([r"\boxed{1}", r"\boxed{2}", r"\boxed{\frac{1}{2}}", r"\boxed{0.5}", "none",
                        r"\boxed{}"])
MODES = st.sampled_from(["exact", "normalized"])
VOTING = st.sampled_from(["co_reward", "majority"])


def batch(data, n_pairs, n):
    return [Rollout(p, s, data.draw(RESP))
            for p in range(n_pairs) for s in (0, 1) for _ in range(n)]


def _unpermute(scored, order):
    back = [0.0] * len(order)
    for pos, i in enumerate(order):
        back[i] = scored[pos]
    return back


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), MODES, VOTING, st.randoms(use_true_random=False),
       st.data())
def test_reordering_groups_keeps_each_rollouts_reward(n_pairs, n, mode, name, rnd, data):
    rs = batch(data, n_pairs, n)
    blocks = [list(range(i, i + n)) for i in range(0, len(rs), n)]
    rnd.shuffle(blocks)
    order = [i for b in blocks for i in b]
    cfg = RewardConfig(name, mode)
    shuffled = score_rollouts([rs[i] for i in order], cfg).rewards
    assert _unpermute(shuffled, order) == score_rollouts(rs, cfg).rewards


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), MODES, VOTING, st.randoms(use_true_random=False),
       st.data())
def test_permuting_within_groups_with_a_strict_majority(n_pairs, extra, mode, name, rnd, data):
    """Without a tie the label cannot depend on order, so rewards follow their rollouts."""
    rs = []
    for p in range(n_pairs):
        for s in (0, 1):
            winner = data.draw(st.sampled_from([r"\boxed{1}", r"\boxed{2}"]))
            others = [data.draw(RESP) for _ in range(extra)]
            rs += [Rollout(p, s, winner)] * (extra + 1) + [Rollout(p, s, o) for o in others]
    order = list(range(len(rs)))
    rnd.shuffle(order)
    cfg = RewardConfig(name, mode)
    shuffled = score_rollouts([rs[i] for i in order], cfg).rewards
    assert _unpermute(shuffled, order) == score_rollouts(rs, cfg).rewards


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), MODES, st.data())
def test_swapping_sides_swaps_rewards(n_pairs, n, mode, data):
    rs = batch(data, n_pairs, n)
    swapped = [Rollout(r.pair_id, 1 - r.side, r.response) for r in rs]
    cfg = RewardConfig("co_reward", mode)
    assert score_rollouts(rs, cfg).rewards == score_rollouts(swapped, cfg).rewards


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), MODES, VOTING)
def test_all_empty_gives_zero(n_pairs, n, mode, name):
    rs = [Rollout(p, s, "no box") for p in range(n_pairs) for s in (0, 1) for _ in range(n)]
    scored = score_rollouts(rs, RewardConfig(name, mode))
    assert scored.rewards == [0.0] * len(rs)
    assert scored.metrics["label_nonempty_rate"] == 0.0


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), MODES, st.data())
def test_rewards_are_binary_and_labels_come_from_the_twin(n_pairs, n, mode, data):
    rs = batch(data, n_pairs, n)
    scored = score_rollouts(rs, RewardConfig("co_reward", mode))
    for r, s in zip(rs, scored.scores):
        assert s.reward in (0.0, 1.0)
        twin_answers = [t.response for t in rs if t.pair_id == r.pair_id and t.side != r.side]
        if s.label:
            assert any(f"{{{s.label}}}" in t for t in twin_answers)
