"""Collapse metrics on a hand-built batch (values derived in comments)."""
import math

import pytest

from nemo_coreward.reward import RewardConfig, Rollout, score_rollouts


def R(pair, side, ans, gt):
    return Rollout(pair, side, f"\\boxed{{{ans}}}" if ans is not None else "", gt)


def test_metrics_by_hand():
    # pair a (gt 2): side0 = 2,2 ; side1 = 2,None  -> own majorities 2 | 2 (agree)
    # pair b (gt 9): side0 = 1,1 ; side1 = 1,1     -> own majorities 1 | 1 (agree, wrong)
    rs = [R("a", 0, 2, "2"), R("a", 0, 2, "2"), R("a", 1, 2, "2"), R("a", 1, None, "2"),
          R("b", 0, 1, "9"), R("b", 0, 1, "9"), R("b", 1, 1, "9"), R("b", 1, 1, "9")]
    m = score_rollouts(rs, RewardConfig("co_reward")).metrics
    # co_reward: a0 labelled 2 -> 1,1 ; a1 labelled 2 -> 1,0 ; b all labelled 1 -> 1,1,1,1
    assert m["reward_mean"] == pytest.approx(7 / 8)
    assert m["empty_answer_rate"] == pytest.approx(1 / 8)
    # group majority ratios: 1, 1/2, 1, 1
    assert m["majority_ratio"] == pytest.approx(3.5 / 4)
    # entropies: 0, ln2 (one "2", one empty), 0, 0
    assert m["answer_entropy"] == pytest.approx(math.log(2) / 4)
    assert m["twin_agreement"] == 1.0
    assert m["zero_spread_group_rate"] == pytest.approx(3 / 4)  # a1 has 1,0
    assert m["label_nonempty_rate"] == 1.0
    # labels: a groups -> 2 (right), b groups -> 1 (wrong)
    assert m["pseudo_label_accuracy"] == 0.5
    assert m["answer_accuracy"] == pytest.approx(3 / 8)
    # reward right about correctness: a: 1,1 | 1,0(empty, wrong, reward 0: right) ;
    # b: all 1 but wrong
    assert m["reward_accuracy"] == pytest.approx(4 / 8)
    assert m["self_majority_accuracy"] == 0.5


def test_teacher_metrics():
    policy = [R("p", 0, 3, "3"), R("p", 0, 4, "3")]
    teacher = [R("p", 0, 3, None), R("p", 0, 3, None), R("p", 0, 4, None)]
    m = score_rollouts(policy, RewardConfig("co_rewarding_ii"), teacher=teacher).metrics
    assert m["teacher_majority_ratio"] == pytest.approx(2 / 3)
    assert m["teacher_label_accuracy"] == 1.0
    # policy's own majority is 3 (tie, first seen), the teacher's is 3
    assert m["teacher_policy_agreement"] == 1.0
