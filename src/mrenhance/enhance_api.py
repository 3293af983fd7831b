"""Apply a trained network to a whole volume: the path from ``mrenhance enhance`` to a file.

load weights (sha256-checked) -> task's intensity preparation -> tiled inference
(``engine.infer``) -> undo the preparation -> a Volume on the input's grid, with provenance.
"""

from __future__ import annotations

import copy
import inspect
import os
from typing import Any

import numpy as np

from mrenhance.engine.grid import GridPlan
from mrenhance.errors import InputError
from mrenhance.models.weights import resolve_weights
from mrenhance.volume import Volume

__all__ = [
    "PRECISIONS",
    "Enhancer",
    "check_tiling",
    "default_max_memory",
    "enhance",
    "parse_size",
    "resolve_precision",
    "resolve_weights",
]


class Enhancer:
    """A network with its card, applied the way ``enhance`` applies it.

    ``task.prepare`` (the card's normalisation) -> tiled inference (``engine.infer``) ->
    ``task.restore``. Training validation, the task's evaluation protocol, weights shipping
    and ``mrenhance enhance`` all go through :meth:`__call__` or :meth:`run_region`, so what
    a card's metrics measure is what a user gets. Build one per batch with
    :meth:`from_weights`: the weights are read and checked once.

    Tiling: a card whose ``inference`` says ``tiling: exact`` (the shipped SR models) gets,
    for each volume, the exact plan that wastes the least work within ``max_memory``
    (:func:`mrenhance.engine.grid.plan_for_memory`: halo = the network's receptive field,
    so the output equals one untiled call); otherwise, or when ``patch_size``/``overlap``
    are given, the fixed plan of the card's ``inference`` with those overrides. The
    network runs as its inference-only equivalent (:func:`mrenhance.models.fused.
    for_inference`: same outputs, ~2.4x less activation memory for mDCSRN).

    Parameters
    ----------
    model : torch.nn.Module, in eval mode.
    task : the registered Task (or its name).
    card : ModelCard or None (then ``normalisation`` and ``inference`` give the rules).
    normalisation : overrides the card's rule (training validation passes the recipe's).
    inference : tiling options ``{"patch_size", "overlap", "blend", ...}`` over the card's.
    precision : "fp32", "bf16", "fp16" or "auto" (:func:`resolve_precision`).
    max_memory : bytes for one tile's activations in exact tiling (default
        :func:`default_max_memory`).
    scale : a known normalisation scale (skips computing it; validation on a crop).
    consistency : "auto", "check", "tv" or "off": for tasks whose ``run_network`` takes it
        (sr_t1), how the network output is made consistent with the input
        (:mod:`mrenhance.consistency`; "auto" keeps a detected measured band and
        self-checks inputs with one blurred axis, "check" weighs the network against the
        input by that self-check wherever no band is detected,
        "tv" adds TV-regularised compressed sensing of the unmeasured band; sr_t1 only);
        for tasks whose ``prepare`` takes ``split_half`` (asl), whether the network is
        weighed against the input on its own repeats; what was done is in
        ``last_consistency`` and the provenance.
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
        precision: str = "fp32",
        max_memory: float | None = None,
        amp_dtype: Any = None,
        scale: float | None = None,
        consistency: str = "auto",
    ) -> None:
        from mrenhance.models.card import DEFAULT_INFERENCE
        from mrenhance.models.fused import for_inference
        from mrenhance.options import check_device, check_patch_axes, model_spatial_dims
        from mrenhance.tasks import get_task

        self.model = model
        self.net = for_inference(model) if not model.training else model
        self.task = get_task(task) if isinstance(task, str) else task
        self.card = card
        self.normalisation = normalisation if normalisation is not None else card
        base = card.inference_defaults() if card is not None else dict(DEFAULT_INFERENCE)
        given = {k: v for k, v in (inference or {}).items() if v is not None}
        # one size per axis of the network: a 2-size patch for a 3D model is an option
        # error (one line), not a convolution's shape error inside the first tile
        dims = model_spatial_dims(model)
        name = card.name if card is not None else "the model"
        given_patch = check_patch_axes(given.get("patch_size"), dims, model=name)
        self.inference = {**base, **given}
        self.exact = self.inference.pop("tiling", "fixed") == "exact" and not (
            {"patch_size", "overlap"} & set(given)
        )
        patch = _as_tiling(self.inference["patch_size"])
        own = card is not None and "patch_size" in (card.inference or {})
        if not given_patch and not own and dims and isinstance(patch, tuple):
            patch = patch[:dims]  # the project default (64^3) as 64^2 for a 2D network
        self.inference["patch_size"] = given_patch or check_patch_axes(
            patch, dims, "inference.patch_size", name
        )
        self.device = check_device(device)
        self.batch_size = batch_size
        self.progress = progress
        self.precision = resolve_precision(precision, device)
        self.amp_dtype = amp_dtype if amp_dtype is not None else _AMP[self.precision]
        #: bf16 autocast: deeper streamed slabs, a bf16 memory probe, the kernel's provenance
        self._bf16 = self.amp_dtype is not None and self.amp_dtype == _AMP["bf16"]
        self._set_stream_chunk(self.net)
        self.max_memory = float(max_memory) if max_memory is not None else default_max_memory()
        # the default budget also shrinks for huge volumes (volume_budget); a given one is kept
        self.max_memory_given = max_memory is not None
        # set by the CLI, which owns the loaded input: tasks whose prepare can normalise in
        # place (sr_t1) then do, one volume-sized copy less (0.5 GB for a 512^3 volume)
        self.consume_input = False
        if self.max_memory <= 0:
            raise InputError(f"--max-memory {max_memory}: must be a positive size")
        self.scale = scale
        if consistency not in CONSISTENCY:
            raise InputError(
                f"--consistency {consistency!r}: must be one of {', '.join(CONSISTENCY)}"
            )
        run_network = getattr(self.task, "run_network", None)
        if consistency in ("tv", "check") and (
            run_network is None or "consistency" not in inspect.signature(run_network).parameters
        ):
            raise InputError(
                f"--consistency {consistency}: only for SR models (sr_t1), "
                f"not task {self.task.name}"
            )
        self.consistency = consistency
        self.last_consistency: dict[str, Any] | None = None
        self._bytes_per_voxel: float | None = None
        self._stream_costs: tuple[float, float] | None = None
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
        from mrenhance.options import check_device

        device = check_device(device)  # before the weights are read: a typo costs nothing
        path = resolve_weights(model)
        card = read_card(path)
        net = load_model(path, device=device)
        return cls(net, card.task, card=card, device=device, **options)

    def with_model(self, model: Any) -> Enhancer:
        """A copy running ``model`` (same architecture) with every option of this one.

        Tiling (exact or fixed, and the plan), precision, budget, consistency and
        ``consume_input`` are carried over; the adaptation record is not.
        """
        from mrenhance.models.fused import for_inference

        twin = copy.copy(self)
        twin.model = model
        twin.net = for_inference(model) if not model.training else model
        twin._set_stream_chunk(twin.net)  # the copied memory estimates assume it
        twin.inference = dict(self.inference)
        twin.adaptation = None
        twin.last_consistency = None
        return twin

    def _set_stream_chunk(self, net: Any) -> None:
        """Deeper streamed slabs under bf16 (:data:`mrenhance.models.fused.BF16_STREAM_CHUNK`)."""
        if self._bf16 and getattr(net, "stream_chunk", None):
            from mrenhance.models.fused import BF16_STREAM_CHUNK

            net.stream_chunk = BF16_STREAM_CHUNK

    @property
    def name(self) -> str:
        return self.card.name if self.card is not None else type(self.model).__name__

    def plan_for(self, shape: tuple[int, ...]) -> GridPlan:
        """The tiling used for an input array of ``shape`` (x, y, z[, c])."""
        if not self.exact:
            return self.plan
        from mrenhance.engine.grid import (
            activation_bytes_per_voxel,
            plan_for_memory,
            streaming_costs,
        )

        in_channels = shape[3] if len(shape) == 4 else 1
        if self._bytes_per_voxel is None:
            # probed in the dtype inference runs in (bf16 maps are half the bytes)
            probe_dtype = self.amp_dtype if self._bf16 else None
            self._bytes_per_voxel = activation_bytes_per_voxel(
                self.net,
                in_channels=in_channels,
                patch_dims=len(self.plan.patch),
                autocast_dtype=probe_dtype,
            )
            dims = len(self.plan.patch)
            self._stream_costs = (
                streaming_costs(self.net, in_channels=in_channels, autocast_dtype=probe_dtype)
                if dims == 3
                else None
            )
        budget = self.max_memory
        if not self.max_memory_given:
            budget = min(budget, volume_budget(shape))
        return plan_for_memory(
            self.net,
            shape,
            budget,
            base=self.plan,
            in_channels=in_channels,
            batch_size=self.batch_size,
            bytes_per_voxel=self._bytes_per_voxel,
            stream=self._stream_costs if self._stream_costs is not None else False,
        )

    def _infer(self, array: np.ndarray, source: str = "input") -> np.ndarray:
        from mrenhance.engine.infer import infer

        self.last_plan = self.plan_for(array.shape)
        options = {
            "batch_size": self.batch_size,
            "device": self.device,
            "progress": self.progress,
            "amp_dtype": self.amp_dtype,
        }
        # a task may say how its network meets its array (e.g. a 2D model on every slice
        # of every volume of a 4D DWI series); by default: one tiled inference
        run_network = getattr(self.task, "run_network", None)
        self.last_consistency = None
        if run_network is not None:
            if "consistency" in inspect.signature(run_network).parameters:
                self.last_consistency = {}
                options["consistency"] = self.consistency
                options["report"] = self.last_consistency
            out = run_network(self.net, array, self.last_plan, **options)
        else:
            out = infer(self.net, array, self.last_plan, **options)
        if not np.all(np.isfinite(out)):
            bad = int(out.size - np.count_nonzero(np.isfinite(out)))
            raise InputError(
                f"{source}: the network {self.name} produced {bad} NaN/Inf voxels; nothing written"
            )
        return out

    def __call__(self, volume: Volume, mask: Volume | None = None) -> Volume:
        """Enhance a whole volume; a Volume on the task's output grid, provenance appended.

        ``mask`` (on the input's grid) is passed to the task's ``prepare``, for tasks that
        restrict the network to it (e.g. ``pvs``); others refuse it.
        """
        options: dict[str, Any] = {} if mask is None else {"mask": mask}
        takes = inspect.signature(self.task.prepare).parameters
        if mask is not None and "mask" not in takes:
            raise InputError(f"--mask: task {self.task.name} does not take a mask")
        if self.consume_input and "inplace" in takes:
            options["inplace"] = True
        if "split_half" in takes:  # asl: judge the network on the input's own repeats
            options["split_half"] = self.consistency != "off"
        array, ctx = self.task.prepare(volume, self.normalisation, scale=self.scale, **options)
        source = str(volume.meta.get("source", "input"))
        out = self._infer(array, source)
        if "report" in inspect.signature(self.task.restore).parameters:
            if self.last_consistency is None:
                self.last_consistency = {}
            result = self.task.restore(out, ctx, volume, report=self.last_consistency)
        else:
            result = self.task.restore(out, ctx, volume)
        if self.adaptation is not None and "weight" in (self.last_consistency or {}):
            # the network was tuned on pairs like the check's (asl: these same pairs; sr_t1:
            # the input re-degraded along its sharp axes): the check is not independent
            self.last_consistency["note"] = "adapted-on-these-pairs-w-optimistic"
        card = self.card
        plan = self.last_plan
        step = (
            f"enhance model={self.name} sha256={(card.sha256 if card else '')[:12]} "
            f"tiling={'exact' if self.exact else 'fixed'} patch={list(plan.patch)} "
            f"overlap={list(plan.overlap)} blend={plan.blend} precision={self.precision} "
            f"scale={ctx.get('scale', 1.0):.6g}"
        )
        if self._bf16:
            from mrenhance.models.fused import fused_kernel_status

            kernel = fused_kernel_status()  # "on" / "off (why)"; untried: no fused network
            if kernel != "not tried yet":
                step += f" bn_elu_kernel={kernel.split(' ', 1)[0]}"
        if self.last_consistency:
            step += " consistency=" + ",".join(
                f"{k}:{v}" for k, v in self.last_consistency.items()
            ).replace(" ", "")
        if self.adaptation is not None:
            a = self.adaptation
            step += (
                f" adapted(steps={a['steps']} seconds={a['seconds']} seed={a['seed']} "
                f"loss={a['loss_before']:.4g}->{a['loss_after']:.4g})"
            )
        result = result.with_data(result.data, step=step)
        if self.adaptation is not None:
            result.meta["adaptation"] = dict(self.adaptation)
        if self.last_consistency:
            result.meta["consistency"] = dict(self.last_consistency)
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


PRECISIONS = ("fp32", "bf16", "fp16", "auto")
#: data consistency of the SR output with its input (mrenhance.consistency; tasks/sr_t1.py)
CONSISTENCY = ("auto", "check", "tv", "off")
_AMP: dict[str, Any] = {"fp32": None}


def _amp_dtypes() -> None:
    import torch

    _AMP.update({"bf16": torch.bfloat16, "fp16": torch.float16})


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), from /proc/cpuinfo."""
    from mrenhance.runtime import cpu_flags

    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """ "auto" -> "bf16" on GPUs with bf16 and on CPUs with native bf16, else "fp32".

    "fp16" is for GPUs (CPU autocast in fp16 is slow and not what CPUs are built for):
    refused on the CPU with one line.
    """
    _amp_dtypes()
    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    on_gpu = str(device).startswith("cuda")
    if precision == "auto":
        if on_gpu:
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and not on_gpu:
        raise InputError("--precision fp16: only on a CUDA device; use bf16 or fp32 on a CPU")
    if precision == "bf16" and not on_gpu and not cpu_has_native_bf16():
        from mrenhance.logs import warn_user

        # measured (docs/performance.md): on an AVX2-only EPYC bf16 autocast ran a 32^3
        # mDCSRN volume 25x slower than fp32 (a 64-channel conv: 0.08 vs 39 GFLOP/s)
        warn_user(
            "--precision bf16: this CPU has no native bf16 (AVX-512 BF16 or AMX), so bf16 is "
            "emulated and much slower than fp32 here (25x measured on an AVX2 CPU); "
            "--precision auto picks fp32 on this CPU"
        )
    return precision


#: the default activation budget and the two volume-sized arrays (input, output) share this
#: much: a huge volume gets smaller tiles (issue 14: a 512^3 float32 volume under 3x its
#: input + output; docs/performance.md). Whole brains keep the full 1.5 GiB.
SHARED_BUDGET = 1.75 * 2**30
MIN_BUDGET = 0.5 * 2**30


def volume_budget(shape: tuple[int, ...]) -> float:
    """Activation bytes allowed next to an input of ``shape`` (float32 in and out):
    ``SHARED_BUDGET`` minus both arrays, clipped to [``MIN_BUDGET``, 1.5 GiB]."""
    arrays = 2 * 4 * float(np.prod(shape))
    return float(np.clip(SHARED_BUDGET - arrays, MIN_BUDGET, 1.5 * 2**30))


def default_max_memory() -> float:
    """Activation bytes for one tile when none are given: 1.5 GiB, at most 40 % of free RAM.

    choice: 1.5 GiB of activations keeps a whole-brain fp32 run near 2.5 GB peak RSS on a
    laptop (docs/performance.md), and leaves room on small machines.
    """
    budget = 1.5 * 2**30
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    budget = min(budget, 0.4 * int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError):
        pass
    return budget


def parse_size(text: str | float | int | None) -> float | None:
    """ "2G", "512M", "1.5GiB", "3e9" -> bytes (binary units); None stays None."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    factor = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(t[-1:], 1)
    number = t[:-1] if t[-1:] in "KMGT" else t
    try:
        value = float(number) * factor
    except ValueError:
        raise InputError(f"--max-memory {text!r}: expected a size such as 2G or 512M") from None
    if not value > 0 or value != value or value == float("inf"):
        raise InputError(f"--max-memory {text!r}: must be a positive size")
    return value


def _as_tiling(value: Any) -> int | tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else int(value)


_CACHE: dict[tuple, Enhancer] = {}


def _refuse_enhancer_options(**given: tuple[Any, Any]) -> None:
    """An :class:`Enhancer` owns its tiling, device, precision and consistency: ``enhance``
    given one refuses any of those options set to other than the default (they would be
    silently ignored) with one line naming them."""
    changed = [name for name, (value, default) in given.items() if value != default]
    if changed:
        names = ", ".join(changed)
        raise InputError(
            f"enhance() with an Enhancer: {names} would be ignored (the Enhancer's own "
            "settings apply); set them when creating it (Enhancer.from_weights(name, "
            "precision=..., consistency=..., inference={'patch_size': ...})) or pass a "
            "model name or weights path instead"
        )


def enhance(
    volume: Any,
    model: str | os.PathLike | Enhancer,
    *,
    affine: Any = None,
    output: str | os.PathLike | None = None,
    device: str = "cpu",
    patch_size: int | tuple[int, ...] | None = None,
    overlap: int | tuple[int, ...] | None = None,
    blend: str | None = None,
    batch_size: int = 1,
    progress: bool = False,
    precision: str = "fp32",
    max_memory: float | str | None = None,
    upsample: tuple[float, ...] | None = None,
    upsample_method: str = "sinc",
    mask: Volume | None = None,
    adapt_steps: int = 0,
    adapt_seed: int = 0,
    per_volume: bool = False,
    resample: bool = False,
    consistency: str = "auto",
) -> Volume:
    """Enhance ``volume`` with a shipped model name, a weights path or an :class:`Enhancer`.

    Parameters
    ----------
    volume : Volume, path, numpy array or torch tensor
        What to enhance, (x, y, z) for the SR models: a :class:`Volume`; a NIfTI file or
        DICOM series folder; a numpy array (with ``affine``, default the identity: 1 mm
        voxels); or a torch tensor (x, y, z), optionally with leading singleton (batch,
        channel) axes. The result is of the same kind: a Volume for a Volume or a path
        (``output`` given: the result is also saved there and its path returned), a float32
        array for an array, a float32 tensor of the same shape on the same device for a
        tensor.
    affine : (4, 4) array, optional
        The voxel-to-world matrix of an array or tensor input (mm; the voxel size matters to
        the card's voxel-size check and to ``upsample``).
    output : path, optional
        With a path input: also write the result there (NIfTI, atomically) and return the
        path.
    model : shipped name (see ``mrenhance models``), path to ``*.safetensors`` with its card,
        or an Enhancer (then the tiling options below are ignored).
    patch_size, overlap, blend : tiling; default to the model card's ``inference`` section
        (exact, memory-planned tiles for the shipped SR models).
    precision : "fp32" (default), "bf16", "fp16" (CUDA) or "auto" (bf16 where native).
    max_memory : activation budget for exact tiles, bytes or "2G" (default 1.5 GiB).
    upsample : optional zoom factors per axis, e.g. (2, 2, 1): first resample a low-matrix
        acquisition onto the finer grid (``upsample_method`` "sinc" = zero-filled k-space,
        or "cubic"), as the SR networks expect their input on the target grid.
    mask : optional Volume on the input's grid for tasks that restrict the network to it
        (``pvs``: run over the mask's bounding box, 0 outside the mask).
    adapt_steps : self-supervised fine-tuning steps on this input before enhancing it
        (:func:`mrenhance.engine.adapt.adapt_enhancer`; a copy of the network is tuned, the
        input is untouched); 0 = none. The seconds taken are in
        ``result.meta["adaptation"]``.
    adapt_seed : the seed of the adaptation's pairs and patches.
    per_volume : a 4D series given to a model of 3D images (sr_t1, pvs): enhance each
        volume on its own (its own intensity scale) and stack the results into a 4D
        output; without it such an input is refused. ``--adapt`` then tunes once, on the
        first volume.
    resample : first resample the input (after ``upsample``) to the card's training voxel
        size (:func:`mrenhance.resample.resample_to_voxel_size`); the result stays on that
        grid. Without it, an input whose voxel size is beyond 1.5x of the training one on
        an axis gets one warning (:func:`mrenhance.logs.warn_user`). Tasks whose
        ``prepare`` resamples by itself (pvs, asl, dsc) are left alone.

    consistency : "auto" (default), "check", "tv" or "off" (sr_t1 and asl models; other
        tasks ignore it; "check" and "tv" are sr_t1 only). "auto": sr_t1: where the input
        is a zero-filled k-space truncation (detected from its spectrum,
        :mod:`mrenhance.consistency`) the output keeps the input's measured band; an input
        with one blurred axis (thick slices, :func:`mrenhance.tasks.sr_t1.thick_slice_signature`)
        gets ``y + w (net(y) - y)`` with ``w`` from a self-check on its sharpest axis;
        other inputs get the network output as is; asl: on a series of at least 4 pairs
        the output is ``w net(mean) + (1 - w) mean``, ``w`` judged on the series' own
        halves (:func:`mrenhance.tasks.asl.split_half_weight`). "check": the self-check on
        every sr_t1 input without a detected band. "tv": as "auto", a detected band then
        refined by TV compressed sensing. "off": always the raw network. What was done is
        in ``result.meta["consistency"]``.

    Returns
    -------
    The same kind as ``volume`` (see above), on the input grid (or the upsampled grid),
    float32; a Volume carries the provenance.
    """
    kind, volume = _as_volume(volume, affine)
    if isinstance(model, Enhancer):
        _refuse_enhancer_options(
            device=(device, "cpu"),
            patch_size=(patch_size, None),
            overlap=(overlap, None),
            blend=(blend, None),
            batch_size=(batch_size, 1),
            progress=(progress, False),
            precision=(precision, "fp32"),
            max_memory=(max_memory, None),
            consistency=(consistency, "auto"),
        )
        enhancer = model
    else:
        enhancer = _cached_enhancer(
            model,
            device=device,
            inference={"patch_size": patch_size, "overlap": overlap, "blend": blend},
            batch_size=batch_size,
            progress=progress,
            precision=precision,
            max_memory=parse_size(max_memory),
            consistency=consistency,
        )
    each = _check_dimensions(enhancer, volume, per_volume)
    if upsample is not None:
        from mrenhance.baselines.interpolate import interpolate_volume

        volume = interpolate_volume(volume, zoom=tuple(upsample), method=upsample_method)
    volume = _training_voxel_size(enhancer, volume, resample)
    if adapt_steps:
        from mrenhance.engine.adapt import adapt_enhancer

        first = volume.with_data(volume.data[..., 0]) if each else volume
        enhancer = adapt_enhancer(enhancer, first, steps=int(adapt_steps), seed=adapt_seed)
    if each:
        result = _enhance_each_volume(enhancer, volume, mask)
    else:
        result = enhancer(volume) if mask is None else enhancer(volume, mask=mask)
    return _as_kind(kind, result, output)


def _check_dimensions(enhancer: Enhancer, volume: Volume, per_volume: bool) -> bool:
    """Refuse what the task cannot take; True when a 4D series goes volume by volume."""
    from mrenhance.tasks.base import InputKind

    task = enhancer.task
    source = volume.meta.get("source", "input")
    if volume.ndim == 4 and task.input_kind is InputKind.IMAGE_3D:
        if not per_volume:
            raise InputError(
                f"{source}: {task.name} models need a 3D image, got a 4D series of shape "
                f"{tuple(volume.shape)}; use --per-volume to enhance each volume on its own"
            )
        for t in range(volume.shape[3]):  # a view of each volume, no copy of the series
            task.check_input(Volume(volume.data[..., t], volume.affine, {"source": source}))
        return True
    task.check_input(volume)
    return False


def _training_voxel_size(enhancer: Enhancer, volume: Volume, resample: bool) -> Volume:
    """The card's training voxel size: warn when the input is far from it, or resample.

    A card trained on a range of voxel sizes (``voxel_size_range_mm``, synthetic scans)
    warns only when an axis lies beyond that range by more than ``VOXEL_SIZE_FACTOR``.
    """
    from mrenhance.resample import VOXEL_SIZE_FACTOR, resample_to_voxel_size, voxel_size_mismatch

    training = enhancer.card.voxel_size_mm if enhancer.card is not None else None
    if not training or getattr(enhancer.task, "adapts_voxel_size", False):
        return volume
    if resample:
        return resample_to_voxel_size(volume, training)
    span = enhancer.card.voxel_size_range_mm
    if span is not None:
        lo, hi = span[0] / VOXEL_SIZE_FACTOR, span[1] * VOXEL_SIZE_FACTOR
        far = not all(lo <= v <= hi for v in volume.voxel_size)
        want = f"sizes {span[0]:.3g}-{span[1]:.3g}"
    else:
        far = voxel_size_mismatch(volume.voxel_size, training)
        want = "size " + "x".join(f"{v:.3g}" for v in training)
    if far:
        from mrenhance.logs import warn_user

        have = "x".join(f"{v:.3g}" for v in volume.voxel_size)
        source = volume.meta.get("source", "input")
        warn_user(
            f"{source}: voxel size {have} mm differs from the {enhancer.name} training voxel "
            f"{want} mm by more than {VOXEL_SIZE_FACTOR:g}x; results may suffer "
            "(--resample resamples the input to the training voxel size first)"
        )
    return volume


def _enhance_each_volume(enhancer: Enhancer, volume: Volume, mask: Volume | None) -> Volume:
    """A 4D series through a 3D model, one volume at a time (``per_volume``)."""
    import sys

    from mrenhance.errors import printable

    n = volume.shape[3]
    source = volume.meta.get("source", "input")
    outputs = []
    for t in range(n):
        if enhancer.progress:
            print(printable(f"{source}: volume {t + 1}/{n}"), file=sys.stderr, flush=True)
        frame = volume.with_data(volume.data[..., t])
        outputs.append(enhancer(frame) if mask is None else enhancer(frame, mask=mask))
    first = outputs[0]
    step = f"per-volume: the model applied to each of {n} volumes on its own"
    result = first.with_data(np.stack([o.data for o in outputs], axis=-1), step=step)
    result.affine = first.affine.copy()
    result.meta["per_volume"] = n
    return result


def _as_volume(value: Any, affine: Any) -> tuple[Any, Volume]:
    """``(kind, Volume)``: kind is "volume", "path", "array" or a torch tensor (its template)."""
    if isinstance(value, Volume):
        return "volume", value
    if isinstance(value, (str, os.PathLike)):
        from mrenhance.io import load

        return "path", load(value)
    aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise InputError(f"enhance: affine must be 4x4, got shape {aff.shape}")
    if isinstance(value, np.ndarray):
        return "array", Volume(np.asarray(value, dtype=np.float32), aff, {"source": "array"})
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(value, torch.Tensor):
        t = value.detach()
        while t.ndim > 3 and t.shape[0] == 1:
            t = t[0]
        data = t.to("cpu", torch.float32).numpy()
        return value, Volume(data, aff, {"source": "tensor"})
    raise InputError(
        "enhance: expected a Volume, a path, a numpy array or a torch tensor, got "
        f"{type(value).__name__}"
    )


def _as_kind(kind: Any, result: Volume, output: str | os.PathLike | None) -> Any:
    if kind == "array":
        return result.data
    if kind == "volume" or (kind == "path" and output is None):
        if output is not None:
            raise InputError("enhance: output= is for a path input; use mrenhance.save")
        return result
    if kind == "path":
        from mrenhance.io import save

        return save(result, output)
    import torch

    out = torch.from_numpy(np.ascontiguousarray(result.data)).to(kind.device)
    # the input's leading singleton axes back, when the grid kept its shape
    return out.reshape(kind.shape) if out.numel() == kind.numel() else out


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
