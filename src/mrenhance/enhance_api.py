"""Apply a trained network to a whole volume: the path from ``mrenhance enhance`` to a file.

load weights (sha256-checked) -> task's intensity preparation -> tiled inference
(``engine.infer``) -> undo the preparation -> a Volume on the input's grid, with provenance.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mrenhance.engine.grid import GridPlan
from mrenhance.errors import InputError
from mrenhance.models.weights import resolve_weights
from mrenhance.volume import Volume

__all__ = ["Enhancer", "check_tiling", "enhance", "resolve_weights"]


class Enhancer:
    """A network with its card, applied the way ``enhance`` applies it.

    ``task.prepare`` (the card's normalisation) -> tiled inference (``engine.infer``, the
    card's tiling unless overridden) -> ``task.restore``. Training validation, the task's
    evaluation protocol, weights shipping and ``mrenhance enhance`` all go through
    :meth:`__call__` or :meth:`run_region`, so what a card's metrics measure is what a user
    gets. Build one per batch with :meth:`from_weights`: the weights are read and checked
    once.

    Parameters
    ----------
    model : torch.nn.Module, in eval mode.
    task : the registered Task (or its name).
    card : ModelCard or None (then ``normalisation`` and ``inference`` give the rules).
    normalisation : overrides the card's rule (training validation passes the recipe's).
    inference : tiling options ``{"patch_size", "overlap", "blend"}`` over the card's.
    scale : a known normalisation scale (skips computing it; validation on a crop).
    """

    def __init__(
        self,
        model: Any,
        task: Any,
        *,
        card: Any = None,
        normalisation: Any = None,
        inference: dict[str, Any] | None = None,
        device: str = "cpu",
        batch_size: int = 1,
        progress: bool = False,
        amp_dtype: Any = None,
        scale: float | None = None,
    ) -> None:
        from mrenhance.models.card import DEFAULT_INFERENCE
        from mrenhance.tasks import get_task

        self.model = model
        self.task = get_task(task) if isinstance(task, str) else task
        self.card = card
        self.normalisation = normalisation if normalisation is not None else card
        base = card.inference_defaults() if card is not None else dict(DEFAULT_INFERENCE)
        self.inference = {**base, **{k: v for k, v in (inference or {}).items() if v is not None}}
        self.device = device
        self.batch_size = batch_size
        self.progress = progress
        self.amp_dtype = amp_dtype
        self.scale = scale
        # set by engine.adapt.adapt_enhancer: what the self-supervised fine-tuning did
        self.adaptation: dict[str, Any] | None = None
        check_tiling(
            _as_tiling(self.inference["patch_size"]),
            _as_tiling(self.inference["overlap"]),
            batch_size,
        )
        self.plan = GridPlan.from_dict(self.inference)

    @classmethod
    def from_weights(
        cls,
        model: str | os.PathLike,
        *,
        device: str = "cpu",
        **options: Any,
    ) -> Enhancer:
        """Load a shipped name or a ``.safetensors`` path once (sha256 and values checked)."""
        from mrenhance.models.weights import load_model, read_card

        path = resolve_weights(model)
        card = read_card(path)
        net = load_model(path, device=device)
        return cls(net, card.task, card=card, device=device, **options)

    @property
    def name(self) -> str:
        return self.card.name if self.card is not None else type(self.model).__name__

    def _infer(self, array: np.ndarray, source: str = "input") -> np.ndarray:
        from mrenhance.engine.infer import infer

        out = infer(
            self.model,
            array,
            self.plan,
            batch_size=self.batch_size,
            device=self.device,
            progress=self.progress,
            amp_dtype=self.amp_dtype,
        )
        if not np.all(np.isfinite(out)):
            bad = int(out.size - np.count_nonzero(np.isfinite(out)))
            raise InputError(
                f"{source}: the network {self.name} produced {bad} NaN/Inf voxels; nothing written"
            )
        return out

    def __call__(self, volume: Volume) -> Volume:
        """Enhance a whole volume; a Volume on the task's output grid, provenance appended."""
        array, ctx = self.task.prepare(volume, self.normalisation, scale=self.scale)
        source = str(volume.meta.get("source", "input"))
        result = self.task.restore(self._infer(array, source), ctx, volume)
        card = self.card
        step = (
            f"enhance model={self.name} sha256={(card.sha256 if card else '')[:12]} "
            f"patch={list(self.plan.patch)} overlap={list(self.plan.overlap)} "
            f"blend={self.plan.blend} placement={self.plan.placement} "
            f"scale={ctx.get('scale', 1.0):.6g}"
        )
        if self.adaptation is not None:
            a = self.adaptation
            step += (
                f" adapted(steps={a['steps']} seconds={a['seconds']} seed={a['seed']} "
                f"loss={a['loss_before']:.4g}->{a['loss_after']:.4g})"
            )
        result = result.with_data(result.data, step=step)
        if self.adaptation is not None:
            result.meta["adaptation"] = dict(self.adaptation)
        if card is not None:
            result.meta["model_card"] = {
                "name": card.name,
                "task": card.task,
                "sha256": card.sha256,
            }
        return result

    def run_region(self, volume: Volume, box: tuple[slice, ...]) -> np.ndarray:
        """Normalise over the whole ``volume``, run the network on ``box``, restore units.

        Used by evaluation protocols that score a held-out region: the same result as
        ``self(volume).data[box]`` up to the tiling of the region (exact when ``box`` keeps
        a receptive field of context around the voxels that are scored).
        """
        array, ctx = self.task.prepare(volume, self.normalisation, scale=self.scale)
        region = volume.crop(box)
        source = str(volume.meta.get("source", "input"))
        return self.task.restore(self._infer(array[box], source), ctx, region).data


