"""Training steps: what one iteration of the loop does with its batches.

The loop (:mod:`.loop`) owns time: the batch counter, checkpoints, logs, validation, DDP
set-up, gradient clipping and divergence checks. A step owns the networks, their
optimisers and losses, and says how many batches each iteration takes. Steps are
registered by name (:data:`STEPS`), the ``type:`` a recipe names:

* ``supervised`` (:class:`SupervisedStep`): one batch, any registered loss.
* ``wgan-gp`` (:class:`WGANGPStep`): mDCSRN's critic/generator schedule (Sec. 3.2).
* ``gan`` (:class:`GANStep`): a BCE discriminator and pixel + adversarial (+ feature)
  generator loss (SRGAN, Ledig et al. 2017; the DTI SRGAN paper Sec. 4).

**Iterations and sub-updates.** Iteration ``step`` (0-based; what ``steps``,
``val_every``, ``checkpoint_every`` and ``log_every`` count) consumes
``updates_in(step)`` global batches, one per sub-update ``0 .. n - 1``; the last one is the
*main* update (the generator's, for a GAN). Batches are numbered in the order they are
used, so iteration ``step`` starts at batch ``updates_before(step)``: this closed form is
what lets a checkpoint taken mid-iteration resume on exactly the right batch.

A batch is a dict of tensors on the device: ``inputs`` ``(B, C, *spatial)``, ``target``
``(B, C', *spatial')`` (``spatial'`` may be a multiple of ``spatial`` for scaled pairs)
and optionally ``mask`` and other keys a step may read.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from mrenhance.engine import distributed as ddp
from mrenhance.engine.training.schedule import OptimizerSpec, set_lr
from mrenhance.errors import ConfigError
from mrenhance.losses import (
    bce_discriminator_loss,
    bce_generator_loss,
    create_loss,
    critic_loss_terms,
    generator_adversarial_loss,
)

__all__ = [
    "STEPS",
    "GANStep",
    "NonFiniteLoss",
    "Step",
    "StepContext",
    "SupervisedStep",
    "WGANGPStep",
    "create_step",
    "critic_steps_before",
    "gan_schedule",
    "list_steps",
    "register_step",
]

Batch = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Registry of training steps: ``type`` name -> Step class.
STEPS: dict[str, type[Step]] = {}


def register_step(name: str) -> Callable[[type[Step]], type[Step]]:
    """Class decorator registering a :class:`Step` under ``name`` (its ``kind``)."""

    def deco(cls: type[Step]) -> type[Step]:
        if name in STEPS:
            raise ValueError(f"step {name!r} is already registered")
        cls.kind = name
        STEPS[name] = cls
        return cls

    return deco


def list_steps() -> list[str]:
    """The registered step names, sorted."""
    return sorted(STEPS)


def create_step(type: str, /, **kwargs: Any) -> Step:  # noqa: A002 - the recipe's key
    """Build a registered step: ``create_step("wgan-gp", generator=g, critic=c, lr=5e-6)``.

    Raises
    ------
    ConfigError
        Unknown name, or arguments the step does not take.
    """
    if type not in STEPS:
        raise ConfigError(f"step {type!r}: unknown step (known: {', '.join(list_steps())})")
    try:
        return STEPS[type](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"step {type!r}: bad arguments ({exc})") from None


class NonFiniteLoss(Exception):
    """Raised by :meth:`StepContext.optimise` before an update with a NaN/Inf loss."""

    def __init__(self, what: str, value: float) -> None:
        super().__init__(f"{what} is {value}")
        self.what, self.value = what, value


@dataclass
class StepContext:
    """What the loop lends a step: the process, the batch size and the shared update rule.

    Attributes
    ----------
    info: this process (rank, world size, device). batch_size: the global batch size.
    seed: the run's seed. amp: bfloat16 autocast. grad_clip: max global L2 gradient norm.
    total_steps: iterations in the whole run (for schedules). steps_per_epoch: for
    epoch-based schedules (0 = unknown).
    """

    info: ddp.DistInfo
    batch_size: int
    seed: int
    amp: bool = False
    grad_clip: float | None = None
    total_steps: int = 1
    steps_per_epoch: int = 0

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.info.device.type, dtype=torch.bfloat16)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` under DDP when distributed, else itself."""
        return ddp.wrap_ddp(module, self.info)

    def rank_share(self, values: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a tensor drawn for the whole global batch."""
        share = self.batch_size // self.info.world_size
        return values[self.info.rank * share : (self.info.rank + 1) * share]

    def reduce(self, stats: dict[str, torch.Tensor]) -> dict[str, float]:
        """Global-batch means of scalar tensors (one all-reduce for all of them)."""
        keys = list(stats)
        parts = torch.stack([stats[k].detach().float().reshape(()) for k in keys])
        return dict(zip(keys, ddp.all_reduce_mean(parts).tolist(), strict=True))

    def optimise(
        self,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        parameters: Iterator[nn.Parameter] | list[nn.Parameter],
        stats: dict[str, float],
        what: str,
    ) -> None:
        """Check ``stats`` are finite, then ``zero_grad``, ``backward``, clip, ``step``.

        Raises
        ------
        NonFiniteLoss
            Some global statistic is NaN or Inf; no update is made (the loop turns this
            into :class:`~mrenhance.errors.TrainingDivergedError`).
        """
        bad = [v for v in stats.values() if not math.isfinite(v)]
        if bad:
            own = stats.get(what.replace(" ", "_"))
            raise NonFiniteLoss(what, own if own is not None and not math.isfinite(own) else bad[0])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(list(parameters), self.grad_clip)
        optimizer.step()


def _as_loss(loss: str | LossFn) -> LossFn:
    return create_loss(loss) if isinstance(loss, str) else loss


def _loss_name(loss: str | LossFn) -> str:
    return loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__)


def _name_of(model: nn.Module) -> str:
    return getattr(model, "mrenhance_name", type(model).__name__)


def _as_spec(spec: OptimizerSpec | dict[str, Any] | None, default_lr: float) -> OptimizerSpec:
    if spec is None:
        return OptimizerSpec(lr=default_lr)
    return spec if isinstance(spec, OptimizerSpec) else OptimizerSpec(**spec)


class Step:
    """The interface between the loop and a training method (see the module docstring).

    Subclasses set ``columns`` (``metrics.csv`` statistics), ``main_loss`` (the statistic
    reported as the run's loss), ``pinned`` (settings a resume must not change) and
    implement :meth:`setup`, :meth:`update`, :meth:`state_dict`, :meth:`load_state_dict`.
    """

    kind: ClassVar[str] = "step"
    sub_name: ClassVar[str] = "sub"  # what a non-main update is called ("critic")
    main_event: ClassVar[str] = "step"  # callback kind of a main update
    columns: ClassVar[tuple[str, ...]] = ("loss",)
    main_loss: ClassVar[str] = "loss"
    progress_key: ClassVar[str] = "loss"
    pinned: ClassVar[tuple[str, ...]] = ()

    #: The network that is validated, selected by ``best.pt`` and shipped.
    model: nn.Module

    # -- the schedule of batches ----------------------------------------------------------
    def updates_in(self, step: int) -> int:
        """Global batches iteration ``step`` consumes (>= 1; the last is the main update)."""
        return 1

    def updates_before(self, step: int) -> int:
        """Batches consumed before iteration ``step`` starts: ``sum(updates_in(j) for j <
        step)`` in closed form."""
        return step

    def long_iteration(self, step: int) -> bool:
        """Whether iteration ``step`` is long enough to log and checkpoint inside it."""
        return False

    def counters(self, step: int, sub: int) -> dict[str, int]:
        """Extra ``metrics.csv`` counters at position (``step``, ``sub`` updates done)."""
        return {}

    # -- training -------------------------------------------------------------------------
    def setup(self, ctx: StepContext, state: dict[str, Any] | None) -> None:
        """Move networks to the device, build optimisers, load ``state`` (a checkpoint) or
        seed the step's own generators, and wrap for DDP."""
        raise NotImplementedError

    def set_lr(self, step: int) -> float:
        """Set the learning rates of iteration ``step``; returns the main one."""
        raise NotImplementedError

    def update(self, batch: Batch, step: int, sub: int, ctx: StepContext) -> dict[str, float]:
        """Sub-update ``sub`` of iteration ``step`` on this rank's share of a global batch;
        returns global statistics (means over the global batch)."""
        raise NotImplementedError

    # -- checkpoints ----------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        """Checkpoint key -> network (plain modules, never DDP wrappers)."""
        return {"model": self.model}

    def state_dict(self) -> dict[str, Any]:
        """Everything the step changes: weights, optimiser moments, its own RNG states."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """Plain values recorded in ``trainer.json`` and checked on resume (``pinned``)."""
        return {}


# --------------------------------------------------------------------------------------
# Supervised
# --------------------------------------------------------------------------------------


@register_step("supervised")
class SupervisedStep(Step):
    """``loss(model(inputs), target)`` minimised by one optimiser, one batch per step.

    Parameters
    ----------
    model:
        Maps ``(batch, channel, *spatial)`` inputs to outputs of the target's shape.
    loss:
        A name in :data:`mrenhance.losses.LOSSES` or a callable ``(pred, target) ->
        scalar``. mDCSRN Sec. 2.5 Eq. 4: ``"l1"``.
    optimizer:
        An :class:`~.schedule.OptimizerSpec` (or its fields as a dict); default Adam at
        ``lr`` (mDCSRN Sec. 3.2: Adam, 1e-4).
    lr:
        The learning rate when ``optimizer`` is None.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        loss: str | LossFn = "l1",
        optimizer: OptimizerSpec | dict[str, Any] | None = None,
        lr: float = 1e-4,
    ) -> None:
        self.model = model
        self.loss_name = _loss_name(loss)
        self.loss_fn = _as_loss(loss)
        self.spec = _as_spec(optimizer, lr)
        self.optimizer: torch.optim.Optimizer | None = None
        self._net: nn.Module = model
        self._ctx: StepContext | None = None

    def setup(self, ctx: StepContext, state: dict[str, Any] | None) -> None:
        self._ctx = ctx
        self.model.to(ctx.info.device).train()
        self.optimizer = self.spec.build(self.model.parameters())
        if state is not None:
            self.load_state_dict(state)
        self._net = ctx.wrap(self.model)

    def set_lr(self, step: int) -> float:
        assert self.optimizer is not None and self._ctx is not None
        lr = self.spec.lr_at(step, self._ctx.total_steps, self._ctx.steps_per_epoch)
        set_lr(self.optimizer, lr)
        return lr

    def update(self, batch: Batch, step: int, sub: int, ctx: StepContext) -> dict[str, float]:
        assert self.optimizer is not None
        with ctx.autocast():
            pred = self._net(batch["inputs"])
        loss = self.loss_fn(pred.float(), batch["target"])
        stats = ctx.reduce({"loss": loss})  # the global batch's loss
        ctx.optimise(loss, self.optimizer, self.model.parameters(), stats, "loss")
        return stats

    def state_dict(self) -> dict[str, Any]:
        assert self.optimizer is not None
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.optimizer is not None and "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])

    def settings(self) -> dict[str, Any]:
        return {"loss": self.loss_name, "optimizer": self.spec, "model_name": _name_of(self.model)}


# --------------------------------------------------------------------------------------
# WGAN-GP with mDCSRN's schedule
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CriticSchedule:
    """mDCSRN Sec. 3.2's critic schedule (defaults are the paper's: 10k, 7, 500, 200)."""

    critic_warmup_steps: int = 10000
    critic_steps_per_generator_step: int = 7
    extra_critic_every: int = 500
    extra_critic_steps: int = 200


def gan_schedule(generator_step: int, cfg: Any) -> int:
    """Critic steps to take before generator step ``generator_step`` (0-based).

    mDCSRN Sec. 3.2: "For the first 10k steps, we trained the discriminator only. After
    then for every 7 steps of training discriminator, we trained the generator once; and
    every 500 steps we train discriminator for an extra 200 step alone". So

    * every generator step is preceded by ``critic_steps_per_generator_step`` critic steps;
    * generator step 0 also by the ``critic_warmup_steps`` critic-only steps;
    * generator steps ``extra_critic_every``, ``2 * extra_critic_every``, ... also by
      ``extra_critic_steps``. choice: "every 500 steps" counts generator steps (as in the
      WGAN reference code the paper follows), and step 0 has the warm-up instead.

    ``cfg`` is a :class:`CriticSchedule`, a :class:`~mrenhance.config.GanConfig` or
    anything with those attributes.
    """
    n = int(cfg.critic_steps_per_generator_step)
    if generator_step == 0:
        n += int(cfg.critic_warmup_steps)
    every = int(cfg.extra_critic_every)
    if every > 0 and generator_step > 0 and generator_step % every == 0:
        n += int(cfg.extra_critic_steps)
    return n


def critic_steps_before(generator_step: int, cfg: Any) -> int:
    """Critic steps taken before generator step ``generator_step`` begins (closed form).

    Equals ``sum(gan_schedule(j, cfg) for j in range(generator_step))``.
    """
    g = int(generator_step)
    if g <= 0:
        return 0
    total = g * int(cfg.critic_steps_per_generator_step) + int(cfg.critic_warmup_steps)
    every = int(cfg.extra_critic_every)
    if every > 0:
        total += int(cfg.extra_critic_steps) * ((g - 1) // every)
    return total


class _AdversarialStep(Step):
    """Shared parts of the two GAN steps: a generator and a critic, two optimisers."""

    sub_name = "critic"
    main_event = "generator"
    main_loss = "generator_loss"

    model: nn.Module
    critic: nn.Module

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module,
        content_loss: str | LossFn,
        optimizer: OptimizerSpec | dict[str, Any] | None,
        critic_optimizer: OptimizerSpec | dict[str, Any] | None,
        lr: float,
        critic_lr: float | None,
    ) -> None:
        self.model = generator
        self.critic = critic
        self.content_name = _loss_name(content_loss)
        self.content_fn = _as_loss(content_loss)
        self.spec = _as_spec(optimizer, lr)
        if critic_optimizer is None:
            # the same optimiser, at critic_lr (None: the generator's rate)
            d = dict(vars(self.spec))
            d["lr"] = self.spec.lr if critic_lr is None else float(critic_lr)
            critic_optimizer = OptimizerSpec(**d)
        self.critic_spec = _as_spec(critic_optimizer, lr)
        self.optimizer: torch.optim.Optimizer | None = None
        self.critic_optimizer: torch.optim.Optimizer | None = None
        self._gen_net: nn.Module = generator
        self._critic_net: nn.Module = critic
        self._ctx: StepContext | None = None

    def _setup_common(self, ctx: StepContext) -> None:
        self._ctx = ctx
        self.model.to(ctx.info.device).train()
        self.critic.to(ctx.info.device).train()
        self.optimizer = self.spec.build(self.model.parameters())
        self.critic_optimizer = self.critic_spec.build(self.critic.parameters())

    def set_lr(self, step: int) -> float:
        assert self._ctx is not None and self.optimizer and self.critic_optimizer
        total, per_epoch = self._ctx.total_steps, self._ctx.steps_per_epoch
        lr = self.spec.lr_at(step, total, per_epoch)
        set_lr(self.optimizer, lr)
        set_lr(self.critic_optimizer, self.critic_spec.lr_at(step, total, per_epoch))
        return lr

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "critic": self.critic}

    def state_dict(self) -> dict[str, Any]:
        assert self.optimizer is not None and self.critic_optimizer is not None
        return {
            "model": self.model.state_dict(),
            "critic": self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.critic.load_state_dict(state["critic"])
        if self.optimizer is not None and "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.critic_optimizer is not None and "critic_optimizer" in state:
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])

    def settings(self) -> dict[str, Any]:
        return {
            "content_loss": self.content_name,
            "optimizer": self.spec,
            "critic_optimizer": self.critic_spec,
            "generator_name": _name_of(self.model),
            "critic_name": _name_of(self.critic),
        }


