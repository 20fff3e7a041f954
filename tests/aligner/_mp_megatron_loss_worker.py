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
import torch.distributed as dist

HERE = Path(__file__).parent
if importlib.util.find_spec("tensorrt_llm") is None:  # as conftest.py does
    sys.path.insert(0, str(HERE / "_placeholders"))
sys.path.insert(0, str(HERE.parent))  # tests/: import this folder as the package "aligner"

from aligner.megatron_setup import (actor_on, full_batch_loss, global_batch,  # noqa: E402
                                    megatron_cpu_shims, tiny_gpt)

from nemo_coreward.rl import LossConfig  # noqa: E402

ROWS = 8


def main():
    rank, world, port = map(int, sys.argv[1:4])
    out = Path(sys.argv[4])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            init_method=f"tcp://127.0.0.1:{port}")
    from megatron.core import parallel_state as ps
    from nemo_aligner.utils.utils import configure_batch_sizes

    ps.initialize_model_parallel(1, 1)
    megatron_cpu_shims(setattr)
    configure_batch_sizes(mbs=1, gbs=ROWS, dp=world)
    results = []
    for agg in json.loads(sys.argv[5]):
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
        errors, checked = [], 0
        grads = dict(model.named_parameters())
        for name, ref in reference.named_parameters():
            if ref.grad is not None:
                diff = (grads[name].grad - ref.grad).abs().max()
                errors.append(float(diff / ref.grad.abs().max().clamp(min=1e-12)))
                checked += 1
        results.append({"loss": loss, "expected_loss": expected, "checked": checked,
                        "max_rel_grad_error": max(errors),
                        "grad_norm": float(sum(p.grad.norm() ** 2 for p in reference.parameters()
                                               if p.grad is not None) ** 0.5)})
    (out / f"rank{rank}.json").write_text(json.dumps(results))
    dist.barrier()
    ps.destroy_model_parallel()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
