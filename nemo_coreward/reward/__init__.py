"""Rewards: vote pseudo labels over equivalent answers and score rollouts against them.

Pure Python, no torch: the same code runs in both trainers and in the reward server.
``alarm`` reads the collapse metrics over a run's steps (majority ratio rising while
accuracy falls); both trainers stop on it and ``coreward report`` shows it.
"""
from nemo_coreward.reward.rewards import REWARDS, RewardSpec, reward_spec
from nemo_coreward.reward.scoring import RewardConfig, grader_for, score_rollouts
from nemo_coreward.reward.types import Rollout, Score, ScoredBatch
from nemo_coreward.reward.voting import Vote, majority_vote

__all__ = [
    "REWARDS",
    "RewardConfig",
    "RewardSpec",
    "Rollout",
    "Score",
    "ScoredBatch",
    "Vote",
    "grader_for",
    "majority_vote",
    "reward_spec",
    "score_rollouts",
]
