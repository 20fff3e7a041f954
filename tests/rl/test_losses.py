"""Losses: aggregation against hand sums, each clip branch, KL estimators, the full loss."""
import dataclasses
import math

import pytest
import torch

from nemo_coreward.rl.losses import (
    LOG_RATIO_BOUND,
    LossConfig,
    aggregate,
    compute_policy_loss,
    kl_penalty,
    ppo_clip_loss,
    token_weights,
    weighted_sum,
)

LN2 = math.log(2.0)

# ---- aggregation ----
VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])  # the last row is padding
MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "side-token-mean-sum"]
SIDES = torch.tensor([0, 1, 0])


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("token-mean", 7 / 3),  # (1 + 2 + 4) / 3 tokens
        ("seq-mean-token-mean", 2.75),  # ((1 + 2) / 2 + 4 / 1) / 2 non-empty rows
        ("seq-mean-token-sum", 3.5),  # ((1 + 2) + 4) / 2 non-empty rows
    ],
)
def test_aggregate_hand_sums(mode, expected):
    assert aggregate(VALUES, MASK, mode).item() == pytest.approx(expected, rel=1e-6)
    # masked positions never reach the sum, even when they hold NaN or inf
    poisoned = VALUES.clone()
    poisoned[0, 2], poisoned[2, 0] = float("nan"), float("inf")
    assert aggregate(poisoned, MASK.bool(), mode).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_aggregate_empty_mask_is_zero(mode):
    assert aggregate(VALUES, torch.zeros(3, 3), mode, SIDES).item() == 0.0


def test_side_token_mean_sum_hand_sum():
    # side 0: rows 0 and 2 -> (1 + 2) / 2 tokens; side 1: row 1 -> 4 / 1; summed: 5.5
    assert aggregate(VALUES, MASK, "side-token-mean-sum", SIDES).item() == pytest.approx(5.5)
    full = torch.ones(3, 3)
    # side 0: (1+2+3+7+8+9) / 6 = 5; side 1: (4+5+6) / 3 = 5
    assert aggregate(VALUES, full, "side-token-mean-sum", SIDES).item() == pytest.approx(10.0)
    # one side only: the plain token mean
    assert aggregate(VALUES, full, "side-token-mean-sum", torch.zeros(3)).item() == \
        pytest.approx(aggregate(VALUES, full, "token-mean").item())
    with pytest.raises(ValueError, match="needs sides"):
        aggregate(VALUES, MASK, "side-token-mean-sum")


def _loop_aggregate(values, mask, mode, sides):
    """A loop reference of each aggregation, written from its definition."""
    rows = [(values[b][mask[b] != 0].tolist(), int(sides[b])) for b in range(values.shape[0])]
    if mode == "token-mean":
        tokens = [v for r, _ in rows for v in r]
        return sum(tokens) / max(len(tokens), 1)
    if mode == "seq-mean-token-mean":
        means = [sum(r) / len(r) for r, _ in rows if r]
        return sum(means) / max(len(means), 1)
    if mode == "seq-mean-token-sum":
        sums = [sum(r) for r, _ in rows if r]
        return sum(sums) / max(len(sums), 1)
    total = 0.0
    for side in {s for _, s in rows}:
        tokens = [v for r, s in rows if s == side for v in r]
        total += sum(tokens) / max(len(tokens), 1)
    return total



@pytest.mark.parametrize("mode", MODES)
def test_weights_split_into_pieces_add_up_to_the_whole_batch(mode):
    """Any split of the rows (micro-batches, DP shards), each piece summing its rows of
    the once-computed weights, gives the whole batch's aggregate; per-piece aggregates
    averaged (Megatron's default) do not."""
    g = torch.Generator().manual_seed(3)
    values = torch.randn(8, 6, generator=g, dtype=torch.float64)
    lengths = torch.tensor([1, 6, 2, 0, 5, 3, 6, 1])
    mask = torch.arange(6)[None, :] < lengths[:, None]
    sides = torch.tensor([0, 1, 2, 0, 1, 0, 1, 2])
    whole = aggregate(values, mask, mode, sides)
    assert whole.item() == pytest.approx(_loop_aggregate(values, mask, mode, sides), rel=1e-12)
    w = token_weights(mask, mode, sides)
    assert w.dtype == torch.float64 and bool((w[~mask] == 0).all())
    pieces = [torch.tensor(p) for p in ([5, 0], [3, 7, 1], [2, 6], [4])]
    total = sum(weighted_sum(values[p], mask[p], w[p]) for p in pieces)
    assert total.item() == pytest.approx(whole.item(), rel=1e-12)
    per_piece_mean = sum(aggregate(values[p], mask[p], mode, sides[p]) for p in pieces) / 4
    # Averaging per-piece aggregates gives the mean of each piece's own aggregate (the loop
    # reference per piece), which is not the whole batch's.
    reference = sum(_loop_aggregate(values[p], mask[p], mode, sides[p]) for p in pieces) / 4
    assert per_piece_mean.item() == pytest.approx(reference, rel=1e-12)
    assert per_piece_mean.item() != pytest.approx(whole.item(), abs=1e-3)