def _as_tiling(value: Any) -> int | tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else int(value)


_CACHE: dict[tuple, Enhancer] = {}


def enhance(
    volume: Volume,
    model: str | os.PathLike | Enhancer,
    *,
    device: str = "cpu",
    patch_size: int | tuple[int, ...] | None = None,
    overlap: int | tuple[int, ...] | None = None,
    blend: str | None = None,
    batch_size: int = 1,
    progress: bool = False,
    upsample: tuple[float, ...] | None = None,
    upsample_method: str = "sinc",
    adapt_steps: int = 0,
    adapt_seed: int = 0,
) -> Volume:
    """Enhance ``volume`` with a shipped model name, a weights path or an :class:`Enhancer`.

    Parameters
    ----------
    volume : Volume, (x, y, z) for the SR models.
    model : shipped name (see ``mrenhance models``), path to ``*.safetensors`` with its card,
        or an Enhancer (then the tiling options below are ignored).
    patch_size, overlap, blend : tiling; default to the model card's ``inference`` section.
    upsample : optional zoom factors per axis, e.g. (2, 2, 1): first resample a low-matrix
        acquisition onto the finer grid (``upsample_method`` "sinc" = zero-filled k-space,
        or "cubic"), as the SR networks expect their input on the target grid.
    adapt_steps : self-supervised fine-tuning steps on this input before enhancing it
        (:func:`mrenhance.engine.adapt.adapt_enhancer`; a copy of the network is tuned, the
        input is untouched); 0 = none. The seconds taken are in
        ``result.meta["adaptation"]``.
    adapt_seed : the seed of the adaptation's pairs and patches.

    Returns
    -------
    Volume on the input grid (or the upsampled grid), float32, provenance appended.
    """
    if isinstance(model, Enhancer):
        enhancer = model
    else:
        enhancer = _cached_enhancer(
            model,
            device=device,
            inference={"patch_size": patch_size, "overlap": overlap, "blend": blend},
            batch_size=batch_size,
            progress=progress,
        )
    enhancer.task.check_input(volume)
    if upsample is not None:
        from mrenhance.baselines.interpolate import interpolate_volume

        volume = interpolate_volume(volume, zoom=tuple(upsample), method=upsample_method)
    if adapt_steps:
        from mrenhance.engine.adapt import adapt_enhancer

        enhancer = adapt_enhancer(enhancer, volume, steps=int(adapt_steps), seed=adapt_seed)
    return enhancer(volume)


def _cached_enhancer(model: str | os.PathLike, **options: Any) -> Enhancer:
    """One Enhancer per (weights file state, options): a batch reads its weights once."""
    path = resolve_weights(model)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, repr(sorted(options.items())))
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = Enhancer.from_weights(path, **options)
    return _CACHE[key]


MAX_PATCH = 512  # voxels per axis: a 512^3 tile of mDCSRN b4u4 needs > 100 GB of activations


def check_tiling(
    patch_size: int | tuple[int, ...], overlap: int | tuple[int, ...], batch_size: int
) -> None:
    """Refuse absurd tiling options before any work: one line naming the option."""
    patches = (patch_size,) if isinstance(patch_size, int) else tuple(patch_size)
    overlaps = (overlap,) if isinstance(overlap, int) else tuple(overlap)
    if not patches or any(not isinstance(p, int) or p < 1 or p > MAX_PATCH for p in patches):
        raise InputError(f"--patch-size {patch_size}: each size must be 1..{MAX_PATCH} voxels")
    if any(not isinstance(o, int) or o < 0 for o in overlaps):
        raise InputError(f"--overlap {overlap}: must be >= 0 voxels")
    n = max(len(patches), len(overlaps))
    if len(patches) not in (1, n) or len(overlaps) not in (1, n):
        raise InputError(f"--overlap {overlap}: give one value or one per patch axis")
    sizes = patches * n if len(patches) == 1 else patches
    margins = overlaps * n if len(overlaps) == 1 else overlaps
    if any(o >= p for p, o in zip(sizes, margins, strict=True)):
        raise InputError(f"--overlap {overlap}: must be smaller than the patch size {patch_size}")
    if not isinstance(batch_size, int) or batch_size < 1 or batch_size > 4096:
        raise InputError(f"--batch-size {batch_size}: must be 1..4096")
