"""Each reward on small hand-built batches; expected rewards worked out in comments."""
import pytest

from nemo_coreward.reward import REWARDS, RewardConfig, Rollout, reward_spec, score_rollouts


def box(x):
    return f"so \\boxed{{{x}}}"


def R(pair, side, ans, gt=None, **kw):
    return Rollout(pair, side, box(ans) if ans is not None else "no answer", gt, **kw)


# Pair "a": side 0 answers 2,2,3 ; side 1 answers 3,(none),3  -> majorities 2 | 3
BATCH = [R("a", 0, 2, "2"), R("a", 0, 2, "2"), R("a", 0, 3, "2"),
         R("a", 1, 3, "2"), R("a", 1, None, "2"), R("a", 1, 3, "2")]


def test_co_reward_uses_the_other_side():
    s = score_rollouts(BATCH, RewardConfig("co_reward"))
    # side 0 is labelled by side 1's majority (3): only its "3" earns 1
    # side 1 is labelled by side 0's majority (2): nobody on side 1 said 2
    assert s.rewards == [0, 0, 1, 0, 0, 0]
    assert [x.label for x in s.scores] == ["3", "3", "3", "2", "2", "2"]
    assert s.scores[4].failure == "no_answer"


def test_majority_uses_its_own_group():
    s = score_rollouts(BATCH, RewardConfig("majority"))
    assert s.rewards == [1, 1, 0, 1, 0, 1]


def test_ground_truth():
    s = score_rollouts(BATCH, RewardConfig("ground_truth"))
    assert s.rewards == [1, 1, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="has no ground_truth"):
        score_rollouts([R("a", 0, 1)], RewardConfig("ground_truth"))


def test_k_rephrasings_pool_the_other_sides():
    # side 0: 7,7 ; side 1: 5,5 ; side 2: 5,7,7 -> for side 0 the pool is 5,5,5,7,7 -> 5
    # for side 1 the pool is 7,7,5,7,7 -> 7 ; for side 2 the pool is 7,7,5,5 -> tie, 7 first
    rs = [R(1, 0, 7), R(1, 0, 7), R(1, 1, 5), R(1, 1, 5), R(1, 2, 5), R(1, 2, 7), R(1, 2, 7)]
    s = score_rollouts(rs, RewardConfig("co_reward"))
    assert [x.label for x in s.scores] == ["5", "5", "7", "7", "7", "7", "7"]
    assert s.rewards == [0, 0, 0, 0, 0, 1, 1]


def test_empty_label_gives_zero():
    rs = [R("p", 0, 1), R("p", 1, None), R("p", 1, None)]
    s = score_rollouts(rs, RewardConfig("co_reward"))
    assert s.rewards[0] == 0.0 and s.scores[0].failure == "empty_label"


def test_twin_reward_needs_both_sides():
    with pytest.raises(ValueError, match="pair 'solo' has rollouts for side 0 only"):
        score_rollouts([R("solo", 0, 1)], RewardConfig("co_reward"))


def test_equivalence_modes_change_votes():
    rs = [R("q", 0, r"\frac{1}{2}"), R("q", 1, "0.5"), R("q", 1, "0.5")]
    assert score_rollouts(rs, RewardConfig("co_reward", "exact")).rewards[0] == 0.0
    assert score_rollouts(rs, RewardConfig("co_reward", "normalized")).rewards[0] == 1.0


def test_co_rewarding_ii_votes_in_the_teacher_group():
    policy = [R("p", 0, 4), R("p", 0, 5)]
    teacher = [R("p", 0, 5), R("p", 0, 5), R("p", 0, 4)]
    s = score_rollouts(policy, RewardConfig("co_rewarding_ii"), teacher=teacher)
    assert s.rewards == [0, 1]
    with pytest.raises(ValueError, match="needs teacher rollouts"):
        score_rollouts(policy, RewardConfig("co_rewarding_ii"))
    with pytest.raises(ValueError, match="none for"):
        score_rollouts(policy, RewardConfig("co_rewarding_ii"), teacher=[R("other", 0, 1)])


