"""Training engine: supervised stage (:class:`Trainer`) and WGAN-GP stage (:class:`GANTrainer`).

Both trainers share one discipline that makes resuming and data parallelism exact:

* **Data is a pure function of the batch counter.** Batch number ``k`` is the dataset
  indices ``[k * B, (k + 1) * B)`` (modulo ``len(dataset)``), ``B`` the global batch size.
  Under DDP with ``W`` processes, rank ``r`` takes the contiguous share
  ``[k * B + r * B / W, k * B + (r + 1) * B / W)``; DDP averages the gradients, so ``W``
  processes compute the same update as one process with the whole batch.
  ``engine.patches.PatchDataset`` draws patch ``i`` from ``(seed, i)`` alone, so a batch
  does not depend on the process, worker or history that asks for it.
* **Checkpoints hold everything that changes**: weights, optimizer moments, the step (the
  learning rate is a pure function of the step, :func:`lr_at_step`), the RNG states of
  every rank, the GP interpolation RNG, the best validation metric. ``fit(resume=True)``
  continues from ``checkpoints/last.pt``; on the CPU the final weights are bit-identical to
  an uninterrupted run.
* **Rank 0 alone writes** ``metrics.csv``, TensorBoard events (if installed),
  ``checkpoints/last.pt`` (every ``checkpoint_every`` steps and at the end) and
  ``checkpoints/best.pt`` (when the validation metric improves), all atomically.
* **A NaN or Inf loss stops training** before the optimizer step, keeps the last good
  checkpoint untouched and raises :class:`~mrenhance.errors.TrainingDivergedError`.

The GAN stage follows mDCSRN (Chen et al. 2018) Sec. 2.5 and 3.2; see :func:`gan_schedule`
for the critic/generator step schedule and :class:`GANTrainer` for the batch bookkeeping.

Run under ``torchrun --nproc_per_node N`` unchanged: the trainers call
:func:`mrenhance.engine.distributed.init_distributed`; the caller ends with
:func:`~mrenhance.engine.distributed.cleanup`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, default_collate

from mrenhance.config import GanConfig, ScheduleConfig, TrainConfig, parse_schedule
from mrenhance.engine import distributed as ddp
from mrenhance.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_model_weights,
    restore_rng_state,
    save_checkpoint,
)
from mrenhance.errors import ConfigError, InputError, OutputExistsError, TrainingDivergedError
from mrenhance.io.atomic import write_text_atomic
from mrenhance.losses import create_loss, critic_loss_terms, generator_adversarial_loss

__all__ = [
    "GANTrainer",
    "TrainResult",
    "Trainer",
    "critic_steps_before",
    "gan_schedule",
    "lr_at_step",
    "rank_batch_indices",
]

log = logging.getLogger("mrenhance.train")

CHECKPOINT_FORMAT = "mrenhance-checkpoint"
CHECKPOINT_VERSION = 1

ValFn = Callable[[nn.Module], dict[str, float]]
Callback = Callable[[dict[str, Any]], None]


# --------------------------------------------------------------------------------------
# Pure pieces
# --------------------------------------------------------------------------------------


def lr_at_step(
    step: int,
    *,
    base_lr: float,
    schedule: str | ScheduleConfig = "constant",
    warmup_steps: int = 0,
    total_steps: int = 1,
) -> float:
    """Learning rate of the update with 0-based index ``step``.

    Linear warm-up ``base_lr * (step + 1) / warmup_steps`` for the first ``warmup_steps``
    updates, then the schedule over the remaining ones: ``constant``; ``cosine`` from
    ``base_lr`` to ``min_lr`` at the last update; ``step`` (``base_lr * gamma **
    (t // step_size)``, ``t`` counted after the warm-up).
    """
    sched = parse_schedule(schedule)
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = step - warmup_steps
    if sched.name == "constant":
        return base_lr
    if sched.name == "cosine":
        span = max(total_steps - warmup_steps - 1, 1)
        frac = min(t / span, 1.0)
        return sched.min_lr + (base_lr - sched.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))
    if sched.name == "step":
        if sched.step_size <= 0:
            raise ConfigError("lr_schedule 'step': step_size must be > 0")
        return base_lr * sched.gamma ** (t // sched.step_size)
    raise ConfigError(f"lr_schedule {sched.name!r}: unknown (constant, cosine, step)")


def rank_batch_indices(
    batch_number: int, batch_size: int, rank: int = 0, world_size: int = 1, n_items: int = 0
) -> list[int]:
    """Dataset indices of this rank's share of global batch ``batch_number``.

    Parameters
    ----------
    batch_number: 0-based count of batches drawn so far. batch_size: global batch size.
    rank, world_size: this process and the number of DDP processes.
    n_items: ``len(dataset)``; indices wrap around modulo it (0 = no wrapping).

    Raises
    ------
    ConfigError
        ``batch_size`` not divisible by ``world_size``.
    """
    if batch_size <= 0 or batch_size % world_size:
        raise ConfigError(
            f"train.batch_size: {batch_size} is not divisible by the {world_size} DDP "
            "processes (each takes an equal share of the global batch)"
        )
    per_rank = batch_size // world_size
    start = batch_number * batch_size + rank * per_rank
    idx = range(start, start + per_rank)
    return [i % n_items for i in idx] if n_items else list(idx)


def gan_schedule(generator_step: int, cfg: GanConfig | Any) -> int:
    """Critic steps to take before generator step ``generator_step`` (0-based).

    mDCSRN Sec. 3.2: "For the first 10k steps, we trained the discriminator only. After
    then for every 7 steps of training discriminator, we trained the generator once; and
    every 500 steps we train discriminator for an extra 200 step alone". So

    * every generator step is preceded by ``critic_steps_per_generator_step`` critic steps;
    * generator step 0 also by the ``critic_warmup_steps`` critic-only steps;
    * generator steps ``extra_critic_every``, ``2 * extra_critic_every``, ... also by
      ``extra_critic_steps``. choice: "every 500 steps" counts generator steps (as in the
      WGAN reference code the paper follows), and step 0 has the warm-up instead.

    ``cfg`` is a :class:`~mrenhance.config.GanConfig` or anything with those attributes.
    """
    n = int(cfg.critic_steps_per_generator_step)
    if generator_step == 0:
        n += int(cfg.critic_warmup_steps)
    every = int(cfg.extra_critic_every)
    if every > 0 and generator_step > 0 and generator_step % every == 0:
        n += int(cfg.extra_critic_steps)
    return n


def critic_steps_before(generator_step: int, cfg: GanConfig | Any) -> int:
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


# --------------------------------------------------------------------------------------
# Result, sampler, metrics log
# --------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` / :meth:`GANTrainer.fit` return.

    Attributes
    ----------
    step: updates done (generator steps for the GAN stage). stopped_early: ``stop_at``
    ended the call before ``steps``. best_metric, best_step, best_metrics: the best
    validation value of ``val_metric``, its step and all validation values there (None
    without validation). final_loss: mean loss of the last logging window (generator loss
    for the GAN stage). run_dir, metrics_csv, last_checkpoint, best_checkpoint: paths
    (``best_checkpoint`` None without validation). seconds: wall time, summed over resumes.
    """

    step: int
    best_metric: float | None
    best_step: int | None
    best_metrics: dict[str, float] | None
    final_loss: float | None
    run_dir: Path
    metrics_csv: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    seconds: float
    stopped_early: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class _BatchSampler:
    """Yields this rank's index lists for batches ``first, first + 1, ..., first + n - 1``."""

    def __init__(self, first: int, n: int, batch_size: int, rank: int, world: int, items: int):
        self.first, self.n = first, max(n, 0)
        self.batch_size, self.rank, self.world, self.items = batch_size, rank, world, items

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[list[int]]:
        for k in range(self.first, self.first + self.n):
            yield rank_batch_indices(k, self.batch_size, self.rank, self.world, self.items)


def _collate(items: Sequence[Any]) -> Any:
    return default_collate(items)


class _MetricsLog:
    """``metrics.csv`` (appended and fsynced; rewritten atomically when columns are added
    or on resume) and TensorBoard scalars when ``torch.utils.tensorboard`` imports."""

    def __init__(
        self,
        run_dir: Path,
        columns: list[str],
        enabled: bool,
        keep: Callable[[dict[str, str]], bool] | None,
    ) -> None:
        self.path = run_dir / "metrics.csv"
        self.columns = list(columns)
        self.enabled = enabled
        self.tb: Any = None
        if not enabled:
            return
        rows: list[dict[str, str]] = []
        if keep is not None and self.path.exists():
            # resume: drop rows logged after the checkpoint we continue from
            with open(self.path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                self.columns += [c for c in reader.fieldnames or [] if c not in self.columns]
                rows = [r for r in reader if keep(r)]
        self._rewrite(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: tensorboard is not a dependency
            self.tb = None
        else:
            self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: r.get(c, "") for c in self.columns})
        write_text_atomic(self.path, buf.getvalue(), overwrite=True)

    def append(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        text = {k: _fmt(v) for k, v in row.items()}
        new = [k for k in text if k not in self.columns]
        if new:
            with open(self.path, newline="", encoding="utf-8") as fh:
                old = list(csv.DictReader(fh))
            self.columns += new
            self._rewrite([*old, text])
        else:
            buf = io.StringIO()
            csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n").writerow(
                {c: text.get(c, "") for c in self.columns}
            )
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(buf.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
        if self.tb is not None:
            step = int(row["step"]) if row.get("critic_steps") is None else int(row["critic_steps"])
            for k, v in row.items():
                if k not in ("step", "critic_steps") and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return format(v, ".8g")
    return str(v)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


# --------------------------------------------------------------------------------------
# Shared machinery
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for the duration of ``fit``, then restored."""
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    if enabled:
        # cuBLAS needs this before its first use to be deterministic (best effort here)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code draws from it
    random.seed(seed)


def _make_optimizer(
    name: str, params: Any, lr: float, betas: Sequence[float], weight_decay: float
) -> torch.optim.Optimizer:
    betas2 = (float(betas[0]), float(betas[1]))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas2, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas2, weight_decay=weight_decay)
    raise ConfigError(f"optimizer {name!r}: unknown (adam, adamw)")


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _as_loss(loss: str | Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    return create_loss(loss) if isinstance(loss, str) else loss


def _plain_settings(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)):
            out[k] = [x if isinstance(x, (str, int, float, bool)) else str(x) for x in v]
        else:
            out[k] = str(v)
    return out


class _BaseTrainer:
    """Run folder, data, validation, checkpoints and logging shared by both trainers."""

    kind = "base"
    # settings that decide which data each update sees: a resume must not change them
    _pinned: tuple[str, ...] = ("batch_size", "seed")

    def __init__(
        self,
        dataset: Any,
        *,
        batch_size: int,
        run_dir: str | os.PathLike,
        seed: int,
        val_fn: ValFn | None,
        val_every: int,
        val_metric: str,
        val_mode: str,
        checkpoint_every: int,
        log_every: int,
        device: str | torch.device | None,
        amp: bool,
        deterministic: bool,
        grad_clip: float | None,
        num_workers: int,
        progress: bool,
        callback: Callback | None,
        overwrite: bool,
    ) -> None:
        if run_dir is None:
            raise ConfigError("run_dir is required")
        for name, value in (("checkpoint_every", checkpoint_every), ("log_every", log_every)):
            if int(value) <= 0:
                raise ConfigError(f"train.{name}: must be > 0, got {value}")
        if val_mode not in ("max", "min"):
            raise ConfigError(f"train.val_mode: expected 'max' or 'min', got {val_mode!r}")
        if val_every < 0:
            raise ConfigError(f"train.val_every: must be >= 0, got {val_every}")
        try:
            self._n_items = len(dataset)
        except TypeError:
            self._n_items = 0
        else:
            if self._n_items == 0:
                raise InputError("dataset: it is empty")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.run_dir = Path(run_dir)
        self.seed = int(seed)
        self.val_fn = val_fn
        self.val_every = int(val_every)
        self.val_metric = val_metric
        self.val_mode = val_mode
        self.checkpoint_every = int(checkpoint_every)
        self.log_every = int(log_every)
        self.device = device
        self.amp = bool(amp)
        self.deterministic = bool(deterministic)
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.num_workers = int(num_workers)
        self.progress = bool(progress)
        self.callback = callback
        self.overwrite = bool(overwrite)
        self.info: ddp.DistInfo | None = None
        self._best: dict[str, Any] = {"metric": None, "step": None, "metrics": None}
        self._seconds_before = 0.0
        self._t0 = 0.0
        self._last_ckpt_step: str | None = None

    # ---- paths -------------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"

    def _settings(self) -> dict[str, Any]:
        raise NotImplementedError

    # ---- setup -------------------------------------------------------------------------
    def _prepare(self, resume: bool) -> dict[str, Any] | None:
        """Join DDP, check the run folder, load ``last.pt`` when resuming."""
        info = self.info = ddp.init_distributed(self.device)
        rank_batch_indices(0, self.batch_size, 0, info.world_size)  # divisibility check
        self._best = {"metric": None, "step": None, "metrics": None}
        self._seconds_before = 0.0
        self._last_ckpt_step = None
        if self.amp and info.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.amp: needs bfloat16, which this GPU does not support")
        state = None
        if resume:
            if not self.last_path.is_file():
                raise InputError(f"{self.last_path}: no checkpoint to resume from")
            state = load_checkpoint(self.last_path)
            self._check_resumable(state)
        elif self.last_path.exists() and not self.overwrite:
            raise OutputExistsError(
                f"{self.run_dir}: holds a checkpoint already (use resume=True to continue "
                "it, overwrite=True to start over, or another run_dir)"
            )
        if info.is_main:
            (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            if not resume:
                for stale in (self.best_path, self.last_path):
                    stale.unlink(missing_ok=True)
            write_text_atomic(
                self.run_dir / "trainer.json",
                _json({"kind": self.kind, "world_size": info.world_size, **self._settings()}),
                overwrite=True,
            )
        ddp.barrier()
        self._t0 = time.time()
        return state

    def _check_resumable(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{self.last_path}: not an mrenhance training checkpoint")
        if state.get("kind") != self.kind:
            raise ConfigError(
                f"{self.last_path}: a {state.get('kind')!r} checkpoint cannot resume a "
                f"{self.kind!r} run"
            )
        saved = state.get("settings", {})
        now = self._settings()
        for key in self._pinned:
            if key in saved and saved[key] != now[key]:
                raise ConfigError(
                    f"{self.last_path}: {key} was {saved[key]!r}, now {now[key]!r}; resuming "
                    "needs the same value (it decides which data each step sees)"
                )
        self._best = {
            "metric": state.get("best_metric"),
            "step": state.get("best_step"),
            "metrics": state.get("best_metrics"),
        }
        self._seconds_before = float(state.get("seconds", 0.0))

    def _restore_rng(self, state: dict[str, Any] | None) -> None:
        info = self.info
        assert info is not None
        if state is None:
            # choice: each rank its own stream (dropout masks differ across ranks, as they
            # would across the samples of one big batch)
            _seed_everything(self.seed + info.rank)
            return
        rngs = state["rng"]
        if len(rngs) == info.world_size:
            restore_rng_state(rngs[info.rank])
        else:
            # a different number of processes: fresh streams, determined by seed and step
            log.warning("resuming with %d processes instead of %d", info.world_size, len(rngs))
            _seed_everything(self.seed + info.rank + 1000003 * int(state["step"]))

    def _loader(self, first_batch: int, n_batches: int) -> DataLoader:
        info = self.info
        assert info is not None
        sampler = _BatchSampler(
            first_batch, n_batches, self.batch_size, info.rank, info.world_size, self._n_items
        )
        return DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=_collate,
            pin_memory=info.device.type == "cuda",
            # its own generator: creating the iterator must not draw from the global RNG,
            # or a resumed run's dropout masks would differ from an uninterrupted run's
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        assert self.info is not None
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.info.device.type, dtype=torch.bfloat16)

    def _to_device(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.info is not None
        if not isinstance(batch, (list, tuple)) or len(batch) != 2:
            raise InputError("dataset: __getitem__ must return (input, target) arrays")
        x, y = batch
        dev = self.info.device
        return (
            x.to(dev, dtype=torch.float32, non_blocking=True),
            y.to(dev, dtype=torch.float32, non_blocking=True),
        )

    def _progress(self, total: int, initial: int, desc: str) -> Any:
        assert self.info is not None
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="step",
            dynamic_ncols=True,
            disable=not (self.progress and self.info.is_main),
        )

    # ---- validation --------------------------------------------------------------------
    def _validate(self, model: nn.Module) -> dict[str, float]:
        """Run ``val_fn`` on rank 0 (eval mode, no grad); every rank gets the result.

        An exception in ``val_fn`` is raised on every rank (the others would otherwise wait
        for rank 0 until the collective timeout).
        """
        assert self.info is not None and self.val_fn is not None
        outcome: tuple[str, Any] = ("ok", None)
        error: Exception | None = None
        if self.info.is_main:
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    metrics = {k: float(v) for k, v in self.val_fn(model).items()}
                if self.val_metric not in metrics:
                    raise ConfigError(
                        f"train.val_metric: {self.val_metric!r} is not among the validation "
                        f"metrics ({', '.join(metrics) or 'none'})"
                    )
                outcome = ("ok", metrics)
            except Exception as exc:
                error = exc
                outcome = ("error", f"{type(exc).__name__}: {exc}")  # picklable for the others
            finally:
                model.train(was_training)
        outcome = ddp.broadcast_object(outcome)
        if error is not None:
            raise error
        if outcome[0] == "error":
            raise RuntimeError(f"validation failed on rank 0: {outcome[1]}")
        return outcome[1]

    def _improved(self, metrics: dict[str, float]) -> bool:
        value = metrics[self.val_metric]
        if not math.isfinite(value):
            return False
        best = self._best["metric"]
        return best is None or (value > best if self.val_mode == "max" else value < best)

    # ---- checkpoints -------------------------------------------------------------------
    def _gather_rng(self) -> list[dict[str, Any]]:
        mine = capture_rng_state()
        if not ddp.is_distributed():
            return [mine]
        assert self.info is not None
        out: list[Any] = [None] * self.info.world_size
        torch.distributed.all_gather_object(out, mine)
        return out

    def _common_state(self, step: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "kind": self.kind,
            "step": int(step),
            "rng": self._gather_rng(),
            "best_metric": self._best["metric"],
            "best_step": self._best["step"],
            "best_metrics": self._best["metrics"],
            "settings": _plain_settings(self._settings()),
            "seconds": self._seconds(),
        }

    def _seconds(self) -> float:
        return self._seconds_before + (time.time() - self._t0)

    def _save(self, state: dict[str, Any], best: bool = False) -> None:
        assert self.info is not None
        if self.info.is_main:
            save_checkpoint(self.best_path if best else self.last_path, state)
        if not best:
            self._last_ckpt_step = str(state["step"])

    def _diverged(self, where: str, what: str, value: float) -> TrainingDivergedError:
        word = "nan" if math.isnan(value) else "inf"
        if self.last_path.exists():
            kept = f"last good checkpoint kept at {self.last_path}"
            if self._last_ckpt_step is not None:
                kept += f" (step {self._last_ckpt_step})"
        else:
            kept = "no checkpoint was written yet"
        return TrainingDivergedError(f"{where}: {what} is {word}; {kept}")

    def _clip(self, params: Any) -> float | None:
        if self.grad_clip is None:
            return None
        return float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))

    def _result(
        self, step: int, final_loss: float | None, metrics_path: Path, stopped: bool
    ) -> TrainResult:
        return TrainResult(
            step=step,
            best_metric=self._best["metric"],
            best_step=self._best["step"],
            best_metrics=self._best["metrics"],
            final_loss=final_loss,
            run_dir=self.run_dir,
            metrics_csv=metrics_path,
            last_checkpoint=self.last_path,
            best_checkpoint=self.best_path if self.best_path.exists() else None,
            seconds=self._seconds(),
            stopped_early=stopped,
        )


def _json(d: dict[str, Any]) -> str:
    return json.dumps(_plain_settings(d), indent=2) + "\n"


# --------------------------------------------------------------------------------------
# Supervised stage
# --------------------------------------------------------------------------------------


class Trainer(_BaseTrainer):
    """Supervised training of ``model`` on ``(input, target)`` pairs.

    Parameters
    ----------
    model:
        Maps ``(batch, channel, x, y, z)`` inputs to outputs of the target's shape.
    dataset:
        Map-style; ``dataset[i]`` is ``(input, target)``, float32 arrays ``(channel,
        *patch)``, deterministic in ``i`` (see ``engine.patches.PatchDataset``).
    loss:
        A name in :data:`mrenhance.losses.LOSSES` or a callable ``(pred, target) ->
        scalar``. mDCSRN Sec. 2.5 Eq. 4: ``"l1"``.
    lr, optimizer, betas, weight_decay:
        Adam (or AdamW); mDCSRN Sec. 3.2: Adam, 1e-4.
    batch_size:
        Global batch size; divided equally over DDP ranks (mDCSRN: 2).
    steps:
        Optimizer updates in all (mDCSRN: 500k).
    lr_schedule, warmup_steps:
        See :func:`lr_at_step` (a name, a :class:`~mrenhance.config.ScheduleConfig` or a
        mapping with its fields).
    grad_clip:
        Maximum global L2 norm of the gradients, or None.
    run_dir:
        Output folder (created): ``metrics.csv``, ``trainer.json``, ``checkpoints/``.
    seed:
        Seeds torch/NumPy/``random`` at a fresh start (``seed + rank`` per process).
    val_fn, val_every, val_metric, val_mode:
        ``val_fn(model) -> {"psnr": ..., ...}`` every ``val_every`` steps and at the end
        (0 = never), on rank 0 in eval mode without gradients; ``best.pt`` is written when
        ``val_metric`` improves (higher is better for ``"max"``).
    checkpoint_every, log_every:
        ``last.pt`` every so many steps (and at the end); a ``metrics.csv`` row every so
        many steps (mean loss over the window).
    device:
        ``"cpu"``, ``"cuda"`` (``cuda:LOCAL_RANK`` under torchrun) or None for auto.
    amp:
        bfloat16 autocast (no loss scaling is needed for bfloat16).
    deterministic:
        ``torch.use_deterministic_algorithms(True, warn_only=True)`` during ``fit``.
    num_workers:
        DataLoader worker processes (the data stays a function of the step).
    progress:
        tqdm progress bar on rank 0.
    callback:
        ``callback(event)`` after every update on every rank, with ``event = {"kind":
        "step", "step": steps_done, "loss": float, "lr": float}``; an exception raised
        there stops training like a kill (used by the tests to simulate one).
    overwrite:
        Start over in a ``run_dir`` that already holds a checkpoint.
    """

    kind = "supervised"

    def __init__(
        self,
        model: nn.Module,
        dataset: Any,
        *,
        loss: str | Callable[..., torch.Tensor] = "l1",
        lr: float = 1e-4,
        batch_size: int = 2,
        steps: int = 1000,
        optimizer: str = "adam",
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        lr_schedule: str | ScheduleConfig | dict[str, Any] = "constant",
        warmup_steps: int = 0,
        grad_clip: float | None = None,
        run_dir: str | os.PathLike,
        seed: int = 0,
        val_fn: ValFn | None = None,
        val_every: int = 0,
        val_metric: str = "psnr",
        val_mode: str = "max",
        checkpoint_every: int = 100,
        log_every: int = 10,
        device: str | torch.device | None = "cpu",
        amp: bool = False,
        deterministic: bool = True,
        num_workers: int = 0,
        progress: bool = True,
        callback: Callback | None = None,
        overwrite: bool = False,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            run_dir=run_dir,
            seed=seed,
            val_fn=val_fn,
            val_every=val_every,
            val_metric=val_metric,
            val_mode=val_mode,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
            device=device,
            amp=amp,
            deterministic=deterministic,
            grad_clip=grad_clip,
            num_workers=num_workers,
            progress=progress,
            callback=callback,
            overwrite=overwrite,
        )
        self.model = model
        self.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "custom")
        self.loss_fn = _as_loss(loss)
        self.lr = float(lr)
        self.steps = int(steps)
        self.optimizer_name = optimizer
        self.betas = tuple(float(b) for b in betas)
        self.weight_decay = float(weight_decay)
        self.lr_schedule = parse_schedule(lr_schedule)
        lr_at_step(0, base_lr=1.0, schedule=self.lr_schedule)  # validate the name early
        self.warmup_steps = int(warmup_steps)

    @classmethod
    def from_config(
        cls, model: nn.Module, dataset: Any, train: TrainConfig, **kwargs: Any
    ) -> Trainer:
        """A Trainer with every field of a recipe's ``train`` section; ``kwargs`` (run_dir,
        val_fn, device, progress, callback, overwrite) are passed through."""
        return cls(
            model,
            dataset,
            loss=train.loss,
            lr=train.lr,
            batch_size=train.batch_size,
            steps=train.steps,
            optimizer=train.optimizer,
            betas=train.betas,
            weight_decay=train.weight_decay,
            lr_schedule=train.lr_schedule,
            warmup_steps=train.warmup_steps,
            grad_clip=train.grad_clip,
            seed=train.seed,
            val_every=train.val_every,
            val_metric=train.val_metric,
            val_mode=train.val_mode,
            checkpoint_every=train.checkpoint_every,
            log_every=train.log_every,
            amp=train.amp,
            deterministic=train.deterministic,
            num_workers=train.num_workers,
            **kwargs,
        )

    def _settings(self) -> dict[str, Any]:
        return {
            "loss": self.loss_name,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "steps": self.steps,
            "optimizer": self.optimizer_name,
            "betas": list(self.betas),
            "weight_decay": self.weight_decay,
            "lr_schedule": str(self.lr_schedule),
            "warmup_steps": self.warmup_steps,
            "grad_clip": self.grad_clip,
            "seed": self.seed,
            "amp": self.amp,
            "deterministic": self.deterministic,
            "model_name": getattr(self.model, "mrenhance_name", type(self.model).__name__),
        }

    def _lr(self, step: int) -> float:
        return lr_at_step(
            step,
            base_lr=self.lr,
            schedule=self.lr_schedule,
            warmup_steps=self.warmup_steps,
            total_steps=self.steps,
        )

    def model_for_saving(self) -> nn.Module:
        """The trained model itself (never a DDP wrapper)."""
        return self.model

    def load_best(self) -> Path | None:
        """Load ``best.pt``'s weights into the model, if validation wrote one."""
        if not self.best_path.is_file():
            return None
        load_model_weights(self.model, self.best_path)
        return self.best_path

    def fit(self, resume: bool = False, stop_at: int | None = None) -> TrainResult:
        """Train until ``steps`` updates are done (or ``stop_at``, with a checkpoint).

        Parameters
        ----------
        resume:
            Continue from ``run_dir/checkpoints/last.pt`` (weights, optimizer, step, RNG
            states, best metric); otherwise start fresh (refused if ``run_dir`` holds a
            checkpoint and ``overwrite`` is False).
        stop_at:
            Stop once this many updates are done (a time-boxed job); ``last.pt`` is
            written there and ``fit(resume=True)`` continues exactly.

        Raises
        ------
        TrainingDivergedError
            The loss became NaN or Inf (no update is made with it; ``last.pt`` is kept).
        """
        with _deterministic(self.deterministic):
            return self._fit(resume, stop_at)

    def _fit(self, resume: bool, stop_at: int | None) -> TrainResult:
        state = self._prepare(resume)
        info = self.info
        assert info is not None
        model = self.model.to(info.device)
        model.train()
        opt = _make_optimizer(
            self.optimizer_name, model.parameters(), self.lr, self.betas, self.weight_decay
        )
        start = 0
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            start = int(state["step"])
            self._last_ckpt_step = str(start)
        self._restore_rng(state)
        net = ddp.wrap_ddp(model, info)

        end = self.steps if stop_at is None else min(self.steps, int(stop_at))
        metrics = _MetricsLog(
            self.run_dir,
            ["step", "loss", "lr", "seconds"],
            info.is_main,
            (lambda r: int(r["step"]) <= start) if state is not None else None,
        )
        bar = self._progress(self.steps, start, f"train {self.run_dir.name}")
        window: list[float] = []
        final_loss: float | None = None
        done = start
        try:
            batches = iter(self._loader(start, end - start))
            for step in range(start, end):
                lr = self._lr(step)
                _set_lr(opt, lr)
                x, y = self._to_device(next(batches))
                with self._autocast():
                    pred = net(x)
                loss = self.loss_fn(pred.float(), y)
                value = float(ddp.all_reduce_mean(loss.detach()))  # the global batch's loss
                if not math.isfinite(value):
                    raise self._diverged(f"step {step + 1}", "loss", value)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                self._clip(model.parameters())
                opt.step()
                done = step + 1
                window.append(value)

                val = None
                if self.val_fn is not None and self.val_every > 0:
                    if done % self.val_every == 0 or done == self.steps:
                        val = self._validate(model)
                        if self._improved(val):
                            self._best = {
                                "metric": val[self.val_metric],
                                "step": done,
                                "metrics": val,
                            }
                            self._save(self._state(done, model, opt), best=True)
                if done % self.log_every == 0 or val is not None or done == end:
                    final_loss = _mean(window)
                    row = {"step": done, "loss": final_loss, "lr": lr, "seconds": self._seconds()}
                    row.update({f"val_{k}": v for k, v in (val or {}).items()})
                    metrics.append(row)
                    bar.set_postfix(loss=f"{final_loss:.4g}", refresh=False)
                    window = []
                if done % self.checkpoint_every == 0 or done == end:
                    self._save(self._state(done, model, opt))
                bar.update(1)
                if self.callback is not None:
                    self.callback({"kind": "step", "step": done, "loss": value, "lr": lr})
        finally:
            bar.close()
            metrics.close()
        ddp.barrier()
        return self._result(done, final_loss, metrics.path, done < self.steps)

    def _state(self, step: int, model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
        state = self._common_state(step)
        state.update(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": {"name": self.lr_schedule.name, "step": int(step)},
            }
        )
        return state


# --------------------------------------------------------------------------------------
# Adversarial stage (mDCSRN-GAN, WGAN-GP)
# --------------------------------------------------------------------------------------


class GANTrainer(_BaseTrainer):
    """WGAN-GP fine-tuning of a generator against a critic (mDCSRN Sec. 2.5, 3.2).

    Generator loss ``content(G(x), y) + adv_weight * (-D(G(x)))`` (Eq. 3-5); critic loss
    ``D(G(x)) - D(y) + lambda_gp * GP`` (WGAN-GP). Steps follow :func:`gan_schedule`.

    **Batch bookkeeping.** Every update, critic or generator, consumes its own global batch,
    in the order they happen: iteration ``g`` (0-based generator step) first runs
    ``gan_schedule(g)`` critic steps, then generator step ``g``. The batch number of the
    ``c``-th critic step of iteration ``g`` is ``critic_steps_before(g) + g + c``; its
    generator step takes ``critic_steps_before(g + 1) + g``. A checkpoint stores the
    position ``(step=g, critic_step=c)``, so a resumed run draws exactly the batches the
    uninterrupted run would have drawn. Checkpoints are written after generator steps
    (every ``checkpoint_every``) and also every ``checkpoint_every`` critic steps inside a
    long critic-only phase (the 10k-step warm-up). The GP interpolation weights come from a
    dedicated generator seeded with ``seed``, drawn for the whole global batch on every
    rank (each rank uses its share), so DDP matches one process exactly.

    Parameters
    ----------
    generator, critic:
        The SR network (initialised from the supervised stage, Sec. 3.2) and the critic
        (one score per sample; no BatchNorm: mDCSRN uses LayerNorm, Fig. 1C).
    content_loss:
        Intensity loss name or callable (Eq. 4: ``"l1"``).
    adv_weight, lambda_gp:
        Eq. 3's lambda (0.001) and the WGAN-GP weight (10).
    lr, critic_lr, betas:
        Adam for both networks (Sec. 3.2: 5e-6; ``critic_lr`` None = ``lr``). choice:
        betas (0.9, 0.999), TensorFlow's defaults, as the paper names no others (WGAN-GP
        itself uses (0.0, 0.9)).
    critic_warmup_steps, critic_steps_per_generator_step, extra_critic_every,
    extra_critic_steps, generator_steps:
        The schedule (Sec. 3.2: 10k, 7, 500, 200, 550k); see :func:`gan_schedule`.
    batch_size, run_dir, seed, val_fn, val_every, val_metric, val_mode,
    checkpoint_every, log_every, device, amp, deterministic, grad_clip, num_workers,
    progress, overwrite:
        As in :class:`Trainer`; ``val_every``, ``checkpoint_every`` and ``log_every`` count
        generator steps (critic-only phases also log every ``log_every`` critic steps).
    callback:
        Called after every update with ``{"kind": "critic" | "generator", "step": g,
        "critic_step": c, ...losses}``; ``step``/``critic_step`` give the position after it.
    """

    kind = "gan"
    _pinned = (
        "batch_size",
        "seed",
        "critic_warmup_steps",
        "critic_steps_per_generator_step",
        "extra_critic_every",
        "extra_critic_steps",
    )

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module,
        dataset: Any,
        *,
        content_loss: str | Callable[..., torch.Tensor] = "l1",
        adv_weight: float = 1e-3,
        lambda_gp: float = 10.0,
        lr: float = 5e-6,
        critic_lr: float | None = None,
        betas: Sequence[float] = (0.9, 0.999),
        critic_warmup_steps: int = 10000,
        critic_steps_per_generator_step: int = 7,
        extra_critic_every: int = 500,
        extra_critic_steps: int = 200,
        generator_steps: int = 550000,
        batch_size: int = 2,
        run_dir: str | os.PathLike,
        seed: int = 0,
        val_fn: ValFn | None = None,
        val_every: int = 0,
        val_metric: str = "psnr",
        val_mode: str = "max",
        checkpoint_every: int = 100,
        log_every: int = 10,
        device: str | torch.device | None = "cpu",
        amp: bool = False,
        deterministic: bool = True,
        grad_clip: float | None = None,
        num_workers: int = 0,
        progress: bool = True,
        callback: Callback | None = None,
        overwrite: bool = False,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            run_dir=run_dir,
            seed=seed,
            val_fn=val_fn,
            val_every=val_every,
            val_metric=val_metric,
            val_mode=val_mode,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
            device=device,
            amp=amp,
            deterministic=deterministic,
            grad_clip=grad_clip,
            num_workers=num_workers,
            progress=progress,
            callback=callback,
            overwrite=overwrite,
        )
        for name, value in (
            ("critic_warmup_steps", critic_warmup_steps),
            ("critic_steps_per_generator_step", critic_steps_per_generator_step),
            ("extra_critic_every", extra_critic_every),
            ("extra_critic_steps", extra_critic_steps),
            ("generator_steps", generator_steps),
        ):
            if int(value) < 0:
                raise ConfigError(f"gan.{name}: must be >= 0, got {value}")
        self.generator = generator
        self.critic = critic
        self.content_name = (
            content_loss
            if isinstance(content_loss, str)
            else getattr(content_loss, "__name__", "custom")
        )
        self.content_fn = _as_loss(content_loss)
        self.adv_weight = float(adv_weight)
        self.lambda_gp = float(lambda_gp)
        self.lr = float(lr)
        self.critic_lr = self.lr if critic_lr is None else float(critic_lr)
        self.betas = tuple(float(b) for b in betas)
        self.schedule = GanConfig(
            critic_warmup_steps=int(critic_warmup_steps),
            critic_steps_per_generator_step=int(critic_steps_per_generator_step),
            extra_critic_every=int(extra_critic_every),
            extra_critic_steps=int(extra_critic_steps),
            generator_steps=int(generator_steps),
        )
        self.generator_steps = int(generator_steps)
        self._gp_gen = torch.Generator()

    @classmethod
    def from_config(
        cls,
        generator: nn.Module,
        critic: nn.Module,
        dataset: Any,
        train: TrainConfig,
        gan: GanConfig,
        **kwargs: Any,
    ) -> GANTrainer:
        """A GANTrainer from a recipe's ``gan`` section (schedule, losses, optimizer) and
        ``train`` section (batch size, seed, logging, validation, amp, ...)."""
        return cls(
            generator,
            critic,
            dataset,
            content_loss=gan.content_loss or train.loss,
            adv_weight=gan.adv_weight,
            lambda_gp=gan.lambda_gp,
            lr=gan.lr,
            critic_lr=gan.critic_lr,
            betas=gan.betas,
            critic_warmup_steps=gan.critic_warmup_steps,
            critic_steps_per_generator_step=gan.critic_steps_per_generator_step,
            extra_critic_every=gan.extra_critic_every,
            extra_critic_steps=gan.extra_critic_steps,
            generator_steps=gan.generator_steps,
            batch_size=train.batch_size,
            seed=train.seed,
            val_every=train.val_every,
            val_metric=train.val_metric,
            val_mode=train.val_mode,
            checkpoint_every=train.checkpoint_every,
            log_every=train.log_every,
            amp=train.amp,
            deterministic=train.deterministic,
            grad_clip=train.grad_clip,
            num_workers=train.num_workers,
            **kwargs,
        )

    def _settings(self) -> dict[str, Any]:
        s = self.schedule
        return {
            "content_loss": self.content_name,
            "adv_weight": self.adv_weight,
            "lambda_gp": self.lambda_gp,
            "lr": self.lr,
            "critic_lr": self.critic_lr,
            "betas": list(self.betas),
            "critic_warmup_steps": s.critic_warmup_steps,
            "critic_steps_per_generator_step": s.critic_steps_per_generator_step,
            "extra_critic_every": s.extra_critic_every,
            "extra_critic_steps": s.extra_critic_steps,
            "generator_steps": self.generator_steps,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "grad_clip": self.grad_clip,
            "amp": self.amp,
            "deterministic": self.deterministic,
            "generator_name": getattr(
                self.generator, "mrenhance_name", type(self.generator).__name__
            ),
            "critic_name": getattr(self.critic, "mrenhance_name", type(self.critic).__name__),
        }

    def generator_for_saving(self) -> nn.Module:
        """The trained generator itself (never a DDP wrapper)."""
        return self.generator

    def model_for_saving(self) -> nn.Module:
        """Alias of :meth:`generator_for_saving`."""
        return self.generator

    def load_best(self) -> Path | None:
        """Load ``best.pt``'s generator and critic weights, if validation wrote one."""
        if not self.best_path.is_file():
            return None
        load_model_weights(self.generator, self.best_path, key="model")
        load_model_weights(self.critic, self.best_path, key="critic")
        return self.best_path

    def fit(self, resume: bool = False, stop_at: int | None = None) -> TrainResult:
        """Run the schedule to ``generator_steps`` (or ``stop_at`` generator steps).

        ``resume`` and ``stop_at`` as in :meth:`Trainer.fit`. ``TrainResult.extra`` holds
        ``critic_steps`` (critic updates done in all).

        Raises
        ------
        TrainingDivergedError
            A critic or generator loss became NaN or Inf.
        """
        with _deterministic(self.deterministic):
            return self._fit(resume, stop_at)

    def _fit(self, resume: bool, stop_at: int | None) -> TrainResult:
        state = self._prepare(resume)
        info = self.info
        assert info is not None
        gen = self.generator.to(info.device)
        critic = self.critic.to(info.device)
        gen.train()
        critic.train()
        g_opt = _make_optimizer("adam", gen.parameters(), self.lr, self.betas, 0.0)
        c_opt = _make_optimizer("adam", critic.parameters(), self.critic_lr, self.betas, 0.0)
        g0, c0 = 0, 0
        self._gp_gen.manual_seed(self.seed)
        if state is not None:
            gen.load_state_dict(state["model"])
            critic.load_state_dict(state["critic"])
            g_opt.load_state_dict(state["optimizer"])
            c_opt.load_state_dict(state["critic_optimizer"])
            self._gp_gen.set_state(state["gp_rng"])
            g0, c0 = int(state["step"]), int(state["critic_step"])
            self._last_ckpt_step = _position(g0, c0)
        self._restore_rng(state)
        gen_net = ddp.wrap_ddp(gen, info)
        critic_net = ddp.wrap_ddp(critic, info)

        sched = self.schedule
        end = self.generator_steps if stop_at is None else min(self.generator_steps, stop_at)
        first_batch = critic_steps_before(g0, sched) + g0 + c0
        last_batch = critic_steps_before(end, sched) + end
        total_updates = critic_steps_before(self.generator_steps, sched) + self.generator_steps
        critic_total = critic_steps_before(g0, sched) + c0

        keep_at = (g0, critic_total)
        keep = (
            (lambda r: (int(r["step"]), int(r["critic_steps"])) <= keep_at)
            if state is not None
            else None
        )
        metrics = _MetricsLog(
            self.run_dir,
            [
                "step",
                "critic_steps",
                "critic_loss",
                "wasserstein",
                "gradient_penalty",
                "content_loss",
                "adv_loss",
                "generator_loss",
                "lr",
                "seconds",
            ],
            info.is_main,
            keep,
        )
        bar = self._progress(total_updates, first_batch, f"gan {self.run_dir.name}")
        c_win: list[list[float]] = []
        g_win: list[list[float]] = []
        final_loss: float | None = None
        done = g0

        def write_row(step: int, val: dict[str, float] | None = None) -> None:
            nonlocal c_win, g_win, final_loss
            row: dict[str, Any] = {"step": step, "critic_steps": critic_total}
            if c_win:
                cl, w, gp = np.mean(np.asarray(c_win), axis=0).tolist()
                row.update({"critic_loss": cl, "wasserstein": w, "gradient_penalty": gp})
            if g_win:
                gl, content, adv = np.mean(np.asarray(g_win), axis=0).tolist()
                row.update({"content_loss": content, "adv_loss": adv, "generator_loss": gl})
                final_loss = gl
            row.update({"lr": self.lr, "seconds": self._seconds()})
            row.update({f"val_{k}": v for k, v in (val or {}).items()})
            metrics.append(row)
            if "wasserstein" in row:
                bar.set_postfix(W=f"{row['wasserstein']:.4g}", refresh=False)
            c_win, g_win = [], []

        try:
            batches = iter(self._loader(first_batch, last_batch - first_batch))
            for g in range(g0, end):
                n_critic = gan_schedule(g, sched)
                long_phase = n_critic > sched.critic_steps_per_generator_step
                for c in range(c0 if g == g0 else 0, n_critic):
                    x, y = self._to_device(next(batches))
                    stats = self._critic_step(gen, critic_net, critic, c_opt, x, y)
                    if not all(math.isfinite(v) for v in stats):
                        raise self._diverged(
                            f"step {g + 1} (critic step {c + 1})", "critic loss", stats[0]
                        )
                    critic_total += 1
                    c_win.append(stats)
                    if long_phase and (c + 1) % self.log_every == 0:
                        write_row(g)
                    if long_phase and (c + 1) % self.checkpoint_every == 0 and c + 1 < n_critic:
                        self._save(self._state(g, c + 1, gen, critic, g_opt, c_opt))
                    bar.update(1)
                    if self.callback is not None:
                        self.callback(
                            {
                                "kind": "critic",
                                "step": g,
                                "critic_step": c + 1,
                                "critic_loss": stats[0],
                                "wasserstein": stats[1],
                                "gradient_penalty": stats[2],
                            }
                        )

                x, y = self._to_device(next(batches))
                gstats = self._generator_step(gen_net, gen, critic, g_opt, x, y)
                if not all(math.isfinite(v) for v in gstats):
                    raise self._diverged(f"step {g + 1}", "generator loss", gstats[0])
                done = g + 1
                g_win.append(gstats)

                val = None
                if self.val_fn is not None and self.val_every > 0:
                    if done % self.val_every == 0 or done == self.generator_steps:
                        val = self._validate(gen)
                        if self._improved(val):
                            self._best = {
                                "metric": val[self.val_metric],
                                "step": done,
                                "metrics": val,
                            }
                            self._save(self._state(done, 0, gen, critic, g_opt, c_opt), best=True)
                if done % self.log_every == 0 or val is not None or done == end:
                    write_row(done, val)
                if done % self.checkpoint_every == 0 or done == end:
                    self._save(self._state(done, 0, gen, critic, g_opt, c_opt))
                bar.update(1)
                if self.callback is not None:
                    self.callback(
                        {
                            "kind": "generator",
                            "step": done,
                            "critic_step": 0,
                            "generator_loss": gstats[0],
                            "content_loss": gstats[1],
                            "adv_loss": gstats[2],
                        }
                    )
        finally:
            bar.close()
            metrics.close()
        ddp.barrier()
        result = self._result(done, final_loss, metrics.path, done < self.generator_steps)
        result.extra["critic_steps"] = critic_total
        return result

    def _critic_step(
        self,
        gen: nn.Module,
        critic_net: nn.Module,
        critic: nn.Module,
        opt: torch.optim.Optimizer,
        x: torch.Tensor,
        y: torch.Tensor,
    ) -> list[float]:
        """One critic update on this rank's share; returns global [loss, W, GP]."""
        info = self.info
        assert info is not None
        with torch.no_grad(), self._autocast():
            # the plain module: no DDP bookkeeping for a forward pass without backward
            fake = gen(x).float()
        # GP weights for the whole global batch, this rank's share (exact under DDP)
        alpha = torch.rand(self.batch_size, generator=self._gp_gen)
        share = self.batch_size // info.world_size
        alpha = alpha[info.rank * share : (info.rank + 1) * share]
        with self._autocast():
            terms = critic_loss_terms(critic_net, y, fake, self.lambda_gp, alpha=alpha)
        parts = torch.stack([terms.loss.detach(), terms.wasserstein, terms.gradient_penalty])
        stats = ddp.all_reduce_mean(parts.float()).tolist()
        if not math.isfinite(stats[0]):
            return stats
        opt.zero_grad(set_to_none=True)
        terms.loss.backward()
        self._clip(critic.parameters())
        opt.step()
        return stats

    def _generator_step(
        self,
        gen_net: nn.Module,
        gen: nn.Module,
        critic: nn.Module,
        opt: torch.optim.Optimizer,
        x: torch.Tensor,
        y: torch.Tensor,
    ) -> list[float]:
        """One generator update (Eq. 3); returns global [total, content, adversarial]."""
        critic.requires_grad_(False)  # the critic only scores here; it is not updated
        try:
            with self._autocast():
                fake = gen_net(x)
                # the plain critic module: its parameters take no part in this backward
                adv = generator_adversarial_loss(critic, fake)
            content = self.content_fn(fake.float(), y)
            total = content + self.adv_weight * adv
            parts = torch.stack([total.detach(), content.detach(), adv.detach()]).float()
            stats = ddp.all_reduce_mean(parts).tolist()
            if not math.isfinite(stats[0]):
                return stats
            opt.zero_grad(set_to_none=True)
            total.backward()
            self._clip(gen.parameters())
            opt.step()
        finally:
            critic.requires_grad_(True)
        return stats

    def _state(
        self,
        g: int,
        c: int,
        gen: nn.Module,
        critic: nn.Module,
        g_opt: torch.optim.Optimizer,
        c_opt: torch.optim.Optimizer,
    ) -> dict[str, Any]:
        state = self._common_state(g)
        state.update(
            {
                "critic_step": int(c),
                "critic_steps_total": critic_steps_before(g, self.schedule) + int(c),
                "model": gen.state_dict(),
                "critic": critic.state_dict(),
                "optimizer": g_opt.state_dict(),
                "critic_optimizer": c_opt.state_dict(),
                "gp_rng": self._gp_gen.get_state(),
                "scheduler": {"name": "constant", "step": int(g)},
            }
        )
        return state

    def _save(self, state: dict[str, Any], best: bool = False) -> None:
        super()._save(state, best)
        if not best:
            self._last_ckpt_step = _position(int(state["step"]), int(state["critic_step"]))


def _position(g: int, c: int) -> str:
    return f"{g}" if c == 0 else f"{g}, critic step {c}"