def test_compute_policy_loss_weights_are_the_aggregation():
    g = torch.Generator().manual_seed(4)
    logp = (-torch.rand(4, 5, generator=g)).requires_grad_(True)
    ref = -torch.rand(4, 5, generator=g)
    mask = torch.arange(5)[None, :] < torch.tensor([5, 2, 3, 1])[:, None]
    adv, sides = torch.tensor([1.0, -2.0, 0.5, 3.0]), torch.tensor([0, 0, 1, 1])
    cfg = LossConfig(kl_coef=0.1, agg="seq-mean-token-mean")
    plain, m1 = compute_policy_loss(logp, logp.detach(), ref, adv, mask, cfg)
    weighted, m2 = compute_policy_loss(logp, logp.detach(), ref, adv, mask, cfg,
                                       weights=token_weights(mask, cfg.agg))
    assert plain.item() == pytest.approx(weighted.item(), rel=1e-6) and m1 == pytest.approx(m2)
    side_cfg = dataclasses.replace(cfg, agg="side-token-mean-sum")
    with pytest.raises(ValueError, match="pass weights=token_weights"):
        compute_policy_loss(logp, logp.detach(), ref, adv, mask, side_cfg)
    side, metrics = compute_policy_loss(logp, logp.detach(), ref, adv, mask, side_cfg,
                                        weights=token_weights(mask, side_cfg.agg, sides))
    from nemo_coreward.rl import kl_penalty as kl_fn
    expected = (aggregate(-adv[:, None].expand(4, 5), mask, "side-token-mean-sum", sides)
                + 0.1 * aggregate(kl_fn(logp, ref, "low_var_kl"), mask, "side-token-mean-sum",
                                  sides))
    assert side.item() == pytest.approx(expected.item(), rel=1e-6)


def test_aggregate_bad_input():
    with pytest.raises(ValueError, match="valid names: seq-mean-token-mean, seq-mean-token-sum, "
                                         "side-token-mean-sum, token-mean"):
        aggregate(VALUES, MASK, "seq-sum")
    with pytest.raises(ValueError, match="does not match"):
        aggregate(VALUES, MASK[:2], "token-mean")
    with pytest.raises(ValueError, match=r"values \(B, T\)"):
        aggregate(VALUES[0], MASK[0], "token-mean")


# ---- PPO clip, one token per case; clip_low 0.2 and clip_high 0.28 (DAPO) ----
@pytest.mark.parametrize(
    "adv, ratio, loss, clipped",
    [
        # A > 0, rho = 1.5 > 1.28: max(-1.5, -1.28) = -1.28, the upper clip binds
        (1.0, 1.5, -1.28, True),
        # A > 0, rho = 1.25 inside the raised bound (a symmetric 0.2 would clip at 1.2)
        (1.0, 1.25, -1.25, False),
        # A > 0, rho = 0.5 < 0.8: max(-0.5, -0.8) = -0.5, clipping never helps a drop
        (1.0, 0.5, -0.5, False),
        # A < 0, rho = 0.5 < 0.8: max(0.5, 0.8) = 0.8, the lower clip binds
        (-1.0, 0.5, 0.8, True),
        # A < 0, rho = 1.5: max(1.5, 1.28) = 1.5, unclipped (verl's dual clip is not used)
        (-2.0, 1.5, 3.0, False),
    ],
)
def test_ppo_clip_each_branch(adv, ratio, loss, clipped):
    old = torch.tensor([[-1.0]])
    logp = (old + math.log(ratio)).requires_grad_(True)
    out, metrics = ppo_clip_loss(logp, old, torch.tensor([adv]), torch.ones(1, 1),
                                 clip_low=0.2, clip_high=0.28)
    assert out.item() == pytest.approx(loss, rel=1e-6)
    assert metrics["clipfrac"] == (1.0 if clipped else 0.0)
    assert metrics["ratio_mean"] == pytest.approx(ratio, rel=1e-6)
    assert metrics["approx_kl"] == pytest.approx(-math.log(ratio), rel=1e-6)
    out.backward()
    # d/dlogp of -A * exp(logp - old) is -A * rho on the unclipped branch, 0 when clipped
    expected_grad = 0.0 if clipped else -adv * ratio
    assert logp.grad.item() == pytest.approx(expected_grad, rel=1e-6, abs=1e-7)


