"""Co-Reward (and Co-rewarding-II): label-free RL for LLM reasoning on the NeMo stack.

The package imports without any GPU library. Subpackages, down the flow:
``answers`` (extract and compare final answers) <- ``reward`` (voting, Co-Reward,
baselines) <- ``rl`` (advantages, losses, teacher averaging) <- trainers
(``embedded``, ``aligner``) and the reward ``server``.
"""

__version__ = "0.1.0"
