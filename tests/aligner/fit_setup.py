"""One CoRewardGRPOTrainer over the real NeMo-Aligner fit loop with the CPU actor, shared by
the one-process tests (test_trainer_cpu.py) and the data-parallel worker (_mp_fit_worker.py).

Only ``torch.cuda.current_device`` and ``torch.cuda.synchronize`` are patched (NeMo-Aligner
allocates its gather buffers on the current CUDA device), and gloo is given a 0-d count as
(1,) (``patch_cuda_for_cpu``).
"""
from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch
from omegaconf import OmegaConf

from nemo_coreward.aligner.config import CoRewardConfig
from nemo_coreward.aligner.data import TwinPromptDataset, twin_collate
from nemo_coreward.aligner.scoring import ParallelLayout, RewardRouter
from nemo_coreward.aligner.teacher import TeacherRollouts, TeacherStore, teacher_from_state
from nemo_coreward.data.records import PairRecord
from nemo_coreward.server import LocalScorer

from .cpu_actor import CpuActor, Recorder
from .helpers import CharTokenizer

PAIRS_PER_STEP, N = 4, 3


@contextlib.contextmanager
def gloo_group(rank: int, world: int, port: int) -> Iterator[None]:
    """A gloo process group with Megatron-core's parallel_state (TP 1, PP 1, DP = world)."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    dist.init_process_group("gloo", rank=rank, world_size=world,
                            init_method=f"tcp://127.0.0.1:{port}")
    ps.initialize_model_parallel(1, 1)
    try:
        yield
        dist.barrier()
    finally:
        ps.destroy_model_parallel()
        dist.destroy_process_group()


def gloo_one_rank() -> contextlib.AbstractContextManager[None]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return gloo_group(0, 1, port)


def patch_cuda_for_cpu(setattr_: Callable[[Any, str, Any], None]) -> None:
    """Apply the CPU patches with ``setattr_`` (pytest's ``monkeypatch.setattr`` or ``setattr``)."""
    setattr_(torch.cuda, "current_device", lambda: "cpu")
    setattr_(torch.cuda, "synchronize", lambda *a, **k: None)
    # NeMo-Aligner's rebalance_nd_tensor all-gathers a 0-d count, which NCCL accepts and
    # gloo refuses ("expected (), got (1)"): give gloo the same count as a (1,) tensor.
    gather = torch.distributed.all_gather_into_tensor

    def gather_0d_as_1d(output, inp, *args, **kwargs):
        return gather(output, inp.reshape(1) if inp.dim() == 0 else inp, *args, **kwargs)

    setattr_(torch.distributed, "all_gather_into_tensor", gather_0d_as_1d)


def build(coreward: CoRewardConfig, tmp_path, teacher: bool = False, max_steps: int = 2,
          interval: int = 2, alarm_history=None, time_limit_after=None, keyed: bool = False,
          random_sampler: bool = True, global_batch_size: int | None = None,
          model_cfg: dict | None = None, seq_length: int | None = None,
          engine_drops_bias: bool = False):
    """(trainer, actor, recorder, datasets). ``random_sampler`` False: pairs in order, so
    every DP layout trains the same pairs in a step; ``model_cfg`` becomes ``actor.cfg``
    (fp8, sequence_parallel, tensor_model_parallel_size)."""
    from nemo_aligner.data.nlp.builders import build_dataloader
    from nemo_aligner.utils.batch_iterators import get_batch_iterator_cls

    from nemo_coreward.aligner.trainer import CoRewardGRPOTrainer

    sides = coreward.policy_sides
    cfg = OmegaConf.create({
        "model": {"seed": 7, "data": {"num_workers": 0}},
        "trainer": {"grpo": {
            "max_epochs": 1, "max_steps": max_steps, "val_check_interval": interval,
            "save_interval": interval,
            "gradient_clip_val": 0, "initial_policy_kl_penalty": 0.0, "use_absolute_kl": True,
            "num_rollouts_per_prompt": N, "rollout_batch_seq_length": seq_length,
            "model_gbs": global_batch_size or PAIRS_PER_STEP * sides * N, "model_mbs": 1}}})
    records = [PairRecord(f"r{i}", f"What is {i}+{i}?", (f"Twice {i}?",), str(i % 2 + 1))
               for i in range(12)]
    datasets = {name: TwinPromptDataset(records[:n], CharTokenizer(), max_prompt_length=64,
                                        data=coreward.data, name=name)
                for name, n in (("train", 12), ("validation", 4))}
    collate = partial(twin_collate, response_length=16, eos_id=0)
    actor = CpuActor(coreward.loss_config(), keyed=keyed, engine_drops_bias=engine_drops_bias)
    if model_cfg is not None:
        actor.cfg = OmegaConf.create(model_cfg)
    if teacher:
        actor.teacher = TeacherRollouts(teacher_from_state(actor.model.state_dict()),
                                        coreward.teacher.averaging(), actor.engine_weights)
        actor.init_policy_state_dict = actor.teacher.state
    optimizer = torch.optim.SGD(actor.model.parameters(), lr=0.5)
    recorder = Recorder(time_limit_after)
    trainer = CoRewardGRPOTrainer(
        cfg=cfg.trainer.grpo, model=actor, optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
        train_dataloader_builder=partial(build_dataloader, cfg=cfg, dataset=datasets["train"],
                                         mbs=2, gbs=PAIRS_PER_STEP, collate_fn=collate,
                                         load_gbs=False, use_random_sampler=random_sampler),
        val_dataloader_builder=partial(build_dataloader, cfg=cfg, dataset=datasets["validation"],
                                       mbs=2, gbs=4, collate_fn=collate, load_gbs=False,
                                       use_random_sampler=False),
        collate_fn=collate, rm=RewardRouter(LocalScorer(), ParallelLayout.from_megatron()),
        batch_iterator_cls=get_batch_iterator_cls({}), logger=recorder, ckpt_callback=recorder,
        run_timer=recorder, coreward=coreward,
        teacher_store=TeacherStore(tmp_path / "teacher") if teacher else None,
        alarm_history=alarm_history)
    return trainer, actor, recorder, datasets
