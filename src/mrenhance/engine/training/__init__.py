"""Training: one loop (:class:`Trainer`) and pluggable steps (:data:`STEPS`).

``Trainer(step, dataset, steps=..., batch_size=..., run_dir=...).fit(resume=False,
stop_at=None)`` runs any :class:`Step`; see :mod:`.loop` for the exact-resume and DDP
discipline and :mod:`.steps` for the step interface.
"""

from mrenhance.engine.training.loop import (
    Trainer,
    TrainResult,
    as_item,
    collate_items,
    rank_batch_indices,
)
from mrenhance.engine.training.schedule import (
    OPTIMIZERS,
    OptimizerSpec,
    build_optimizer,
    lr_at_step,
)
from mrenhance.engine.training.steps import (
    STEPS,
    GANStep,
    Step,
    StepContext,
    SupervisedStep,
    WGANGPStep,
    create_step,
    critic_steps_before,
    gan_schedule,
    list_steps,
    register_step,
)

__all__ = [
    "OPTIMIZERS",
    "STEPS",
    "GANStep",
    "OptimizerSpec",
    "Step",
    "StepContext",
    "SupervisedStep",
    "TrainResult",
    "Trainer",
    "WGANGPStep",
    "as_item",
    "build_optimizer",
    "collate_items",
    "create_step",
    "critic_steps_before",
    "gan_schedule",
    "list_steps",
    "lr_at_step",
    "rank_batch_indices",
    "register_step",
]