def test_combined_official_shape_policy_on_the_question_teacher_on_the_rephrasings():
    # The policy rolls out side 0 only; the teacher rolls out sides 1 and 2 only. Teacher
    # pool for pair "p": side 1 says 5,5 ; side 2 says 4 -> 5,5,4 -> label 5.
    # Pair "q": teacher side 1 gives no answer at all -> empty label, reward 0.
    policy = [R("p", 0, 4), R("p", 0, 5), R("q", 0, 7)]
    teacher = [R("p", 1, 5), R("p", 1, 5), R("p", 2, 4), R("q", 1, None)]
    s = score_rollouts(policy, RewardConfig("co_rewarding_combined"), teacher=teacher)
    assert s.rewards == [0, 1, 0]
    assert [x.label for x in s.scores] == ["5", "5", ""]
    assert s.scores[2].failure == "empty_label"
    # A teacher on the question itself cannot label it: that would be Co-rewarding-II.
    with pytest.raises(ValueError, match="pair 'p' side 0 needs the teacher's rollouts on "
                                         "another side"):
        score_rollouts(policy[:2], RewardConfig("co_rewarding_combined"),
                       teacher=[R("p", 0, 5)])


def test_reward_specs_say_which_sides_each_model_rolls_out():
    combined, ii = reward_spec("co_rewarding_combined"), reward_spec("co_rewarding_ii")
    assert [combined.policy_rolls_out(s) for s in (0, 1, 2)] == [True, False, False]
    assert [combined.teacher_rolls_out(s) for s in (0, 1, 2)] == [False, True, True]
    assert [ii.teacher_rolls_out(s) for s in (0, 1)] == [True, True]  # the policy's sides
    assert reward_spec("co_reward").policy_rolls_out(1)


def test_combined_votes_in_the_teacher_twin_group():
    # Any policy side is labelled by the teacher's rollouts on the other sides of its pair.
    policy = [R("p", 0, 4), R("p", 0, 5), R("p", 1, 4)]
    # teacher on side 1 says 5 -> labels side 0; teacher on side 0 says 4 -> labels side 1
    teacher = [R("p", 1, 5), R("p", 1, 5), R("p", 0, 4)]
    s = score_rollouts(policy, RewardConfig("co_rewarding_combined"), teacher=teacher)
    assert s.rewards == [0, 1, 1]


def test_token_stat_rewards():
    rs = [R("p", 0, 1, self_certainty=2.5, entropy=0.5),
          R("p", 0, 1, self_certainty=1.0, entropy=2.0)]
    assert score_rollouts(rs, RewardConfig("self_certainty")).rewards == [2.5, 1.0]
    assert score_rollouts(rs, RewardConfig("entropy")).rewards == [-0.5, -2.0]
    with pytest.raises(ValueError, match="has no entropy"):
        score_rollouts([R("p", 0, 1)], RewardConfig("entropy"))


def test_registry_and_config_errors_name_the_key():
    assert {"co_reward", "majority", "ground_truth", "self_certainty", "entropy",
            "co_rewarding_ii", "co_rewarding_combined"} <= set(REWARDS.names())
    assert reward_spec("co_reward").needs_twins and reward_spec("co_rewarding_ii").needs_teacher
    with pytest.raises(ValueError, match=r"reward.name: unknown reward 'cor'.*co_reward"):
        RewardConfig("cor")
    with pytest.raises(ValueError, match="reward.equivalence"):
        RewardConfig(equivalence="fuzzy")
    with pytest.raises(ValueError, match="reward.fallbacks"):
        RewardConfig(fallbacks=("guess",))


def test_bad_rollout_fields_are_named():
    with pytest.raises(ValueError, match="policy rollout 0: side must be an integer"):
        score_rollouts([Rollout("p", -1, "x")], RewardConfig("majority"))
    with pytest.raises(ValueError, match="disagree on ground_truth"):
        score_rollouts([R("p", 0, 1, "1"), R("p", 0, 1, "2")], RewardConfig("majority"))


def test_empty_batch():
    assert score_rollouts([], RewardConfig()).scores == []
