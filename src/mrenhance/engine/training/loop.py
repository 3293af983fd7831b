"""The training loop: one :class:`Trainer` for every step type.

The loop holds, in one place, the discipline that makes resuming and data parallelism
exact; a :class:`~.steps.Step` says what an update does.

* **Data is a pure function of the batch counter.** Batch number ``k`` is the dataset
  indices ``[k * B, (k + 1) * B)`` (modulo ``len(dataset)``), ``B`` the global batch size.
  Under DDP with ``W`` processes, rank ``r`` takes the contiguous share
  ``[k * B + r * B / W, k * B + (r + 1) * B / W)``; DDP averages the gradients, so ``W``
  processes compute the same update as one process with the whole batch.
  ``engine.patches.PatchDataset`` draws patch ``i`` from ``(seed, i)`` alone.
* **Checkpoints hold everything that changes**: the step's state (weights, optimiser
  moments, its own RNGs), the position ``(step, sub_step)``, the RNG states of every rank
  and the best validation metric. Learning rates are pure functions of the step.
  ``fit(resume=True)`` continues from ``checkpoints/last.pt``; on the CPU the final
  weights are bit-identical to an uninterrupted run.
* **Rank 0 alone writes** ``metrics.csv``, TensorBoard events (if installed),
  ``trainer.json``, ``checkpoints/last.pt`` (every ``checkpoint_every`` steps, inside long
  iterations every ``checkpoint_every`` sub-updates, and at the end) and
  ``checkpoints/best.pt`` (when the validation metric improves), all atomically.
* **A NaN or Inf loss stops training** before the optimiser step, keeps the last good
  checkpoint untouched and raises :class:`~mrenhance.errors.TrainingDivergedError`.

Batches reach the step as dicts (``inputs``, ``target``, optional ``mask``, ...): a
dataset item may be such a dict or an ``(input, target)`` pair (see :func:`as_item`).

Run under ``torchrun --nproc_per_node N`` unchanged: the loop calls
:func:`mrenhance.engine.distributed.init_distributed`; the caller ends with
:func:`~mrenhance.engine.distributed.cleanup`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, default_collate

from mrenhance.config import TrainConfig
from mrenhance.engine import distributed as ddp
from mrenhance.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from mrenhance.engine.training.log import MetricsLog, plain, to_json
from mrenhance.engine.training.steps import NonFiniteLoss, Step, StepContext
from mrenhance.errors import (
    ConfigError,
    InputError,
    OutputExistsError,
    TrainingDivergedError,
    WeightsError,
)
from mrenhance.io.atomic import write_text_atomic

__all__ = ["TrainResult", "Trainer", "as_item", "collate_items", "rank_batch_indices"]

log = logging.getLogger("mrenhance.train")

CHECKPOINT_FORMAT = "mrenhance-checkpoint"
CHECKPOINT_VERSION = 2

ValFn = Callable[[nn.Module], dict[str, float]]
Callback = Callable[[dict[str, Any]], None]

# loop keys of a checkpoint; a step's state_dict keys must differ from these
_LOOP_KEYS = (
    "format",
    "version",
    "kind",
    "step",
    "sub_step",
    "rng",
    "best_metric",
    "best_step",
    "best_metrics",
    "settings",
    "seconds",
)


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


def as_item(item: Any) -> dict[str, Any]:
    """A dataset item as a dict: ``{"inputs": ..., "target": ..., ...}``.

    A mapping must hold ``inputs`` and ``target``; an ``(input, target)`` pair becomes
    ``{"inputs": input, "target": target}`` (the older dataset contract).
    """
    if isinstance(item, Mapping):
        if "inputs" not in item or "target" not in item:
            raise InputError(
                f"dataset: an item dict needs 'inputs' and 'target', got {sorted(item)}"
            )
        return dict(item)
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return {"inputs": item[0], "target": item[1]}
    raise InputError(
        "dataset: __getitem__ must return {'inputs': ..., 'target': ...} or an "
        f"(input, target) pair, got {type(item).__name__}"
    )


def collate_items(items: Sequence[Any]) -> dict[str, Any]:
    """Stack dataset items (dicts or pairs) into a batch dict of ``(B, ...)`` tensors."""
    return default_collate([as_item(i) for i in items])


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes
    ----------
    step: iterations done (generator steps for a GAN). stopped_early: ``stop_at`` ended
    the call before ``steps``. best_metric, best_step, best_metrics: the best validation
    value of ``val_metric``, its step and all validation values there (None without
    validation). final_loss: mean of the step's ``main_loss`` over the last logging
    window. run_dir, metrics_csv, last_checkpoint, best_checkpoint: paths
    (``best_checkpoint`` None without validation). seconds: wall time, summed over
    resumes. extra: the step's counters at the end (e.g. ``critic_steps``).
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


def _mean_stats(window: list[dict[str, float]]) -> dict[str, float]:
    keys: dict[str, list[float]] = {}
    for stats in window:
        for k, v in stats.items():
            keys.setdefault(k, []).append(v)
    return {k: float(np.mean(v)) for k, v in keys.items()}


class Trainer:
    """Runs a :class:`~.steps.Step` for ``steps`` iterations on a map-style dataset.

    Parameters
    ----------
    step:
        What an iteration does (:class:`~.steps.SupervisedStep`, :class:`~.steps.WGANGPStep`,
        :class:`~.steps.GANStep`, or any registered step).
    dataset:
        Map-style; ``dataset[i]`` is ``{"inputs": (C, *patch), "target": (C', *patch'),
        ...}`` float32 arrays (or an ``(input, target)`` pair), deterministic in ``i``
        (see ``engine.patches.PatchDataset``).
    steps:
        Iterations in all (mDCSRN: 500k supervised, 550k generator steps).
    batch_size:
        Global batch size; divided equally over DDP ranks (mDCSRN Sec. 3.2: 2).
    run_dir:
        Output folder (created): ``metrics.csv``, ``trainer.json``, ``checkpoints/``.
    seed:
        Seeds torch/NumPy/``random`` at a fresh start (``seed + rank`` per process) and
        the step's own generators.
    grad_clip:
        Maximum global L2 norm of the gradients of every update, or None.
    val_fn, val_every, val_metric, val_mode:
        ``val_fn(step.model) -> {"psnr": ..., ...}`` every ``val_every`` steps and at the
        end (0 = never), on rank 0 in eval mode without gradients; ``best.pt`` is written
        when ``val_metric`` improves (higher is better for ``"max"``).
    checkpoint_every, log_every:
        ``last.pt`` every so many steps (and at the end); a ``metrics.csv`` row every so
        many steps (window means). Long iterations (the WGAN-GP warm-up) also log and
        checkpoint every so many sub-updates.
    device:
        ``"cpu"``, ``"cuda"`` (``cuda:LOCAL_RANK`` under torchrun) or None for auto.
    amp:
        bfloat16 autocast (no loss scaling is needed for bfloat16).
    deterministic:
        ``torch.use_deterministic_algorithms(True, warn_only=True)`` during ``fit``.
    num_workers:
        DataLoader worker processes (the data stays a function of the step).
    progress:
        A tqdm bar on rank 0 (stderr), one tick per update.
    callback:
        Called after every update with ``{"kind": "step" | "critic" | "generator", "step",
        "sub_step", ...statistics, "lr"}``; an exception there stops training like a kill.
    overwrite:
        Start over in a ``run_dir`` that already holds a checkpoint.
    time_budget_s:
        Stop cleanly after the first step that ends past this many seconds of this call
        (``train.minutes``, ``mrenhance train --budget 30m``): a ``metrics.csv`` row and
        ``last.pt`` are written there, and ``fit(resume=True)`` continues exactly.
    """

    # settings that decide which data each update sees: a resume must not change them
    _pinned: tuple[str, ...] = ("batch_size", "seed")

    def __init__(
        self,
        step: Step,
        dataset: Any,
        *,
        steps: int = 1000,
        batch_size: int = 2,
        run_dir: str | os.PathLike,
        seed: int = 0,
        grad_clip: float | None = None,
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
        time_budget_s: float | None = None,
    ) -> None:
        if run_dir is None:
            raise ConfigError("run_dir is required")
        if not isinstance(step, Step):
            raise ConfigError(f"Trainer: step must be a Step, got {type(step).__name__}")
        for name, value in (
            ("checkpoint_every", checkpoint_every),
            ("log_every", log_every),
            ("batch_size", batch_size),
        ):
            if int(value) <= 0:
                raise ConfigError(f"train.{name}: must be > 0, got {value}")
        if int(steps) < 0:
            raise ConfigError(f"train.steps: must be >= 0, got {steps}")
        if val_mode not in ("max", "min"):
            raise ConfigError(f"train.val_mode: expected 'max' or 'min', got {val_mode!r}")
        if val_every < 0:
            raise ConfigError(f"train.val_every: must be >= 0, got {val_every}")
        if time_budget_s is not None and not float(time_budget_s) > 0:
            raise ConfigError(f"train.minutes: must be > 0, got {time_budget_s / 60:g}")
        if grad_clip is not None and not float(grad_clip) > 0:
            raise ConfigError(f"train.grad_clip: must be > 0 or None, got {grad_clip}")
        try:
            self._n_items = len(dataset)
        except TypeError:
            self._n_items = 0
        else:
            if self._n_items == 0:
                raise InputError("dataset: it is empty")
        self.step = step
        self.dataset = dataset
        self.steps = int(steps)
        self.batch_size = int(batch_size)
        self.run_dir = Path(run_dir)
        self.seed = int(seed)
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.val_fn = val_fn
        self.val_every = int(val_every)
        self.val_metric = val_metric
        self.val_mode = val_mode
        self.checkpoint_every = int(checkpoint_every)
        self.log_every = int(log_every)
        self.device = device
        self.amp = bool(amp)
        self.deterministic = bool(deterministic)
        self.num_workers = int(num_workers)
        self.progress = bool(progress)
        self.callback = callback
        self.overwrite = bool(overwrite)
        self.time_budget_s = None if time_budget_s is None else float(time_budget_s)
        self.info: ddp.DistInfo | None = None
        self._best: dict[str, Any] = {"metric": None, "step": None, "metrics": None}
        self._seconds_before = 0.0
        self._t0 = 0.0
        self._last_ckpt: str | None = None

    @classmethod
    def from_config(
        cls, step: Step, dataset: Any, train: TrainConfig, *, steps: int | None = None, **kw: Any
    ) -> Trainer:
        """A Trainer with the loop fields of a recipe's ``train`` section; ``steps``
        overrides ``train.steps`` (the GAN stage's ``gan.generator_steps``); ``kw`` (run_dir,
        val_fn, device, progress, callback, overwrite) are passed through."""
        return cls(
            step,
            dataset,
            steps=train.steps if steps is None else steps,
            batch_size=train.batch_size,
            seed=train.seed,
            grad_clip=train.grad_clip,
            val_every=train.val_every,
            val_metric=train.val_metric,
            val_mode=train.val_mode,
            checkpoint_every=train.checkpoint_every,
            log_every=train.log_every,
            amp=train.amp,
            deterministic=train.deterministic,
            num_workers=train.num_workers,
            time_budget_s=None if train.minutes is None else 60.0 * float(train.minutes),
            **kw,
        )

    # ---- paths and settings ------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"

    @property
    def model(self) -> nn.Module:
        """The step's trained network (never a DDP wrapper)."""
        return self.step.model

    def model_for_saving(self) -> nn.Module:
        """The trained network itself (never a DDP wrapper)."""
        return self.step.model

    def settings(self) -> dict[str, Any]:
        """Plain-JSON settings of the loop and the step (``trainer.json``)."""
        return plain(
            {
                "step_type": self.step.kind,
                "steps": self.steps,
                "batch_size": self.batch_size,
                "seed": self.seed,
                "grad_clip": self.grad_clip,
                "amp": self.amp,
                "deterministic": self.deterministic,
                **self.step.settings(),
            }
        )

    def load_best(self) -> Path | None:
        """Load ``best.pt``'s networks into the step, if validation wrote one."""
        if not self.best_path.is_file():
            return None
        state = load_checkpoint(self.best_path)
        for key, module in self.step.modules().items():
            if key not in state:
                raise WeightsError(f"{self.best_path}: checkpoint has no {key!r} state_dict")
            module.load_state_dict(state[key])
        return self.best_path

    # ---- fit ---------------------------------------------------------------------------
    def fit(self, resume: bool = False, stop_at: int | None = None) -> TrainResult:
        """Train until ``steps`` iterations are done (or ``stop_at``, with a checkpoint).

        Parameters
        ----------
        resume:
            Continue from ``run_dir/checkpoints/last.pt`` (step state, position, RNG
            states, best metric); otherwise start fresh (refused if ``run_dir`` holds a
            checkpoint and ``overwrite`` is False).
        stop_at:
            Stop once this many iterations are done (a time-boxed job); ``last.pt`` is
            written there and ``fit(resume=True)`` continues exactly.

        Raises
        ------
        TrainingDivergedError
            A loss became NaN or Inf (no update is made with it; ``last.pt`` is kept).
        """
        with _deterministic(self.deterministic):
            return self._fit(resume, stop_at)

    def _fit(self, resume: bool, stop_at: int | None) -> TrainResult:
        state = self._prepare(resume)
        info = self.info
        assert info is not None
        step = self.step
        per_epoch = self._n_items // self.batch_size if self._n_items else 0
        ctx = StepContext(
            info, self.batch_size, self.seed, self.amp, self.grad_clip, self.steps, per_epoch
        )
        step.setup(ctx, state)
        g0, c0 = 0, 0
        if state is not None:
            g0, c0 = int(state["step"]), int(state.get("sub_step", 0))
            self._last_ckpt = _position(g0, c0, step.sub_name)
        self._restore_rng(state)

        end = self.steps if stop_at is None else min(self.steps, int(stop_at))
        first_batch = step.updates_before(g0) + c0
        last_batch = step.updates_before(end)
        counters0 = step.counters(g0, c0)
        keep = None
        if state is not None:
            at = (g0, *counters0.values())
            keys = ["step", *counters0]
            keep = lambda r: tuple(int(r[k]) for k in keys) <= at  # noqa: E731
        metrics = MetricsLog(
            self.run_dir,
            ["step", *counters0, *step.columns, "lr", "seconds"],
            info.is_main,
            keep,
            x_key=next(iter(counters0), "step"),
        )
        bar = self._progress(step.updates_before(self.steps), first_batch)
        window: list[dict[str, float]] = []
        final: dict[str, float | None] = {"loss": None}
        done = g0
        lr = 0.0

        def write_row(g: int, sub: int, val: dict[str, float] | None = None) -> None:
            row: dict[str, Any] = {"step": g, **step.counters(g, sub)}
            means = _mean_stats(window)
            row.update(means)
            if step.main_loss in means:
                final["loss"] = means[step.main_loss]
            row.update({"lr": lr, "seconds": self._seconds()})
            row.update({f"val_{k}": v for k, v in (val or {}).items()})
            metrics.append(row)
            if step.progress_key in means:
                bar.set_postfix(
                    {step.progress_key: f"{means[step.progress_key]:.4g}"}, refresh=False
                )
            window.clear()

        try:
            batches = iter(self._loader(first_batch, last_batch - first_batch))
            stop = False  # the time budget ran out
            for g in range(g0, end):
                lr = step.set_lr(g)
                n = step.updates_in(g)
                long = step.long_iteration(g)
                for c in range(c0 if g == g0 else 0, n):
                    batch = self._to_device(next(batches))
                    main = c == n - 1
                    where = (
                        f"step {g + 1}" if main else f"step {g + 1} ({step.sub_name} step {c + 1})"
                    )
                    try:
                        stats = step.update(batch, g, c, ctx)
                    except NonFiniteLoss as bad:
                        raise self._diverged(where, bad.what, bad.value) from None
                    window.append(stats)
                    if step.progress_key in stats:  # the current loss, every step
                        bar.set_postfix(
                            {step.progress_key: f"{stats[step.progress_key]:.4g}"}, refresh=False
                        )
                    bar.update(1)
                    if not main:
                        if long and (c + 1) % self.log_every == 0:
                            write_row(g, c + 1)
                        if long and (c + 1) % self.checkpoint_every == 0:
                            self._save(self._state(g, c + 1))
                        self._emit(step.sub_name, g, c + 1, stats, lr)
                        continue
                    done = g + 1
                    val = None
                    if self.val_fn is not None and self.val_every > 0:
                        if done % self.val_every == 0 or done == self.steps:
                            val = self._validate_with_progress(step.model, done, bar)
                            if self._improved(val):
                                self._best = {
                                    "metric": val[self.val_metric],
                                    "step": done,
                                    "metrics": val,
                                }
                                self._save(self._state(done, 0), best=True)
                    out_of_time = self._out_of_time()
                    if done % self.log_every == 0 or val is not None or done == end or out_of_time:
                        write_row(done, 0, val)
                    if done % self.checkpoint_every == 0 or done == end or out_of_time:
                        self._save(self._state(done, 0))
                    self._emit(step.main_event, done, 0, stats, lr)
                    if out_of_time:
                        if self.progress and info.is_main:
                            bar.write(
                                f"time budget of {self.time_budget_s / 60:g} min reached at step "
                                f"{done} of {self.steps}; continue with --resume",
                                file=sys.stderr,
                            )
                        stop = True
                if stop:
                    break
        finally:
            bar.close()
            metrics.close()
        if info.is_main:
            self._write_curves(metrics.path, step)
        ddp.barrier()
        result = self._result(done, final["loss"], metrics.path, done < self.steps)
        result.extra.update(step.counters(done, 0))
        return result

    def _out_of_time(self) -> bool:
        """Past the time budget (rank 0's clock decides for every rank)."""
        if self.time_budget_s is None:
            return False
        late = time.time() - self._t0 >= self.time_budget_s
        return bool(ddp.broadcast_object(late)) if ddp.is_distributed() else late

    def _validate_with_progress(self, model: nn.Module, done: int, bar: Any) -> dict[str, float]:
        """:meth:`_validate` with its own line on the progress bar: when it starts and ends."""
        show = self.progress and self.info is not None and self.info.is_main
        if show:
            bar.write(f"step {done}: validating ...", file=sys.stderr)
        t0 = time.time()
        val = self._validate(model)
        if show:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in val.items())
            bar.write(
                f"step {done}: validation {shown} ({time.time() - t0:.1f} s)", file=sys.stderr
            )
        return val

    def _write_curves(self, metrics_csv: Path, step: Step) -> None:
        """``curves.png`` beside ``metrics.csv``: the losses and the validation metrics."""
        from mrenhance.errors import MrenhanceError
        from mrenhance.report.figures import training_curves

        try:
            with open(metrics_csv, encoding="utf-8") as fh:
                columns = fh.readline().strip().split(",")
            keys = [c for c in columns if c.endswith("loss") or c.startswith("val_")]
            keys = sorted(keys, key=lambda c: (c != step.main_loss, c.startswith("val_"), c))
            if keys:
                training_curves(metrics_csv, self.run_dir / "curves.png", keys=keys[:4])
        except (MrenhanceError, OSError) as err:  # a figure never fails a training run
            log.warning("curves.png not written: %s", err)

    def _emit(self, kind: str, g: int, sub: int, stats: dict[str, float], lr: float) -> None:
        if self.callback is not None:
            self.callback({"kind": kind, "step": g, "sub_step": sub, **stats, "lr": lr})

    # ---- setup -------------------------------------------------------------------------
    def _prepare(self, resume: bool) -> dict[str, Any] | None:
        """Join DDP, check the run folder, load ``last.pt`` when resuming."""
        info = self.info = ddp.init_distributed(self.device)
        rank_batch_indices(0, self.batch_size, 0, info.world_size)  # divisibility check
        self._best = {"metric": None, "step": None, "metrics": None}
        self._seconds_before = 0.0
        self._last_ckpt = None
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
                to_json({"world_size": info.world_size, **self.settings()}),
                overwrite=True,
            )
        ddp.barrier()
        self._t0 = time.time()
        return state

    def _check_resumable(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{self.last_path}: not an mrenhance training checkpoint")
        if state.get("kind") != self.step.kind:
            raise ConfigError(
                f"{self.last_path}: a {state.get('kind')!r} checkpoint cannot resume a "
                f"{self.step.kind!r} run"
            )
        saved = state.get("settings", {})
        now = self.settings()
        for key in (*self._pinned, *self.step.pinned):
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
            collate_fn=collate_items,
            pin_memory=info.device.type == "cuda",
            # its own generator: creating the iterator must not draw from the global RNG,
            # or a resumed run's dropout masks would differ from an uninterrupted run's
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Tensors to the device; floating tensors as float32."""
        assert self.info is not None
        dev = self.info.device
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(
                    dev, dtype=torch.float32 if v.is_floating_point() else None, non_blocking=True
                )
            out[k] = v
        return out

    def _progress(self, total: int, initial: int) -> Any:
        assert self.info is not None
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            initial=initial,
            desc=f"{self.step.kind} {self.run_dir.name}",
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

    def _state(self, g: int, sub: int) -> dict[str, Any]:
        own = self.step.state_dict()
        clash = [k for k in own if k in _LOOP_KEYS]
        if clash:
            raise ValueError(f"step {self.step.kind!r}: state_dict keys {clash} are the loop's")
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "kind": self.step.kind,
            "step": int(g),
            "sub_step": int(sub),
            **{k: int(v) for k, v in self.step.counters(g, sub).items()},
            "rng": self._gather_rng(),
            "best_metric": self._best["metric"],
            "best_step": self._best["step"],
            "best_metrics": self._best["metrics"],
            "settings": self.settings(),
            "seconds": self._seconds(),
            **own,
        }

    def _seconds(self) -> float:
        return self._seconds_before + (time.time() - self._t0)

    def _save(self, state: dict[str, Any], best: bool = False) -> None:
        assert self.info is not None
        if self.info.is_main:
            save_checkpoint(self.best_path if best else self.last_path, state)
        if not best:
            self._last_ckpt = _position(state["step"], state["sub_step"], self.step.sub_name)

    def _diverged(self, where: str, what: str, value: float) -> TrainingDivergedError:
        word = "nan" if math.isnan(value) else "inf"
        if self.last_path.exists():
            kept = f"last good checkpoint kept at {self.last_path}"
            if self._last_ckpt is not None:
                kept += f" (step {self._last_ckpt})"
        else:
            kept = "no checkpoint was written yet"
        return TrainingDivergedError(f"{where}: {what} is {word}; {kept}")

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


def _position(g: int, c: int, sub_name: str) -> str:
    return f"{g}" if c == 0 else f"{g}, {sub_name} step {c}"