@register_step("wgan-gp")
class WGANGPStep(_AdversarialStep):
    """WGAN-GP fine-tuning of a generator against a critic (mDCSRN Sec. 2.5, 3.2).

    Generator loss ``content(G(x), y) + adv_weight * (-D(G(x)))`` (Eq. 3-5); critic loss
    ``D(G(x)) - D(y) + lambda_gp * GP`` (WGAN-GP). Iteration ``g`` (generator step) takes
    ``gan_schedule(g)`` critic updates, then the generator update, each on its own batch.
    The GP interpolation weights come from the step's own generator seeded with the run's
    seed, drawn for the whole global batch on every rank (each rank uses its share), so
    DDP matches one process exactly; its state is part of :meth:`state_dict`.

    Parameters
    ----------
    generator, critic:
        The SR network (initialised from the supervised stage, Sec. 3.2) and the critic
        (one score per sample; no BatchNorm: mDCSRN uses LayerNorm, Fig. 1C).
    content_loss:
        Intensity loss name or callable (Eq. 4: ``"l1"``).
    adv_weight, lambda_gp:
        Eq. 3's lambda (0.001) and the WGAN-GP weight (10).
    lr, critic_lr, optimizer, critic_optimizer:
        Adam for both networks (Sec. 3.2: 5e-6; ``critic_lr`` None = ``lr``). choice:
        betas (0.9, 0.999), TensorFlow's defaults, as the paper names no others.
    critic_warmup_steps, critic_steps_per_generator_step, extra_critic_every,
    extra_critic_steps:
        The schedule (Sec. 3.2: 10k, 7, 500, 200); see :func:`gan_schedule`.
    """

    columns = (
        "critic_loss",
        "wasserstein",
        "gradient_penalty",
        "content_loss",
        "adv_loss",
        "generator_loss",
    )
    progress_key = "wasserstein"
    pinned = (
        "critic_warmup_steps",
        "critic_steps_per_generator_step",
        "extra_critic_every",
        "extra_critic_steps",
    )

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module,
        *,
        content_loss: str | LossFn = "l1",
        adv_weight: float = 1e-3,
        lambda_gp: float = 10.0,
        lr: float = 5e-6,
        critic_lr: float | None = None,
        optimizer: OptimizerSpec | dict[str, Any] | None = None,
        critic_optimizer: OptimizerSpec | dict[str, Any] | None = None,
        critic_warmup_steps: int = 10000,
        critic_steps_per_generator_step: int = 7,
        extra_critic_every: int = 500,
        extra_critic_steps: int = 200,
    ) -> None:
        super().__init__(
            generator, critic, content_loss, optimizer, critic_optimizer, lr, critic_lr
        )
        for name, value in (
            ("critic_warmup_steps", critic_warmup_steps),
            ("critic_steps_per_generator_step", critic_steps_per_generator_step),
            ("extra_critic_every", extra_critic_every),
            ("extra_critic_steps", extra_critic_steps),
        ):
            if int(value) < 0:
                raise ConfigError(f"gan.{name}: must be >= 0, got {value}")
        self.adv_weight = float(adv_weight)
        self.lambda_gp = float(lambda_gp)
        self.schedule = CriticSchedule(
            int(critic_warmup_steps),
            int(critic_steps_per_generator_step),
            int(extra_critic_every),
            int(extra_critic_steps),
        )
        self._gp_gen = torch.Generator()

    def updates_in(self, step: int) -> int:
        return gan_schedule(step, self.schedule) + 1

    def updates_before(self, step: int) -> int:
        return critic_steps_before(step, self.schedule) + step

    def long_iteration(self, step: int) -> bool:
        # the warm-up and the extra critic phases: log and checkpoint inside them
        return gan_schedule(step, self.schedule) > self.schedule.critic_steps_per_generator_step

    def counters(self, step: int, sub: int) -> dict[str, int]:
        return {"critic_steps": critic_steps_before(step, self.schedule) + sub}

    def setup(self, ctx: StepContext, state: dict[str, Any] | None) -> None:
        self._setup_common(ctx)
        self._gp_gen.manual_seed(ctx.seed)
        if state is not None:
            self.load_state_dict(state)
        self._gen_net = ctx.wrap(self.model)
        self._critic_net = ctx.wrap(self.critic)

    def update(self, batch: Batch, step: int, sub: int, ctx: StepContext) -> dict[str, float]:
        if sub < self.updates_in(step) - 1:
            return self._critic_update(batch, ctx)
        return self._generator_update(batch, ctx)

    def _critic_update(self, batch: Batch, ctx: StepContext) -> dict[str, float]:
        assert self.critic_optimizer is not None
        x, y = batch["inputs"], batch["target"]
        with torch.no_grad(), ctx.autocast():
            # the plain module: no DDP bookkeeping for a forward pass without backward
            fake = self.model(x).float()
        # GP weights for the whole global batch, this rank's share (exact under DDP)
        alpha = ctx.rank_share(torch.rand(ctx.batch_size, generator=self._gp_gen))
        with ctx.autocast():
            terms = critic_loss_terms(self._critic_net, y, fake, self.lambda_gp, alpha=alpha)
        stats = ctx.reduce(
            {
                "critic_loss": terms.loss,
                "wasserstein": terms.wasserstein,
                "gradient_penalty": terms.gradient_penalty,
            }
        )
        ctx.optimise(
            terms.loss, self.critic_optimizer, self.critic.parameters(), stats, "critic loss"
        )
        return stats

    def _generator_update(self, batch: Batch, ctx: StepContext) -> dict[str, float]:
        assert self.optimizer is not None
        self.critic.requires_grad_(False)  # the critic only scores here; it is not updated
        try:
            with ctx.autocast():
                fake = self._gen_net(batch["inputs"])
                # the plain critic module: its parameters take no part in this backward
                adv = generator_adversarial_loss(self.critic, fake)
            content = self.content_fn(fake.float(), batch["target"])
            total = content + self.adv_weight * adv
            stats = ctx.reduce({"generator_loss": total, "content_loss": content, "adv_loss": adv})
            ctx.optimise(total, self.optimizer, self.model.parameters(), stats, "generator loss")
        finally:
            self.critic.requires_grad_(True)
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "gp_rng": self._gp_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "gp_rng" in state:
            self._gp_gen.set_state(state["gp_rng"])

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "adv_weight": self.adv_weight,
            "lambda_gp": self.lambda_gp,
            **vars(self.schedule),
        }


