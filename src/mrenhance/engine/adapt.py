"""Self-supervised adaptation to one input: fine-tune a copy of the network on the input itself.

The task says how to make training pairs from an input volume alone
(``task.adaptation_pairs(volume, card, rng) -> AdaptationPairs``; for SR: degrade the
input further along its high-resolution axes and learn to undo it, as SMORE / ZSSR do);
this module owns the rest, for every task: a deep copy of the Enhancer's network, random
patches of the pairs, an L1 (or the task's) loss, Adam, a budget in steps (and optionally
seconds), and a new :class:`mrenhance.enhance_api.Enhancer` holding the adapted copy. The
original network, the input Volume and the input file are never modified.

Normalisation layers keep their trained statistics (choice: BatchNorm in eval mode during
adaptation; a handful of patches of one scan is no population to re-estimate them from),
so ``steps=0`` gives exactly the unadapted network.

2D networks (e.g. DWAN of the ``asl`` task) adapt on 2D patches: the pairs stay the task's
prepared (x, y, z) arrays, the very arrays inference tiles, and each patch is a box of
depth 1 along the inference plan's ``slice_axis``, with that axis dropped before the
network sees it. Choice: depth-1 boxes rather than a list of 2D slices, so mask-centred
drawing works unchanged on the task's 3D masks (slices with more mask voxels are drawn
more often) and there is one patch sampler for every task.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrenhance.errors import InputError

__all__ = ["DEFAULT_PATCH", "AdaptationPairs", "adapt_enhancer", "self_supervised_loss"]

PairAugment = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass
class AdaptationPairs:
    """Self-supervised pairs from one input, on the network's (normalised) scale.

    inputs, targets : lists of (x, y, z) float32 arrays, paired, same shape per pair.
    masks : optional (x, y, z) bool arrays: patch centres are drawn inside them.
    augment : optional ``augment(x, y, rng) -> (x, y)`` applied to each (1, *patch) pair
        ((1, a, b) for a 2D network).
    loss : a name in :data:`mrenhance.losses.LOSSES`.
    patch_size : the task's patch when the caller gives none (e.g. its training patch);
        None: :data:`DEFAULT_PATCH`.
    info : what the task drew (e.g. which axes it degraded), recorded in the provenance.
    """

    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    masks: list[np.ndarray] | None = None
    augment: PairAugment | None = None
    loss: str = "l1"
    patch_size: int | Sequence[int] | None = None
    info: dict[str, Any] = field(default_factory=dict)


#: Patch edge (voxels per axis) when neither the caller nor the task gives one.
DEFAULT_PATCH = 32


def _patch_shape(
    shape: Sequence[int], patch: int | Sequence[int], slice_axis: int | None = None
) -> tuple[int, ...]:
    """The box drawn from an array of ``shape``: ``patch`` clipped to it.

    ``slice_axis`` (a 2D network): ``patch`` has one size per in-plane axis (an int: a
    square) and the box has depth 1 along ``slice_axis``.
    """
    n_patch = len(shape) - (slice_axis is not None)
    want = (patch,) * n_patch if isinstance(patch, (int, np.integer)) else tuple(patch)
    if len(want) != n_patch:
        kind = "2D" if slice_axis is not None else f"{len(shape)}D"
        raise InputError(f"adaptation patch {list(want)}: a {kind} network needs {n_patch} sizes")
    if slice_axis is not None:
        want = (*want[:slice_axis], 1, *want[slice_axis:])
    return tuple(max(1, min(int(p), int(n))) for p, n in zip(want, shape, strict=True))


def _slice_axis_of(model: Any, slice_axis: int) -> int | None:
    """``slice_axis`` for a 2D network, None for a 3D one (or one that does not say)."""
    from mrenhance.options import model_spatial_dims

    return int(slice_axis) if model_spatial_dims(model) == 2 else None


def _draw_batch(
    pairs: AdaptationPairs,
    patch: int | Sequence[int],
    batch: int,
    rng: np.random.Generator,
    slice_axis: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(batch, 1, *patch) inputs and targets; with ``slice_axis``, 2D patches of one slice."""
    xs, ys = [], []
    for _ in range(batch):
        k = int(rng.integers(len(pairs.inputs)))
        x_full, y_full = pairs.inputs[k], pairs.targets[k]
        p = _patch_shape(x_full.shape, patch, slice_axis)
        if pairs.masks is not None and pairs.masks[k].any():
            idx = np.flatnonzero(pairs.masks[k])
            centre = np.unravel_index(int(idx[rng.integers(idx.size)]), x_full.shape)
            corner = [
                int(np.clip(c - q // 2, 0, n - q))
                for c, q, n in zip(centre, p, x_full.shape, strict=True)
            ]
        else:
            corner = [int(rng.integers(n - q + 1)) for q, n in zip(p, x_full.shape, strict=True)]
        box = tuple(slice(c, c + q) for c, q in zip(corner, p, strict=True))
        x = np.asarray(x_full[box], np.float32)
        y = np.asarray(y_full[box], np.float32)
        if slice_axis is not None:  # the depth-1 box as the 2D image the network takes
            x, y = x.squeeze(slice_axis), y.squeeze(slice_axis)
        x, y = x[None], y[None]
        if pairs.augment is not None:
            x, y = pairs.augment(x, y, rng)
        xs.append(np.ascontiguousarray(x, np.float32))
        ys.append(np.ascontiguousarray(y, np.float32))
    if len({a.shape for a in xs}) > 1:  # augmentations that permute axes: one shape a batch
        xs, ys = xs[:1], ys[:1]
    return np.stack(xs), np.stack(ys)


def _freeze_norm_statistics(model: Any) -> None:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def self_supervised_loss(
    model: Any,
    pairs: AdaptationPairs,
    *,
    patch_size: int | Sequence[int] | None = None,
    n_patches: int = 2,
    seed: int = 12345,
    device: str = "cpu",
    slice_axis: int = 2,
) -> float:
    """Mean loss of ``model`` on ``n_patches`` fixed patches of ``pairs`` (eval mode).

    ``patch_size`` None: the task's (``pairs.patch_size``), else :data:`DEFAULT_PATCH`.
    ``slice_axis``: for a 2D network, the axis of the pairs' arrays its slices are
    perpendicular to (the inference plan's); ignored for a 3D network.
    """
    import torch

    from mrenhance.losses import create_loss

    patch_size = _resolve_patch(patch_size, pairs)
    axis = _slice_axis_of(model, slice_axis)
    loss_fn = create_loss(pairs.loss)
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    values = []
    with torch.no_grad():
        for _ in range(n_patches):
            x, y = _draw_batch(pairs, patch_size, 1, rng, axis)
            out = model(torch.from_numpy(x).to(device))
            values.append(float(loss_fn(out, torch.from_numpy(y).to(device))))
    model.train(was_training)
    return float(np.mean(values))


def _resolve_patch(
    patch_size: int | Sequence[int] | None, pairs: AdaptationPairs
) -> int | Sequence[int]:
    if patch_size is not None:
        return patch_size
    return pairs.patch_size if pairs.patch_size is not None else DEFAULT_PATCH


def adapt_enhancer(
    enhancer: Any,
    volume: Any,
    *,
    steps: int,
    seed: int = 0,
    lr: float = 1e-4,
    batch_size: int = 2,
    patch_size: int | Sequence[int] | None = None,
    max_seconds: float | None = None,
    pairs: AdaptationPairs | None = None,
) -> Any:
    """A new Enhancer whose network is a copy of ``enhancer``'s fine-tuned on ``volume``.

    Parameters
    ----------
    enhancer : :class:`mrenhance.enhance_api.Enhancer`; its network is not modified.
    volume : the input Volume (not modified); the task's ``adaptation_pairs`` makes pairs.
    steps : optimizer steps (0: the returned Enhancer runs the original weights' copy).
    seed : of the pairs and patches (the same seed, input and steps give the same network).
    lr, batch_size, patch_size : Adam learning rate (choice: the paper's training rate,
        Sec. 3.2 of mDCSRN), patches per step and their size (clipped to the volume;
        None: the task's ``pairs.patch_size``, else :data:`DEFAULT_PATCH`). A 2D network
        gets 2D patches from the slices of the enhancer's inference ``slice_axis``.
    max_seconds : optional wall-clock budget; the loop stops at whichever comes first.
    pairs : precomputed pairs (tests); default ``task.adaptation_pairs(volume, card, rng)``.

    Returns
    -------
    Enhancer with ``adaptation`` = {"steps", "seconds", "loss_before", "loss_after",
    "seed", "lr", "patch_size", **pairs.info}; its provenance step records it.
    """
    import torch

    from mrenhance.losses import create_loss

    if not isinstance(steps, int) or steps < 0:
        raise InputError(f"--adapt-steps {steps}: must be an integer >= 0")
    task = enhancer.task
    hook = getattr(task, "adaptation_pairs", None)
    if pairs is None:
        if hook is None:
            raise InputError(f"task {task.name}: self-supervised adaptation is not available")
        pairs = hook(volume, enhancer.normalisation, np.random.default_rng([seed, 0]))
    patch_size = _resolve_patch(patch_size, pairs)
    slice_axis = int(enhancer.plan.slice_axis)
    axis = _slice_axis_of(enhancer.model, slice_axis)
    _patch_shape(pairs.inputs[0].shape, patch_size, axis)  # a bad patch: one line, now
    t0 = time.perf_counter()
    model = copy.deepcopy(enhancer.model)
    device = enhancer.device
    model.to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    measure = {"patch_size": patch_size, "device": device, "slice_axis": slice_axis}
    loss_before = self_supervised_loss(model, pairs, **measure)
    done = 0
    if steps > 0:
        loss_fn = create_loss(pairs.loss)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        rng = np.random.default_rng([seed, 1])
        model.train()
        _freeze_norm_statistics(model)
        for _ in range(steps):
            if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                break
            x, y = _draw_batch(pairs, patch_size, batch_size, rng, axis)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(torch.from_numpy(x).to(device)), torch.from_numpy(y).to(device))
            if not torch.isfinite(loss):
                raise InputError(f"adaptation diverged at step {done} (loss {float(loss)})")
            loss.backward()
            optimizer.step()
            done += 1
    model.eval()
    loss_after = self_supervised_loss(model, pairs, **measure)
    adapted = enhancer.with_model(model)  # every option of the original, this network
    adapted.adaptation = {
        "steps": done,
        "seconds": round(time.perf_counter() - t0, 2),
        "loss_before": round(loss_before, 6),
        "loss_after": round(loss_after, 6),
        "seed": seed,
        "lr": lr,
        "patch_size": [
            q
            for a, q in enumerate(_patch_shape(pairs.inputs[0].shape, patch_size, axis))
            if a != axis
        ],
        **pairs.info,
    }
    return adapted
