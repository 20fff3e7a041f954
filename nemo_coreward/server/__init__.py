"""The Co-Reward reward model server (PyTriton) and its client.

``coreward serve`` runs the Triton model ``co_reward`` (``app``, configured by
``conf/server/co_reward_server.yaml``); ``protocol`` is the tensor contract;
``RewardClient`` calls the server and ``LocalScorer`` scores in process with the same
interface. Importing this package does not import PyTriton; only serving and calling do.
"""
from nemo_coreward.server.client import (
    LocalScorer,
    RewardClient,
    RewardRequestError,
    RewardServerError,
    make_scorer,
)
from nemo_coreward.server.protocol import MODEL_NAME, ProtocolError

__all__ = [
    "MODEL_NAME",
    "LocalScorer",
    "ProtocolError",
    "RewardClient",
    "RewardRequestError",
    "RewardServerError",
    "make_scorer",
]
