"""Teacher averaging (Co-rewarding-II): alpha schedule, update steps, in-place EMA."""
import dataclasses
import math

import pytest
import torch
from torch import nn

from nemo_coreward.rl.teacher import TeacherConfig, alpha_at, ema_update_, is_update_step

A0, A1 = 0.01, 1e-5


def test_alpha_schedule_endpoints_and_midpoint():
    T = 10
    assert alpha_at(1, T, A0, A1) == pytest.approx(A0, rel=1e-12)  # t = 0, cos 0 = 1
    assert alpha_at(T + 1, T, A0, A1) == pytest.approx(A1, rel=1e-12)  # t = T, cos pi = -1
    # step 6 -> t = 5 = T/2, cos(pi/2) = 0: A1 + (A0 - A1) / 2 = 0.005005
    assert alpha_at(6, T, A0, A1) == pytest.approx(0.005005, rel=1e-12)
    # step 3 -> t = 2: A1 + 0.5 (A0 - A1)(1 + cos(pi/5)) = 1e-5 + 0.004995 * 1.809017
    assert alpha_at(3, T, A0, A1) == pytest.approx(1e-5 + 0.004995 * (1 + math.cos(math.pi / 5)),
                                                   rel=1e-12)
    # t is clipped to [0, T]
    assert alpha_at(0, T, A0, A1) == pytest.approx(A0, rel=1e-12)
    assert alpha_at(500, T, A0, A1) == pytest.approx(A1, rel=1e-12)


def test_alpha_schedule_is_monotone_and_constant_overrides():
    values = [alpha_at(s, 50, A0, A1) for s in range(1, 52)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert alpha_at(7, 50, A0, A1, constant=0.3) == 0.3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(total_steps=0), "total_steps"),
        (dict(alpha_start=1.5), "alpha_start"),
        (dict(alpha_end=-0.1), "alpha_end"),
        (dict(constant=2.0), "constant alpha"),
    ],
)
def test_alpha_schedule_bad_input(kwargs, message):
    args = dict(step=1, total_steps=10, alpha_start=A0, alpha_end=A1) | kwargs
    with pytest.raises(ValueError, match=message):
        alpha_at(**args)


def test_is_update_step():
    assert [s for s in range(0, 10) if is_update_step(s, 3)] == [3, 6, 9]
    assert [s for s in range(0, 4) if is_update_step(s, 1)] == [1, 2, 3]  # never step 0
    assert not is_update_step(6, 3, enabled=False)
    with pytest.raises(ValueError, match="interval"):
        is_update_step(3, 0)


