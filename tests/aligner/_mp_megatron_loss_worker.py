"""One DP rank of the Megatron loss test (run by test_actor_loss_megatron.py, not pytest).

argv: rank world port out_dir aggs_json. Each rank trains its half of an 8-row global batch
(4 micro-batches of one sequence) with the real actor's ``get_loss_and_metrics``, then NeMo's
``allreduce_gradients`` averages over DP; the result is compared with one full-batch
autograd pass over all 8 rows, written to out_dir/rank<rank>.json.
"""
import importlib.util
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent
if importlib.util.find_spec("tensorrt_llm") is None:  # as conftest.py does
    sys.path.insert(0, str(HERE / "_placeholders"))
sys.path.insert(0, str(HERE.parent))  # tests/: import this folder as the package "aligner"

from aligner.fit_setup import gloo_group  # noqa: E402
from aligner.megatron_setup import (  # noqa: E402
    actor_on,
    full_batch_loss,
    global_batch,
    megatron_cpu_shims,
    tiny_gpt,
)
from nemo_coreward.rl import LossConfig  # noqa: E402

ROWS = 8


def main():
    rank, world, port = map(int, sys.argv[1:4])
    out = Path(sys.argv[4])
    torch.set_num_threads(1)
    with gloo_group(rank, world, port):
        from nemo_aligner.utils.utils import configure_batch_sizes

        megatron_cpu_shims(setattr)
        configure_batch_sizes(mbs=1, gbs=ROWS, dp=world)
        results = [_one(rank, world, agg) for agg in json.loads(sys.argv[5])]
        (out / f"rank{rank}.json").write_text(json.dumps(results))


def _one(rank: int, world: int, agg: str) -> dict:
    loss_cfg = LossConfig(kl_coef=0.05, agg=agg)
    model, reference = tiny_gpt(), tiny_gpt()
    reference.load_state_dict(model.state_dict())
    batch, sides = global_batch(ROWS, agg)
    per_rank = ROWS // world
    local = {k: v[rank * per_rank:(rank + 1) * per_rank] for k, v in batch.items()}
    actor = actor_on(model, loss_cfg)
    loss, _ = actor.get_loss_and_metrics(local, forward_only=False)
    actor.allreduce_gradients()  # NeMo's DP gradient reduction (averages)
    expected = full_batch_loss(reference, batch, sides, loss_cfg)
    errors = []
    grads = dict(model.named_parameters())
    for name, ref in reference.named_parameters():
        if ref.grad is not None:
            diff = (grads[name].grad - ref.grad).abs().max()
            errors.append(float(diff / ref.grad.abs().max().clamp(min=1e-12)))
    norm = sum(p.grad.norm() ** 2 for p in reference.parameters() if p.grad is not None) ** 0.5
    return {"loss": loss, "expected_loss": expected, "checked": len(errors),
            "max_rel_grad_error": max(errors), "grad_norm": float(norm)}

if __name__ == "__main__":
    main()