def test_ppo_clip_batch_token_mean():
    # The five cases above in one (1, 5) batch plus a masked-out sixth token that would
    # otherwise dominate: mean = (-1.28 - 1.25 - 0.5 + 0.8 + 3.0) / 5 = 0.154
    ratios = torch.tensor([[1.5, 1.25, 0.5, 0.5, 1.5, 9.0]])
    adv = torch.tensor([[1.0, 1.0, 1.0, -1.0, -2.0, -100.0]])
    old = torch.full((1, 6), -2.0)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    loss, metrics = ppo_clip_loss(old + ratios.log(), old, adv, mask, 0.2, 0.28)
    assert loss.item() == pytest.approx(0.154, rel=1e-6)
    assert metrics["clipfrac"] == pytest.approx(2 / 5, rel=1e-6)
    assert metrics["ratio_mean"] == pytest.approx((1.5 + 1.25 + 0.5 + 0.5 + 1.5) / 5, rel=1e-6)


def test_ppo_on_policy_is_minus_advantage():
    # rho = 1 (one optimiser step per batch): loss = -mean(A) over tokens, nothing clips.
    logp = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    adv = torch.tensor([0.5, -1.0, 2.0])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    loss, metrics = ppo_clip_loss(logp, logp.clone(), adv, mask)
    # tokens: 2 x 0.5, 4 x -1.0, 1 x 2.0 -> -(1 - 4 + 2) / 7 = 1/7
    assert loss.item() == pytest.approx(1 / 7, rel=1e-6)
    assert metrics == {"clipfrac": 0.0, "approx_kl": 0.0, "ratio_mean": 1.0}


def test_ppo_log_ratio_is_clamped():
    old = torch.tensor([[-60.0]])
    logp = torch.tensor([[-5.0]])  # log-ratio 55 is clamped to 20 before exp
    loss, metrics = ppo_clip_loss(logp, old, torch.tensor([-1.0]), torch.ones(1, 1))
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx(math.exp(LOG_RATIO_BOUND), rel=1e-6)
    assert metrics["approx_kl"] == pytest.approx(-LOG_RATIO_BOUND, rel=1e-6)


def test_ppo_bad_clip_and_shapes():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="clip_low"):
        ppo_clip_loss(x, x, torch.zeros(1), torch.ones(1, 2), clip_low=1.0)
    with pytest.raises(ValueError, match="clip_high"):
        ppo_clip_loss(x, x, torch.zeros(1), torch.ones(1, 2), clip_high=-0.1)
    with pytest.raises(ValueError, match="old_logp"):
        ppo_clip_loss(x, torch.zeros(1, 3), torch.zeros(1), torch.ones(1, 2))
    with pytest.raises(ValueError, match="advantages"):
        ppo_clip_loss(x, x, torch.zeros(1, 3), torch.ones(1, 2))


# ---- KL estimators on a hand case: pi(x) = 0.5, pi_ref(x) = 0.25, so d = log(ref/pi) = -ln 2
@pytest.mark.parametrize(
    "kind, forward, backward",
    [
        # forward: logp = ln .5, ref = ln .25; backward: the two swapped (d = +ln 2)
        ("k1", LN2, -LN2),  # -d, can be negative
        ("k2", 0.5 * LN2**2, 0.5 * LN2**2),  # d^2 / 2
        ("k3", 0.5 + LN2 - 1, 2 - LN2 - 1),  # e^d - d - 1: 0.193147 and 0.306853
        ("low_var_kl", 0.5 + LN2 - 1, 2 - LN2 - 1),
        ("abs", LN2, LN2),
    ],
)
def test_kl_hand_case(kind, forward, backward):
    half, quarter = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    assert kl_penalty(half, quarter, kind).item() == pytest.approx(forward, rel=1e-6)
    assert kl_penalty(quarter, half, kind).item() == pytest.approx(backward, rel=1e-6)
    same = torch.randn(2, 3)
    assert torch.equal(kl_penalty(same, same.clone(), kind), torch.zeros(2, 3))


@pytest.mark.parametrize("kind", ["k2", "k3", "abs"])
def test_kl_nonnegative(kind):
    g = torch.Generator().manual_seed(1)
    logp, ref = -5 * torch.rand(64, 32, generator=g), -5 * torch.rand(64, 32, generator=g)
    assert bool((kl_penalty(logp, ref, kind) >= 0).all())


@pytest.mark.parametrize("kind", ["k1", "k3"])
def test_kl_unbiased_in_expectation(kind):
    # Over the whole vocabulary, E_{x~pi}[k(x)] = KL(pi || ref) exactly for k1 and k3
    # (for k3 because sum_x ref(x) = 1): no sampling noise, only float32 rounding.
    g = torch.Generator().manual_seed(2)
    logp = torch.log_softmax(torch.randn(1, 11, generator=g), -1)
    ref = torch.log_softmax(torch.randn(1, 11, generator=g), -1)
    exact = (logp.exp() * (logp - ref)).sum()
    expectation = (logp.exp() * kl_penalty(logp, ref, kind)).sum()
    assert expectation.item() == pytest.approx(exact.item(), rel=1e-5)


