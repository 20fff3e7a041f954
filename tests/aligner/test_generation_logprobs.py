"""The engine's log-probs of the sampled tokens without TensorRT-LLM (``aligner.actor``).

NeMo's sampling loop needs CUDA, so ``text_generation_utils.generate`` is replaced by a
recorder here; what runs for real is NeMo's ``megatron_gpt_generate`` (the call ours must
mirror), NeMo-Aligner's ``infer`` source (the call shape we shadow) and our wrapper.
"""
from __future__ import annotations

import ast
import inspect
import textwrap
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("nemo_aligner")

from nemo.collections.nlp.modules.common import text_generation_utils  # noqa: E402
from nemo_aligner.models.nlp.gpt.megatron_gpt_reinforce_actor import (  # noqa: E402
    MegatronGPTReinforceActorModel,
)

from nemo_coreward.aligner.actor import (  # noqa: E402
    generate_with_logprobs,
    infer_keeping_logprobs,
    low_precision_logits,
)

from .fit_setup import gloo_one_rank  # noqa: E402


@pytest.fixture
def recorded(monkeypatch):
    calls: list[dict] = []

    def fake_generate(model, **kwargs):
        calls.append(kwargs)
        return {"token_ids": [[1, 2, 3]], "logprob": torch.tensor([[-0.5, -1.25]])}

    monkeypatch.setattr(text_generation_utils, "generate", fake_generate)
    return calls


def _params():
    sampling = text_generation_utils.get_default_sampling_params()
    sampling.update(temperature=0.7, top_k=5, top_p=0.9, use_greedy=True, all_probs=True,
                    repetition_penalty=1.1, end_strings=["<|eot_id|>"], add_BOS=False)
    length = text_generation_utils.get_default_length_params()
    length.update(max_length=48, min_length=2)
    return sampling, length


def test_same_call_as_nemo_sampling_path_but_log_probs(recorded):
    sampling, length = _params()
    inputs = (torch.tensor([[5, 6, 7]]), torch.tensor([3]))
    strategy = object()
    text_generation_utils.megatron_gpt_generate(object(), inputs, None, length, sampling,
                                                strategy=strategy)
    generate_with_logprobs(object(), inputs, length, sampling, strategy)
    nemo, ours = recorded
    assert nemo["compute_logprob"] is False and ours["compute_logprob"] is True
    assert {k: v for k, v in ours.items() if k != "compute_logprob"} == \
        {k: v for k, v in nemo.items() if k != "compute_logprob"}


def test_upstream_infer_calls_generate_as_shadowed():
    source = textwrap.dedent(inspect.getsource(MegatronGPTReinforceActorModel.infer))
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and n.func.attr == "generate"
             and isinstance(n.func.value, ast.Name) and n.func.value.id == "self"]
    assert len(calls) == 1
    assert {k.arg for k in calls[0].keywords} == {"inputs", "length_params", "sampling_params",
                                                  "strategy"}
    assert 'actor_output["token_ids"]' in source


def test_rollout_carries_engine_log_probs(recorded):
    sampling, length = _params()
    actor = SimpleNamespace()

    def upstream_infer():  # what NeMo-Aligner's infer does with self.generate
        out = actor.generate(inputs=("tokens", "lengths"), length_params=length,
                             sampling_params=sampling, strategy=None)
        return {"response_tokens": torch.tensor(out["token_ids"])}

    with gloo_one_rank():  # the pipeline broadcast needs Megatron's parallel state
        rollout = infer_keeping_logprobs(actor, upstream_infer)
    assert recorded[0]["compute_logprob"] is True
    assert rollout["generation_logprobs"].dtype == torch.float32
    assert torch.equal(rollout["generation_logprobs"], torch.tensor([[-0.5, -1.25]]))
    assert not hasattr(actor, "generate")  # the shadow is gone after the call


def test_shadow_removed_when_infer_fails(recorded):
    actor = SimpleNamespace()

    def failing():
        raise RuntimeError("engine died")

    with pytest.raises(RuntimeError, match="engine died"):
        infer_keeping_logprobs(actor, failing)
    assert not hasattr(actor, "generate")


@pytest.mark.parametrize("precision,low", [("bf16-mixed", True), ("bf16", True), (16, True),
                                           ("16-mixed", True), ("32-true", False), (32, False)])
def test_only_low_precision_logits_ask(precision, low):
    assert low_precision_logits(precision) is low
