"""Optimisers and learning-rate schedules, as plain functions of the recipe's values.

The learning rate of every update is a pure function of the step (:func:`lr_at_step`), so
a checkpoint needs only the step to restore it, and a resumed run sets exactly the rates an
uninterrupted run would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mrenhance.config import ScheduleConfig, parse_schedule
from mrenhance.errors import ConfigError

__all__ = [
    "OPTIMIZERS",
    "OptimizerSpec",
    "build_optimizer",
    "lr_at_step",
]


def lr_at_step(
    step: int,
    *,
    base_lr: float,
    schedule: str | ScheduleConfig | dict[str, Any] = "constant",
    warmup_steps: int = 0,
    total_steps: int = 1,
    steps_per_epoch: int = 0,
) -> float:
    """Learning rate of the update with 0-based index ``step``.

    Linear warm-up ``base_lr * (step + 1) / warmup_steps`` for the first ``warmup_steps``
    updates, then, with ``t`` the units (steps, or epochs for ``unit: epoch``) after the
    warm-up and ``T`` the last unit: ``constant``; ``cosine`` from ``base_lr`` to ``min_lr``
    at ``T``; ``linear`` likewise on a straight line; ``step``: ``base_lr * gamma **
    (t // step_size)``.

    Parameters
    ----------
    step, warmup_steps, total_steps:
        Optimiser steps (``total_steps``: the run's length).
    steps_per_epoch:
        Steps in one epoch when the schedule counts epochs (its own ``steps_per_epoch``
        takes precedence when set).

    Raises
    ------
    ConfigError
        Unknown schedule, ``step`` without ``step_size``, epochs without their length.
    """
    sched = parse_schedule(schedule)
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t, last = step - warmup_steps, max(total_steps - warmup_steps - 1, 0)
    if sched.unit == "epoch":
        per_epoch = sched.steps_per_epoch or steps_per_epoch
        if per_epoch <= 0:
            raise ConfigError(
                "lr_schedule.steps_per_epoch: 'epoch' schedules need it (or a dataset "
                "with a length)"
            )
        t, last = t // per_epoch, last // per_epoch
    if sched.name == "constant":
        return base_lr
    if sched.name in ("cosine", "linear"):
        frac = min(t / last, 1.0) if last > 0 else 1.0
        if sched.name == "linear":
            return base_lr + (sched.min_lr - base_lr) * frac
        return sched.min_lr + (base_lr - sched.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))
    if sched.name == "step":
        if sched.step_size <= 0:
            raise ConfigError("lr_schedule 'step': step_size must be > 0")
        return base_lr * sched.gamma ** (t // sched.step_size)
    raise ConfigError(f"lr_schedule {sched.name!r}: unknown (constant, cosine, linear, step)")


def _adam(cls: type) -> Callable[..., torch.optim.Optimizer]:
    def make(params: Any, lr: float, betas: Sequence[float], weight_decay: float, momentum: float):
        return cls(
            params, lr=lr, betas=(float(betas[0]), float(betas[1])), weight_decay=weight_decay
        )

    return make


#: Registry of optimisers: name -> ``make(params, lr, betas, weight_decay, momentum)``.
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": _adam(torch.optim.Adam),
    "adamw": _adam(torch.optim.AdamW),
    "sgd": lambda params, lr, betas, weight_decay, momentum: torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay
    ),
    "rmsprop": lambda params, lr, betas, weight_decay, momentum: torch.optim.RMSprop(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay
    ),
}


def build_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    lr: float,
    betas: Sequence[float] = (0.9, 0.999),
    weight_decay: float = 0.0,
    momentum: float = 0.0,
) -> torch.optim.Optimizer:
    """A registered optimiser over ``params`` (betas: Adam family; momentum: SGD/RMSprop)."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer {name!r}: unknown ({', '.join(sorted(OPTIMIZERS))})")
    return OPTIMIZERS[name](params, float(lr), betas, float(weight_decay), float(momentum))


@dataclass
class OptimizerSpec:
    """One optimiser and its learning-rate schedule, as a recipe states them.

    Attributes
    ----------
    type: a name in :data:`OPTIMIZERS`. lr: base learning rate. betas, weight_decay,
    momentum: as in :func:`build_optimizer`. schedule, warmup_steps: see :func:`lr_at_step`.
    """

    type: str = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    momentum: float = 0.0
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        self.schedule = parse_schedule(self.schedule)
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.type not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.type!r}: unknown ({', '.join(sorted(OPTIMIZERS))})")
        lr_at_step(0, base_lr=1.0, schedule=self.schedule, steps_per_epoch=1)  # validate early

    @classmethod
    def from_section(cls, section: Any, lr: float | None = None) -> OptimizerSpec:
        """From a ``train`` or ``gan`` section (``optimizer``, ``lr``, ``betas``, ...)."""
        return cls(
            type=section.optimizer,
            lr=float(section.lr if lr is None else lr),
            betas=tuple(section.betas),
            weight_decay=section.weight_decay,
            momentum=section.momentum,
            schedule=section.lr_schedule,
            warmup_steps=section.warmup_steps,
        )

    def build(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return build_optimizer(
            self.type, params, self.lr, self.betas, self.weight_decay, self.momentum
        )

    def lr_at(self, step: int, total_steps: int, steps_per_epoch: int = 0) -> float:
        return lr_at_step(
            step,
            base_lr=self.lr,
            schedule=self.schedule,
            warmup_steps=self.warmup_steps,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
        )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr
