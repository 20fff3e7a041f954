"""One rank of the multi-process scoring test (run by test_parallel_scoring.py, not pytest).

argv: rank world tp pp port out_dir. Megatron-core's parallel_state on gloo; each DP rank
"generates" a local batch in which the two sides of a pair sit on DIFFERENT DP ranks, the
batches are all-gathered over DP as NeMo-Aligner does, then RewardRouter scores them.
"""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from helpers import rollout_batch, scripted_rows  # noqa: E402

from nemo_coreward.aligner.scoring import ParallelLayout, RewardRouter  # noqa: E402
from nemo_coreward.reward import RewardConfig  # noqa: E402
from nemo_coreward.server import LocalScorer  # noqa: E402

NUM_PAIRS, NUM_ROLLOUTS = 8, 3


class RecordingScorer:
    def __init__(self):
        self.local = LocalScorer()
        self.calls = []

    def score(self, rollouts, config, teacher=None):
        self.calls.append({"reward": config.name,
                           "policy": sorted({(r.pair_id, r.side) for r in rollouts}),
                           "teacher": sorted({(r.pair_id, r.side) for r in teacher or []})})
        return self.local.score(rollouts, config, teacher)


def main():
    rank, world, tp, pp, port = map(int, sys.argv[1:6])
    out = Path(sys.argv[6])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            init_method=f"tcp://127.0.0.1:{port}")
    from megatron.core import parallel_state as ps

    ps.initialize_model_parallel(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    layout = ParallelLayout.from_megatron()
    dp_rank, dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()

    def gathered(seed):
        rows = scripted_rows(NUM_PAIRS, NUM_ROLLOUTS, seed=seed)
        # side s of pair p is generated on DP rank (p + s) % dp: twins split across ranks
        local = [r for r in rows if (r[0] + r[1]) % dp_size == dp_rank]
        parts = [None] * dp_size
        dist.all_gather_object(parts, local, group=ps.get_data_parallel_group())
        return [r for part in parts for r in part]

    policy_rows, teacher_rows = gathered(5), gathered(6)
    scorer = RecordingScorer()
    router = RewardRouter(scorer, layout)
    results = {}
    for name, teacher in (("co_reward", None), ("co_rewarding_combined", teacher_rows)):
        b = rollout_batch(policy_rows)
        decode = _decoder(policy_rows)
        t = None
        if teacher is not None:
            tb = rollout_batch(teacher)
            t = (tb["pair_id"], tb["side"], _decoder(teacher))
        rewards, metrics = router.score(RewardConfig(name=name), b["pair_id"], b["side"], decode,
                                        ground_truth=lambda p: str(p % 3 + 1), teacher=t)
        results[name] = {"rewards": rewards.tolist(), "metrics": metrics}
    info = {"rank": rank, "tp_rank": ps.get_tensor_model_parallel_rank(),
            "pp_rank": ps.get_pipeline_model_parallel_rank(), "dp_rank": dp_rank,
            "is_mp_src": layout.is_mp_src, "calls": scorer.calls, "results": results,
            "policy_rows": policy_rows, "teacher_rows": teacher_rows}
    (out / f"rank{rank}.json").write_text(json.dumps(info))
    dist.barrier()
    dist.destroy_process_group()


def _decoder(rows):
    texts = [text for _, _, text in rows]
    return lambda idx: [texts[i] for i in idx]


if __name__ == "__main__":
    main()
