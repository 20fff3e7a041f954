"""One rank of the data-parallel fit test (run by test_data_parallel_fit.py, not pytest).

argv: rank world port out_dir configs_json. Megatron-core's parallel_state on gloo (TP 1,
PP 1, DP = world); for each config, the real ``ReinforceTrainer.fit`` drives
CoRewardGRPOTrainer with the CPU actor for two steps (fit_setup.build, rollouts keyed by
(pair, side) so every DP layout generates the same ones); writes what each rank trained
and its final weights to out_dir/rank<rank>.json.
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

from aligner.fit_setup import build, gloo_group, patch_cuda_for_cpu  # noqa: E402
from nemo_coreward.aligner.config import CoRewardConfig  # noqa: E402


def main():
    rank, world, port = map(int, sys.argv[1:4])
    out = Path(sys.argv[4])
    torch.set_num_threads(1)
    patch_cuda_for_cpu(setattr)
    with gloo_group(rank, world, port):
        results = []
        for spec in json.loads(sys.argv[5]):
            coreward = CoRewardConfig.from_mapping(spec["coreward"])
            trainer, actor, rec, _ = build(coreward, out / f"rank{rank}", keyed=True,
                                           random_sampler=False,
                                           global_batch_size=spec.get("global_batch_size"))
            trainer.fit()
            results.append({
                "loss_batches": [{k: v.tolist() for k, v in b.items()}
                                 for b in actor.loss_batches],
                "weights": {k: v.tolist() for k, v in actor.model.state_dict().items()},
                "optim_logs": [m for prefix, _, m in rec.metrics if prefix == "train_optim/"],
            })
        (out / f"rank{rank}.json").write_text(json.dumps(results))

if __name__ == "__main__":
    main()