# --------------------------------------------------------------------------------------
# Plain GAN (BCE), SRGAN style
# --------------------------------------------------------------------------------------


@register_step("gan")
class GANStep(_AdversarialStep):
    """A generator against a BCE discriminator, both updated on every batch (SRGAN).

    Generator loss ``pixel(G(x), y) + adv_weight * BCE(D(G(x)), 1) + feature_weight *
    feature(F(G(x)), F(y))``; discriminator loss ``BCE(D(y), 1) + BCE(D(G(x)), 0)``.
    Ledig et al. 2017 Sec. 2.2 (which the DTI SRGAN paper, Sec. 4, follows): adversarial
    weight 1e-3, D and G optimised alternately (Goodfellow et al. 2014); the VGG feature
    loss is ``feature_model`` here (any frozen network: there are no pretrained weights
    offline). Each iteration takes one batch: the generator update first, then the
    discriminator's on the same, detached output (as BasicSR's SRGANModel).

    Parameters
    ----------
    generator, discriminator:
        The SR network and a network mapping a batch to one logit per sample
        ``(batch,)`` or ``(batch, 1)`` (no final sigmoid: the loss applies it stably).
    pixel_loss:
        A registered loss name or callable (DTI SRGAN Sec. 4: MSE, ``"l2"``).
    adv_weight:
        Weight of the adversarial term (Ledig et al. Eq. 3: 1e-3).
    feature_model, feature_weight, feature_loss:
        Optional frozen feature network and the weight and loss of its feature distance.
    lr, critic_lr, optimizer, critic_optimizer:
        Adam for both (DTI SRGAN paper Table: lr 1e-4; ``critic_lr`` None = ``lr``).
    """

    columns = (
        "discriminator_loss",
        "d_real",
        "d_fake",
        "pixel_loss",
        "adv_loss",
        "feature_loss",
        "generator_loss",
    )
    progress_key = "generator_loss"

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *,
        pixel_loss: str | LossFn = "l2",
        adv_weight: float = 1e-3,
        feature_model: nn.Module | None = None,
        feature_weight: float = 0.0,
        feature_loss: str | LossFn = "l2",
        lr: float = 1e-4,
        critic_lr: float | None = None,
        optimizer: OptimizerSpec | dict[str, Any] | None = None,
        critic_optimizer: OptimizerSpec | dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            generator, discriminator, pixel_loss, optimizer, critic_optimizer, lr, critic_lr
        )
        self.adv_weight = float(adv_weight)
        self.feature_weight = float(feature_weight)
        self.feature_model = feature_model
        self.feature_name = _loss_name(feature_loss)
        self.feature_fn = _as_loss(feature_loss)
        if feature_model is not None:
            feature_model.requires_grad_(False).eval()

    def setup(self, ctx: StepContext, state: dict[str, Any] | None) -> None:
        self._setup_common(ctx)
        if self.feature_model is not None:
            self.feature_model.to(ctx.info.device)
        if state is not None:
            self.load_state_dict(state)
        self._gen_net = ctx.wrap(self.model)
        self._critic_net = ctx.wrap(self.critic)

    def update(self, batch: Batch, step: int, sub: int, ctx: StepContext) -> dict[str, float]:
        assert self.optimizer is not None and self.critic_optimizer is not None
        x, y = batch["inputs"], batch["target"]
        # generator update: the discriminator scores but is not updated
        self.critic.requires_grad_(False)
        try:
            with ctx.autocast():
                fake = self._gen_net(x)
                adv = bce_generator_loss(self.critic, fake)
            pixel = self.content_fn(fake.float(), y)
            total = pixel + self.adv_weight * adv
            feat = torch.zeros((), device=pixel.device)
            if self.feature_model is not None and self.feature_weight > 0:
                with ctx.autocast():
                    feat = self.feature_fn(
                        self.feature_model(fake).float(), self.feature_model(y).float()
                    )
                total = total + self.feature_weight * feat
            g_stats = ctx.reduce(
                {
                    "generator_loss": total,
                    "pixel_loss": pixel,
                    "adv_loss": adv,
                    "feature_loss": feat,
                }
            )
            ctx.optimise(total, self.optimizer, self.model.parameters(), g_stats, "generator loss")
        finally:
            self.critic.requires_grad_(True)
        # discriminator update on the same batch, real and fake in one forward (DDP rule)
        with ctx.autocast():
            d_loss, d_real, d_fake = bce_discriminator_loss(self._critic_net, y, fake.detach())
        d_stats = ctx.reduce({"discriminator_loss": d_loss, "d_real": d_real, "d_fake": d_fake})
        ctx.optimise(
            d_loss,
            self.critic_optimizer,
            self.critic.parameters(),
            d_stats,
            "discriminator loss",
        )
        return {**d_stats, **g_stats}

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "adv_weight": self.adv_weight,
            "feature_weight": self.feature_weight,
            "feature_loss": self.feature_name,
            "feature_model": None if self.feature_model is None else _name_of(self.feature_model),
        }
