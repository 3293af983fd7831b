"""Run by ``tests/test_distributed.py`` under ``torchrun --nproc_per_node 2``.

Trains the tiny model (supervised, then the GAN stage) with the engine's own DDP set-up and
writes, from rank 0, the final weights and which dataset indices each rank read.

Usage: ``python -m torch.distributed.run --standalone --nproc_per_node 2 _ddp_worker.py OUT``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from _tiny import TinyCritic, TinyNet, TinyPairs
from mrenhance.engine import distributed as ddp
from mrenhance.engine.training import SupervisedStep, Trainer, WGANGPStep

SUPERVISED = dict(batch_size=4, steps=3, seed=0, checkpoint_every=2, log_every=1)
SUPERVISED_LR = 1e-2
GAN = dict(batch_size=4, seed=0, steps=3, checkpoint_every=2, log_every=1)
GAN_STEP = dict(
    lr=1e-3,
    critic_warmup_steps=2,
    critic_steps_per_generator_step=2,
    extra_critic_every=2,
    extra_critic_steps=1,
)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    info = ddp.init_distributed("cpu")
    seen: list[int] = []
    trainer = Trainer(
        SupervisedStep(TinyNet(), lr=SUPERVISED_LR),
        TinyPairs(log=seen),
        run_dir=out / "sup",
        progress=False,
        **SUPERVISED,
    )
    trainer.fit()
    gan_seen: list[int] = []
    gan = Trainer(
        WGANGPStep(TinyNet(), TinyCritic(), **GAN_STEP),
        TinyPairs(log=gan_seen),
        run_dir=out / "gan",
        progress=False,
        **GAN,
    )
    result = gan.fit()
    with open(out / f"rank{info.rank}.json", "w") as fh:
        json.dump(
            {
                "rank": info.rank,
                "world_size": info.world_size,
                "is_main": info.is_main,
                "seen": seen,
                "gan_seen": gan_seen,
                "critic_steps": result.extra["critic_steps"],
            },
            fh,
        )
    if info.is_main:
        torch.save(
            {
                "sup": trainer.model.state_dict(),
                "gen": gan.step.model.state_dict(),
                "critic": gan.step.critic.state_dict(),
            },
            out / "weights.pt",
        )
    ddp.barrier()
    ddp.cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
