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
    # majorities: pair a answers 2, pair b answers 1: no answer shared across pairs
    assert m["shared_answer_rate"] == 0.0


def test_shared_answer_rate_sees_every_question_answered_alike():
    # Four questions, twins agreeing on each: a healthy batch answers 4, 6, 8, 8 (one
    # coincidence: (2 - 1) / 3); a collapsed one answers 0 everywhere ((4 - 1) / 3 = 1),
    # with twin agreement 1.0 all the same.
    def batch(answers):
        return [R(p, side, a, str(p)) for p, a in zip("abcd", answers) for side in (0, 1)
                for _ in range(2)]

    healthy = score_rollouts(batch([4, 6, 8, 8]), RewardConfig("co_reward")).metrics
    assert healthy["shared_answer_rate"] == pytest.approx(1 / 3)
    collapsed = score_rollouts(batch([0, 0, 0, 0]), RewardConfig("co_reward")).metrics
    assert collapsed["shared_answer_rate"] == 1.0 and collapsed["twin_agreement"] == 1.0
    # One pair with an answer: no rate (nothing to share with).
    one = score_rollouts([R("a", 0, 1, "1"), R("b", 0, None, "2")], RewardConfig("majority"))
    assert "shared_answer_rate" not in one.metrics


def test_teacher_metrics():
    policy = [R("p", 0, 3, "3"), R("p", 0, 4, "3")]
    teacher = [R("p", 0, 3, None), R("p", 0, 3, None), R("p", 0, 4, None)]
    m = score_rollouts(policy, RewardConfig("co_rewarding_ii"), teacher=teacher).metrics
    assert m["teacher_majority_ratio"] == pytest.approx(2 / 3)
    assert m["teacher_label_accuracy"] == 1.0
    # policy's own majority is 3 (tie, first seen), the teacher's is 3
    assert m["teacher_policy_agreement"] == 1.0