def test_k3_clamps():
    logp = torch.tensor([[0.0, 0.0]])
    ref = torch.tensor([[30.0, -30.0]])  # e^20 - 21 and e^-20 + 19 both exceed 10
    assert torch.equal(kl_penalty(logp, ref, "k3"), torch.tensor([[10.0, 10.0]]))


def test_kl_bad_input():
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'"):
        kl_penalty(torch.zeros(1, 1), torch.zeros(1, 1), "k4")
    with pytest.raises(ValueError, match="differ in shape"):
        kl_penalty(torch.zeros(1, 1), torch.zeros(1, 2), "k1")


# ---- the full loss ----
def _case():
    # one response of two tokens, on-policy (rho = 1), A = 2 on both tokens
    logp = torch.log(torch.tensor([[0.5, 0.5]])).requires_grad_(True)
    ref = torch.log(torch.tensor([[0.25, 0.5]]))  # k3 per token: 0.193147, 0
    entropy = torch.tensor([[1.0, 3.0]])
    return logp, ref, entropy, torch.tensor([2.0]), torch.ones(1, 2)


def test_compute_policy_loss_hand_case():
    logp, ref, entropy, adv, mask = _case()
    cfg = LossConfig(kl_coef=0.1, entropy_coef=0.01)
    loss, metrics = compute_policy_loss(logp, logp.detach(), ref, adv, mask, cfg, entropy)
    kl = (0.5 + LN2 - 1) / 2  # token-mean of k3
    expected = -2.0 + 0.1 * kl - 0.01 * 2.0  # pg - ... entropy mean 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["loss"] == pytest.approx(expected, rel=1e-6)
    assert metrics["pg_loss"] == pytest.approx(-2.0, rel=1e-6)
    assert metrics["kl_loss"] == pytest.approx(kl, rel=1e-6)
    assert metrics["entropy"] == pytest.approx(2.0, rel=1e-6)
    assert all(isinstance(v, float) for v in metrics.values())
    loss.backward()
    # d/dlogp_t: pg -A * rho / 2 = -1; k3 = e^(ref - logp) - (ref - logp) - 1 gives
    # (1 - e^(ref - logp)) / 2 * 0.1: token 0 (1 - 0.5) * 0.05 = 0.025, token 1 0
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0 + 0.025, -1.0]]),
                               rtol=0, atol=1e-6)


def test_compute_policy_loss_without_kl_reports_it_without_gradient():
    logp, ref, _, adv, mask = _case()
    cfg = LossConfig(kl_coef=0.0)
    loss, metrics = compute_policy_loss(logp, logp.detach(), ref, adv, mask, cfg)
    assert loss.item() == pytest.approx(-2.0, rel=1e-6)
    assert metrics["kl_loss"] == pytest.approx((0.5 + LN2 - 1) / 2, rel=1e-6)
    assert "entropy" not in metrics
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0, -1.0]]), rtol=0, atol=1e-6)
    loss_no_ref, metrics_no_ref = compute_policy_loss(logp, logp.detach(), None, adv, mask, cfg)
    assert "kl_loss" not in metrics_no_ref and loss_no_ref.item() == pytest.approx(-2.0)


def test_compute_policy_loss_missing_inputs():
    logp, ref, _, adv, mask = _case()
    with pytest.raises(ValueError, match="kl_coef > 0 needs ref_logp"):
        compute_policy_loss(logp, logp.detach(), None, adv, mask, LossConfig(kl_coef=0.1))
    with pytest.raises(ValueError, match="entropy_coef != 0 needs entropy"):
        compute_policy_loss(logp, logp.detach(), ref, adv, mask, LossConfig(entropy_coef=0.1))


def test_loss_config_defaults_and_validation():
    cfg = LossConfig()
    assert (cfg.clip_low, cfg.clip_high, cfg.kl_coef, cfg.kl_type, cfg.entropy_coef, cfg.agg) == (
        0.2, 0.2, 0.005, "low_var_kl", 0.0, "token-mean")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.kl_coef = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="LossConfig.kl_type 'k9' unknown; valid: abs, k1"):
        LossConfig(kl_type="k9")
    with pytest.raises(ValueError, match="LossConfig.agg"):
        LossConfig(agg="sum")
    with pytest.raises(ValueError, match="LossConfig: clip_low"):
        LossConfig(clip_low=1.2)
    with pytest.raises(ValueError, match="LossConfig.kl_coef"):
        LossConfig(kl_coef=-0.1)
    with pytest.raises(ValueError, match="LossConfig.entropy_coef"):
        LossConfig(entropy_coef=float("nan"))