def _pair(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    teacher = {"w": torch.randn(4, 3, generator=g).to(dtype),
               "b": torch.randn(3, generator=g).to(dtype)}
    policy = {"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g)}
    return teacher, policy


def test_ema_alpha_one_copies_policy_and_zero_keeps_teacher():
    teacher, policy = _pair()
    before = {k: v.clone() for k, v in teacher.items()}
    ema_update_(teacher, policy, 0.0)
    assert all(torch.equal(teacher[k], before[k]) for k in teacher)
    ema_update_(teacher, policy, 1.0)
    assert all(torch.equal(teacher[k], policy[k]) for k in teacher)


def test_ema_hand_case_in_place():
    t, p = torch.tensor([4.0, -2.0]), torch.tensor([8.0, 2.0])
    storage = t.data_ptr()
    ema_update_({"x": t}, {"x": p}, 0.25)  # 0.25 * 8 + 0.75 * 4 = 5; 0.5 - 1.5 = -1
    assert torch.equal(t, torch.tensor([5.0, -1.0])) and t.data_ptr() == storage


def test_ema_random_against_formula():
    teacher, policy = _pair(seed=3)
    expected = {k: 0.3 * policy[k] + 0.7 * teacher[k] for k in teacher}
    ema_update_(teacher, policy, 0.3)
    for k in teacher:
        torch.testing.assert_close(teacher[k], expected[k], rtol=1e-6, atol=1e-6)


def test_ema_bf16_teacher():
    teacher, policy = _pair(torch.bfloat16, seed=4)
    expected = {k: 0.5 * policy[k] + 0.5 * teacher[k].float() for k in teacher}
    ema_update_(teacher, policy, 0.5)
    for k in teacher:
        assert teacher[k].dtype == torch.bfloat16
        # one bf16 rounding of the float32 result: relative error <= 2^-9 (allow 2^-8
        # for a float32 last-bit difference landing on a rounding boundary)
        torch.testing.assert_close(teacher[k].float(), expected[k], rtol=2**-8, atol=1e-30)
    # exact case: 1.0 and 2.0 at alpha 0.5 give 1.5, representable in bf16
    t = {"x": torch.ones(3, dtype=torch.bfloat16)}
    ema_update_(t, {"x": torch.full((3,), 2.0)}, 0.5)
    assert torch.equal(t["x"], torch.full((3,), 1.5, dtype=torch.bfloat16))


def test_ema_small_alpha_rounds_away_in_bf16_but_not_float32():
    # The documented precision limit: 1e-3 * (1.01 - 1) = 1e-5 < 2^-9 / 2, lost in bf16.
    bf16 = {"x": torch.ones(2, dtype=torch.bfloat16)}
    f32 = {"x": torch.ones(2)}
    policy = {"x": torch.full((2,), 1.01)}
    ema_update_(bf16, policy, 1e-3)
    ema_update_(f32, policy, 1e-3)
    assert torch.equal(bf16["x"], torch.ones(2, dtype=torch.bfloat16))
    torch.testing.assert_close(f32["x"], torch.full((2,), 1.00001), rtol=0, atol=1e-7)


def test_ema_on_modules_and_mixed_with_mapping():
    torch.manual_seed(0)
    teacher, policy = nn.Linear(3, 2), nn.Linear(3, 2)
    expected = {k: 0.5 * (v + policy.state_dict()[k]) for k, v in teacher.state_dict().items()}
    ema_update_(teacher, policy, 0.5)
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=1e-6, atol=1e-6)
    assert teacher.weight.requires_grad  # still a trainable-looking Parameter, updated in place
    ema_update_(teacher, dict(policy.named_parameters()), 1.0)
    assert torch.equal(teacher.weight, policy.weight) and torch.equal(teacher.bias, policy.bias)


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.emb.weight


def test_tied_weights_update_once():
    torch.manual_seed(1)
    teacher, policy = _Tied(), _Tied()
    expected = 0.5 * teacher.emb.weight.detach() + 0.5 * policy.emb.weight.detach()
    ema_update_(teacher, policy, 0.5)  # updating twice would give 0.75 p + 0.25 t
    torch.testing.assert_close(teacher.emb.weight.detach(), expected, rtol=1e-6, atol=1e-6)
    # the same through a state dict, where the tied tensor appears under two names
    teacher2, policy2 = _Tied(), _Tied()
    expected2 = 0.5 * teacher2.emb.weight.detach() + 0.5 * policy2.emb.weight.detach()
    ema_update_(teacher2.state_dict(), policy2.state_dict(), 0.5)
    torch.testing.assert_close(teacher2.head.weight.detach(), expected2, rtol=1e-6, atol=1e-6)


def test_integer_entries_left_unchanged_and_policy_dtype_device_free():
    teacher = {"w": torch.zeros(2), "steps": torch.tensor(3)}
    policy = {"w": torch.ones(2, dtype=torch.bfloat16), "steps": torch.tensor(9)}
    ema_update_(teacher, policy, 0.5)
    assert torch.equal(teacher["w"], torch.full((2,), 0.5))
    assert teacher["w"].dtype == torch.float32
    assert teacher["steps"].item() == 3


def test_mismatched_names_shapes_and_types_raise():
    teacher, policy = _pair()
    before = teacher["w"].clone()
    with pytest.raises(ValueError, match=r"only in teacher: \['b'\]; only in policy: \['c'\]"):
        ema_update_(teacher, {"w": policy["w"], "c": policy["b"]}, 0.5)
    with pytest.raises(ValueError, match=r"shape mismatch for 'w': teacher \(4, 3\) vs policy"):
        ema_update_(teacher, {"w": policy["w"].T, "b": policy["b"]}, 0.5)
    assert torch.equal(teacher["w"], before)  # nothing written before the checks pass
    with pytest.raises(TypeError, match="nn.Module or a mapping"):
        ema_update_([1, 2], policy, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha"):
        ema_update_(teacher, policy, 1.5)


def test_teacher_config():
    cfg = TeacherConfig()
    assert (cfg.enabled, cfg.update_interval, cfg.alpha_start, cfg.alpha_end, cfg.alpha) == (
        True, 1, 0.01, 1e-5, None)
    assert cfg.alpha_at(1, 100) == pytest.approx(0.01, rel=1e-12)
    assert cfg.alpha_at(101, 100) == pytest.approx(1e-5, rel=1e-12)
    assert TeacherConfig(alpha=0.2).alpha_at(50, 100) == 0.2
    assert TeacherConfig(update_interval=2).should_update(4)
    assert not TeacherConfig(update_interval=2).should_update(3)
    assert not TeacherConfig(enabled=False).should_update(4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.alpha = 0.1  # type: ignore[misc]
    with pytest.raises(ValueError, match="TeacherConfig.update_interval"):
        TeacherConfig(update_interval=0)
    with pytest.raises(ValueError, match="TeacherConfig.alpha_start"):
        TeacherConfig(alpha_start=2.0)
