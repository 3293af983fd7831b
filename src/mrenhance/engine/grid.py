"""Where the tiles of a whole-volume inference go: :class:`GridPlan` and its layout.

A :class:`GridPlan` says how a network is run over a volume: the tile size (3 axes, or 2
for a 2D network run slice by slice), how much neighbouring tiles overlap, how the
predictions are put back (``blend``), the output scale per axis (``(4, 4, 1)`` for a 4x
in-plane SR network) and the placement rule. It is the one source of the project's
tiling defaults: :data:`DEFAULT_PLAN`.

Placement (``placement="shift"``, the default; as MONAI and TorchIO): tiles step by
``patch - overlap`` from the first voxel and the last tile along an axis is shifted back to
end at the border, so the volume is never padded except where it is smaller than a tile
(then it is padded, centred, to one tile with ``pad_mode``). In ``"crop"`` mode two
neighbouring tiles cut their overlap at its middle, so a tile discards at least
``overlap // 2`` voxels (the *halo*) on each side facing another tile and nothing on a side
facing the volume border. The result then equals one call of the network on the whole
volume when the halo is at least the network's receptive-field radius:
:meth:`GridPlan.exact_for` builds such a plan from the model, :func:`plan_for_memory` the
largest such tiles that fit a memory budget.

``placement="pad"`` is the older rule (and what the positional ``infer(model, array, 64, 6)``
form builds for ``"crop"``): the volume is first padded by the halo on every side with
``pad_mode``, so a border voxel gets ``halo`` voxels of padded context rather than the
network's own zero padding; the result equals one call on the padded volume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from mrenhance.engine.patches import axis_starts
from mrenhance.errors import InputError

__all__ = [
    "BLEND_MODES",
    "DEFAULT_PLAN",
    "PAD_MODES",
    "PLACEMENTS",
    "AxisTiles",
    "GridLayout",
    "GridPlan",
    "Tile",
    "activation_bytes_per_voxel",
    "estimate_tile_bytes",
    "plan_for_memory",
    "receptive_field_radius",
    "streaming_costs",
]

BLEND_MODES = ("crop", "average", "gaussian")
PLACEMENTS = ("shift", "pad")
PAD_MODES = ("reflect", "constant", "edge", "symmetric")


def receptive_field_radius(model: nn.Module) -> int:
    """Best-effort receptive-field radius of a network, in (input) voxels.

    The sum over every convolution of ``(kernel - 1) // 2 * dilation`` (the largest over
    axes), as if they were all applied in sequence. That is exact for a plain chain of
    stride-1 convolutions and for densely connected blocks, an upper bound for branching
    networks (parallel branches are added up) and for convolutions after an upsampling
    layer (they see finer voxels), and an underestimate for networks that downsample
    (strides and pooling are ignored).
    """
    radius = 0
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            radius += max(
                (k - 1) // 2 * d for k, d in zip(module.kernel_size, module.dilation, strict=True)
            )
    return radius


def _ints(value: int | Sequence[int], n: int, name: str, minimum: int) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        values = (int(value),) * n
    else:
        try:
            values = tuple(int(v) for v in value)
        except (TypeError, ValueError) as err:
            message = f"GridPlan: {name} must be one int or {n} ints, got {value!r}"
            raise InputError(message) from err
    if len(values) != n:
        raise InputError(f"GridPlan: {name} must be one int or {n} ints, got {value!r}")
    if min(values) < minimum:
        raise InputError(f"GridPlan: {name} must be >= {minimum}, got {value!r}")
    return values


@dataclass(frozen=True)
class GridPlan:
    """How to tile a volume for a network, and how to put the predictions back.

    Build variants with :func:`dataclasses.replace`, e.g.
    ``replace(DEFAULT_PLAN, blend="gaussian", overlap=16)``.

    Attributes
    ----------
    patch:
        Tile size in input voxels: (px, py, pz) for a 3D network, or (pa, pb) for a 2D
        network applied to the slices perpendicular to ``slice_axis`` (one int = a cube).
    overlap:
        Voxels shared by neighbouring tiles, per patch axis; tiles step by
        ``patch - overlap``. In ``"crop"`` mode the halo discarded on each inner tile side
        is ``overlap // 2`` (:attr:`halo`).
    blend:
        ``"crop"`` (keep each tile's centre; mDCSRN Sec. 3.1, PVS Sec. 2), ``"average"``
        (stU-Net Sec. 2) or ``"gaussian"`` (sigma = patch / 8, as MONAI).
    scale:
        Output voxels per input voxel along each volume axis (x, y, z), e.g. (4, 4, 1):
        the network turns a tile of (px, py, pz) into (4 px, 4 py, pz).
    slice_axis:
        For a 2D ``patch``: the volume axis the slices are perpendicular to.
    placement:
        ``"shift"`` (last tile shifted back inside the volume; pad only a volume smaller
        than a tile) or ``"pad"`` (pad the volume by the halo first); see the module
        docstring.
    pad_mode:
        :func:`numpy.pad` mode where padding happens: ``"reflect"``, ``"constant"``
        (zeros), ``"edge"`` or ``"symmetric"``.
    """

    patch: tuple[int, ...] = (64, 64, 64)
    # The mDCSRN paper's 3-voxel margin (Sec. 3.1): the project's default since v0.1.
    overlap: tuple[int, ...] = field(default=6)  # type: ignore[assignment]
    blend: str = "crop"
    scale: tuple[int, int, int] = (1, 1, 1)
    slice_axis: int = 2
    placement: str = "shift"
    pad_mode: str = "reflect"

    def __post_init__(self) -> None:
        patch = self.patch
        if isinstance(patch, (int, np.integer)):
            patch = (int(patch),) * 3
        n = len(tuple(patch))
        if n not in (2, 3):
            raise InputError(f"GridPlan: patch must have 2 or 3 sizes, got {self.patch!r}")
        patch = _ints(patch, n, "patch", 1)
        overlap = _ints(self.overlap, n, "overlap", 0)
        for axis, (p, o) in enumerate(zip(patch, overlap, strict=True)):
            if o >= p:
                raise InputError(
                    f"GridPlan: overlap {o} must be smaller than the patch ({p}) on patch "
                    f"axis {axis}"
                )
        scale = _ints(self.scale, 3, "scale", 1)
        if self.blend not in BLEND_MODES:
            raise InputError(
                f"GridPlan: unknown blend mode {self.blend!r}; use one of {BLEND_MODES}"
            )
        if self.placement not in PLACEMENTS:
            raise InputError(
                f"GridPlan: unknown placement {self.placement!r}; use one of {PLACEMENTS}"
            )
        if self.pad_mode not in PAD_MODES:
            raise InputError(
                f"GridPlan: unknown pad_mode {self.pad_mode!r}; use one of {PAD_MODES}"
            )
        if self.slice_axis not in (0, 1, 2, -1, -2, -3):
            raise InputError(f"GridPlan: slice_axis must be 0, 1 or 2, got {self.slice_axis}")
        slice_axis = int(self.slice_axis) % 3
        if n == 2 and scale[slice_axis] != 1:
            raise InputError(
                f"GridPlan: a 2D network cannot scale its slice axis {slice_axis}; "
                f"got scale {scale}"
            )
        object.__setattr__(self, "patch", patch)
        object.__setattr__(self, "overlap", overlap)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "slice_axis", slice_axis)

    # -- derived geometry -------------------------------------------------------------------
    @property
    def is_2d(self) -> bool:
        """True for a 2D network applied slice by slice."""
        return len(self.patch) == 2

    @property
    def tiled_axes(self) -> tuple[int, ...]:
        """The volume axes the patch axes run along ((0, 1, 2), or two of them for 2D)."""
        if not self.is_2d:
            return (0, 1, 2)
        return tuple(a for a in range(3) if a != self.slice_axis)

    @property
    def halo(self) -> tuple[int, ...]:
        """Voxels a ``"crop"`` tile discards at least on each inner side, per patch axis."""
        return tuple(o // 2 for o in self.overlap)

    @property
    def tile_shape(self) -> tuple[int, int, int]:
        """The tile in volume axes (x, y, z): size 1 along the slice axis of a 2D plan."""
        return self._volume_axes(self.patch, 1)

    @property
    def tile_overlap(self) -> tuple[int, int, int]:
        """The overlap in volume axes (0 along the slice axis of a 2D plan)."""
        return self._volume_axes(self.overlap, 0)

    def _volume_axes(self, values: tuple[int, ...], fill: int) -> tuple[int, int, int]:
        if not self.is_2d:
            return values  # type: ignore[return-value]
        out = list(values)
        out.insert(self.slice_axis, fill)
        return tuple(out)  # type: ignore[return-value]

    def output_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """Spatial output shape for a spatial input ``shape`` (x, y, z): ``shape * scale``."""
        return tuple(int(n) * s for n, s in zip(shape[:3], self.scale, strict=True))  # type: ignore[return-value]

    def layout(self, shape: Sequence[int]) -> GridLayout:
        """The tiles covering a volume of spatial ``shape`` (x, y, z)."""
        shape = tuple(int(n) for n in shape[:3])
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"GridPlan: expected a spatial shape of three sizes >= 1, got {shape}")
        axes = tuple(
            _axis_tiles(n, p, o, self.placement)
            for n, p, o in zip(shape, self.tile_shape, self.tile_overlap, strict=True)
        )
        return GridLayout(self, shape, axes)

    # -- builders -----------------------------------------------------------------------------
    @classmethod
    def exact_for(
        cls, model: nn.Module, patch: int | Sequence[int] | None = None, **fields: Any
    ) -> GridPlan:
        """A ``"crop"`` plan whose halo is ``model``'s receptive-field radius: no seams.

        The overlap is ``2 * receptive_field_radius(model)`` on every patch axis, so the
        tiled result equals one call on the whole volume (``placement="shift"``) or on the
        halo-padded volume (``"pad"``). ``patch`` (one int, 3 sizes, or 2 for a 2D network)
        defaults to :data:`DEFAULT_PLAN`'s and is grown to ``overlap + 1`` where it would
        leave no centre. Other ``fields`` (``scale``, ``slice_axis``, ...) pass through.
        """
        if not isinstance(model, nn.Module):
            raise InputError(
                f"GridPlan.exact_for needs an nn.Module to read its receptive field, got "
                f"{type(model).__name__}; build GridPlan(overlap=2 * radius) yourself"
            )
        overlap = 2 * receptive_field_radius(model)
        if patch is None:
            patch = DEFAULT_PLAN.patch
        if isinstance(patch, (int, np.integer)):
            patch = (int(patch),) * 3
        patch = tuple(max(int(p), overlap + 1) for p in patch)
        fields.setdefault("blend", "crop")
        return cls(patch=patch, overlap=overlap, **fields)

    @classmethod
    def from_dict(cls, inference: dict[str, Any]) -> GridPlan:
        """A plan from a model card's ``inference`` section or a recipe's ``infer`` section.

        Keys: ``patch_size`` (or ``patch``), ``overlap``, ``blend``, ``margin`` (``"crop"``
        only; overlap = 2 * margin, the older spelling), ``scale``, ``slice_axis``,
        ``placement``, ``pad_mode``. Missing keys take :data:`DEFAULT_PLAN`'s values.
        """
        d = dict(inference)
        unknown = set(d) - {
            "patch_size",
            "patch",
            "overlap",
            "blend",
            "margin",
            "scale",
            "slice_axis",
            "placement",
            "pad_mode",
        }
        if unknown:
            raise InputError(f"GridPlan.from_dict: unknown key {sorted(unknown)[0]!r}")
        kwargs: dict[str, Any] = {}
        patch = d.pop("patch_size", d.pop("patch", None))
        if patch is not None:
            kwargs["patch"] = patch
        margin = d.pop("margin", None)
        if margin is not None:
            if d.get("blend", "crop") != "crop":
                raise InputError("GridPlan.from_dict: margin is for blend='crop'")
            kwargs["overlap"] = (
                2 * int(margin) if np.isscalar(margin) else tuple(2 * int(m) for m in margin)
            )
            d.pop("overlap", None)
        for key, value in d.items():
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists), the inverse of :meth:`from_dict`."""
        return {
            "patch_size": list(self.patch),
            "overlap": list(self.overlap),
            "blend": self.blend,
            "scale": list(self.scale),
            "slice_axis": self.slice_axis,
            "placement": self.placement,
            "pad_mode": self.pad_mode,
        }

    @classmethod
    def from_legacy(
        cls,
        patch_size: int | Sequence[int],
        overlap: int | Sequence[int] = 0,
        blend: str = "crop",
        *,
        margin: int | Sequence[int] | None = None,
        pad_mode: str = "reflect",
        slice_axis: int = 2,
    ) -> GridPlan:
        """The plan of the older ``infer(model, array, patch_size, overlap, blend, margin=...)``.

        ``"crop"`` keeps its old meaning: ``margin`` (default ``overlap // 2``) voxels
        discarded on every side of every tile, the volume padded by it
        (``placement="pad"``); ``"average"``/``"gaussian"`` use ``overlap`` as is.
        """
        n = 2 if not np.isscalar(patch_size) and len(patch_size) == 2 else 3  # type: ignore[arg-type]
        patch = _ints(patch_size, n, "patch_size", 1)
        if blend != "crop":
            if margin is not None:
                raise InputError(f"margin is for blend='crop'; {blend!r} uses overlap only")
            return cls(patch, overlap, blend, slice_axis=slice_axis, pad_mode=pad_mode)
        margins = (
            tuple(o // 2 for o in _ints(overlap, n, "overlap", 0))
            if margin is None
            else _ints(margin, n, "margin", 0)
        )
        for axis, (p, m) in enumerate(zip(patch, margins, strict=True)):
            if 2 * m >= p:
                raise InputError(
                    f"margin {m} leaves no centre in a patch of {p} voxels (patch axis {axis}); "
                    "need 2 * margin < patch"
                )
        return cls(
            patch,
            tuple(2 * m for m in margins),
            "crop",
            slice_axis=slice_axis,
            placement="pad",
            pad_mode=pad_mode,
        )


DEFAULT_PLAN = GridPlan()
"""The project's tiling defaults: 64^3 tiles, overlap 6 (3-voxel crop halo, the mDCSRN
paper's margin), ``"crop"``, same-size output, last tile shifted back."""


# ---------------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class AxisTiles:
    """The tiles along one volume axis.

    Attributes
    ----------
    length:
        Voxels along the axis (input grid).
    tile:
        Tile size along the axis.
    pad_before, pad_after:
        Padding added to the volume along the axis before tiling (0 unless the volume is
        smaller than a tile or ``placement="pad"``).
    starts:
        Tile corners in padded coordinates.
    crop:
        Per tile: the ``(lo, hi)`` interval it alone writes in ``"crop"`` mode, in unpadded
        input voxels; the intervals tile ``[0, length)`` exactly.
    cover:
        Per tile: the ``(lo, hi)`` interval it covers, clipped to the volume (unpadded).
    """

    length: int
    tile: int
    pad_before: int
    pad_after: int
    starts: tuple[int, ...]
    crop: tuple[tuple[int, int], ...]
    cover: tuple[tuple[int, int], ...]


def _axis_tiles(n: int, p: int, o: int, placement: str) -> AxisTiles:
    before = after = o // 2 if placement == "pad" else 0
    if n + before + after < p:  # pad only a volume smaller than a tile, centred
        extra = p - (n + before + after)
        before, after = before + extra // 2, after + extra - extra // 2
    total = n + before + after
    starts = axis_starts(total, p, p - o)
    # Neighbours cut their overlap at its middle: each keeps >= o // 2 voxels of context.
    cuts = [0] + [(a + b + p) // 2 for a, b in itertools.pairwise(starts)] + [total]

    def clip(lo: int, hi: int) -> tuple[int, int]:
        return max(lo - before, 0), min(hi - before, n)

    crop = tuple(clip(lo, hi) for lo, hi in itertools.pairwise(cuts))
    cover = tuple(clip(s, s + p) for s in starts)
    return AxisTiles(n, p, before, after, tuple(starts), crop, cover)


@dataclass(frozen=True)
class Tile:
    """One tile: where it is read from and which of its voxels are written where.

    Attributes
    ----------
    start:
        Corner in padded input coordinates (x, y, z).
    out:
        Per volume axis, the ``(lo, hi)`` input-grid interval this tile writes (unpadded;
        the output interval is ``(lo * scale, hi * scale)``).
    local:
        The same interval in the tile's own input voxels.
    """

    start: tuple[int, int, int]
    out: tuple[tuple[int, int], ...]
    local: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class GridLayout:
    """A :class:`GridPlan` applied to one spatial shape (see :meth:`GridPlan.layout`)."""

    plan: GridPlan
    shape: tuple[int, int, int]
    axes: tuple[AxisTiles, AxisTiles, AxisTiles]

    @property
    def padding(self) -> tuple[tuple[int, int], ...]:
        """(before, after) padding per volume axis (all zero: no padded copy is made)."""
        return tuple((a.pad_before, a.pad_after) for a in self.axes)

    @property
    def n_tiles(self) -> int:
        return math.prod(len(a.starts) for a in self.axes)

    def __len__(self) -> int:
        return self.n_tiles

    def tiles(self) -> Iterator[Tile]:
        """Every tile, in C order (last axis fastest)."""
        crop = self.plan.blend == "crop"
        for index in itertools.product(*[range(len(a.starts)) for a in self.axes]):
            start = tuple(a.starts[i] for a, i in zip(self.axes, index, strict=True))
            out = tuple(
                (a.crop if crop else a.cover)[i] for a, i in zip(self.axes, index, strict=True)
            )
            local = tuple(
                (lo + a.pad_before - s, hi + a.pad_before - s)
                for (lo, hi), a, s in zip(out, self.axes, start, strict=True)
            )
            yield Tile(start, out, local)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- memory planning
class _PeakTensorBytes(TorchDispatchMode):
    """Tracks the bytes of live tensor storages created under it, and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage pointer -> [tensors alive, bytes]
        self.now = 0
        self.peak = 0

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.live:
            self.live[ptr] = [0, storage.nbytes()]
            self.now += storage.nbytes()
            self.peak = max(self.peak, self.now)
        self.live[ptr][0] += 1
        weakref.finalize(tensor, self._release, ptr)

    def _release(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is not None:
            entry[0] -= 1
            if entry[0] == 0:
                self.now -= entry[1]
                del self.live[ptr]

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


def _autocast(dtype: torch.dtype | None) -> Any:
    """CPU autocast to ``dtype`` for a memory probe, or a no-op context for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=dtype)


def activation_bytes_per_voxel(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    *,
    in_channels: int = 1,
    patch_dims: int = 3,
    probe: int = 16,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """Peak activation bytes per input voxel of one tile, measured on one tiny forward pass.

    The rule: run ``model`` once, under ``torch.inference_mode`` on the CPU in float32, on
    zeros of shape (1, ``in_channels``, ``probe``, ...) (``patch_dims`` spatial axes);
    follow every tensor storage an operator creates from its allocation until its last
    reference is dropped (a ``TorchDispatchMode``; views share their storage), take the
    largest total alive at any moment, add the input, and divide by
    ``probe ** patch_dims``. A fully convolutional network's activations grow linearly with
    the tile (mDCSRN-b4u4: 3460 bytes per voxel at 16^3, 24^3 and 32^3 alike), so the figure
    carries over to any tile size. ``autocast_dtype`` (bf16 / fp16): the pass runs under
    CPU autocast to that dtype, as inference will, so its half-size maps are counted as
    such (in float32 a bf16 pass's figure comes out about twice too high). Not included:
    weights (see :func:`estimate_tile_bytes`), scratch memory inside kernels (cuDNN
    workspaces) and the CUDA caching allocator's slack; keep some headroom in
    ``max_bytes`` or pass a ``bytes_per_voxel`` measured on the device.
    """
    x = torch.zeros((1, in_channels) + (probe,) * patch_dims)
    tracker = _PeakTensorBytes()
    with torch.inference_mode(), _autocast(autocast_dtype), tracker:
        y = model(x)
        del y
    return (tracker.peak + x.nbytes) / probe**patch_dims


def streaming_costs(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    *,
    in_channels: int = 1,
    probe: int = 16,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[float, float] | None:
    """(bytes per plane voxel, bytes per voxel) of a streamed forward pass, or None.

    For a network that evaluates a tile plane slab by plane slab along its longest axis
    (it has ``stream(x, chunk)`` and a set ``stream_chunk``, e.g.
    :class:`mrenhance.models.fused.FusedMDCSRN`), peak activation memory is
    ``a * (H * W) + b * (D * H * W)``: ``a`` for the slabs, the halo planes each
    convolution keeps and the delayed streams, ``b`` for the input and output tensors.
    Both are measured as :func:`activation_bytes_per_voxel` does (live tensor storages
    under a dispatch mode), on two probes of depth ``max(4 * chunk, 32) + 8`` and
    ``max(8 * chunk, 64) + 8`` (past the first slabs, where the stream's buffers still
    grow to their steady size) and a ``probe`` x ``probe`` plane: ``b`` from the
    difference, ``a`` from the rest; ``autocast_dtype`` as there.
    """
    chunk = getattr(model, "stream_chunk", None)
    stream = getattr(model, "stream", None)
    if not chunk or stream is None:
        return None
    peaks = []
    depths = (max(4 * chunk, 32) + 8, max(8 * chunk, 64) + 8)
    for depth in depths:
        x = torch.zeros((1, in_channels, depth, probe, probe))
        tracker = _PeakTensorBytes()
        with torch.inference_mode(), _autocast(autocast_dtype), tracker:
            y = stream(x, chunk)
            del y
        peaks.append(tracker.peak + x.nbytes)
    plane = probe * probe
    per_voxel = max(0.0, (peaks[1] - peaks[0]) / ((depths[1] - depths[0]) * plane))
    per_plane = max(0.0, (peaks[0] - per_voxel * depths[0] * plane) / plane)
    return per_plane, per_voxel


def estimate_tile_bytes(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    patch: Sequence[int],
    *,
    batch_size: int = 1,
    bytes_per_voxel: float,
    stream: tuple[float, float] | None = None,
) -> int:
    """Estimated device bytes for one forward pass: weights + batch x tile x bytes/voxel.

    With ``stream`` = (bytes per plane voxel, bytes per voxel) from :func:`streaming_costs`,
    a 3D tile costs ``plane * (product of the sides other than the streamed one) +
    per_voxel * (all sides)`` instead; the streamed side is the longest
    (:func:`mrenhance.models.fused.stream_axis`).
    """
    weights = 0
    if isinstance(model, nn.Module):
        weights = sum(t.numel() * t.element_size() for t in model.parameters())
        weights += sum(t.numel() * t.element_size() for t in model.buffers())
    if stream is not None and len(patch) == 3:
        from mrenhance.models.fused import stream_axis

        along = stream_axis(tuple(patch))
        area = math.prod(p for a, p in enumerate(patch) if a != along)
        per_tile = stream[0] * area + stream[1] * math.prod(patch)
        return int(weights + batch_size * per_tile)
    return int(weights + batch_size * math.prod(patch) * bytes_per_voxel)


def plan_for_memory(
    model: nn.Module,
    shape: Sequence[int],
    max_bytes: float,
    *,
    base: GridPlan | None = None,
    in_channels: int = 1,
    batch_size: int = 1,
    multiple_of: int = 1,
    bytes_per_voxel: float | None = None,
    stream: tuple[float, float] | None | bool = True,
) -> GridPlan:
    """Exact ``"crop"`` tiles that fit ``max_bytes`` and waste the least work.

    The overlap is the full halo (``2 * receptive_field_radius(model)``), so the tiled
    result equals one call on the whole volume. For each tiled axis of length L and each
    tile count n, the tile length is the smallest that covers L with n tiles overlapping by
    the halo, ``ceil((L + (n - 1) * overlap) / n)`` (rounded up to ``multiple_of``; one
    tile along an axis needs no halo there). Among the count combinations whose tile fits
    the budget (:func:`estimate_tile_bytes`), the one processing the fewest voxels in total
    wins (ties: fewer tiles). Tiles need not be cubes: a 197x233x189 volume with room for
    ~1.5 M voxels per tile gets 2x3x2 tiles of 116x101x112 (1.8x the volume's voxels),
    where equal cubes of 114^3 shifted back would process 3.1x. A larger budget never
    processes more voxels.

    Parameters
    ----------
    model:
        The network (in_channels in, any channels out).
    shape:
        The input volume's shape (x, y, z) or (x, y, z, c).
    max_bytes:
        Device memory allowed for weights and activations of one batch.
    base:
        Plan whose other fields (``scale``, ``slice_axis``, 2D vs 3D ``patch``, ...) are
        kept; default :data:`DEFAULT_PLAN`.
    multiple_of:
        Tile sides must be multiples of this (e.g. 16 for a U-Net with four poolings).
    bytes_per_voxel:
        Override the measured :func:`activation_bytes_per_voxel` (e.g. a peak measured on
        the target GPU).
    stream:
        For a network that streams a tile along its longest axis (:func:`streaming_costs`):
        ``True`` (default) measures its costs, a (per plane voxel, per voxel) pair gives
        them, ``False`` plans as for any network. A streamed tile's memory does not grow
        along the streamed axis, so the plan usually keeps that axis whole and tiles (with
        the halo) the other two only, or not at all.
    """
    base = DEFAULT_PLAN if base is None else base
    dims = len(base.patch)
    radius = receptive_field_radius(model)
    overlap = 2 * radius
    if bytes_per_voxel is None:
        bytes_per_voxel = activation_bytes_per_voxel(
            model, in_channels=in_channels, patch_dims=dims, probe=max(16, multiple_of)
        )
    if stream is True:
        stream = streaming_costs(model, in_channels=in_channels) if dims == 3 else None
    elif stream is False or dims != 3:
        stream = None
    lengths = [int(shape[a]) for a in base.tiled_axes]

    def up(n: int) -> int:
        return -(-n // multiple_of) * multiple_of

    smallest = up(overlap + 1)

    def options(length: int) -> list[tuple[int, int]]:
        """(tile count, tile length) along one axis: 1 to 16 tiles, then the smallest tiles.

        choice: past 16 tiles per axis the halo dominates; the smallest exact tile stays as
        the fallback for tiny budgets.
        """
        found = [(1, up(max(length, smallest)))]
        for n in range(2, 17):
            side = max(up(-(-(length + (n - 1) * overlap) // n)), smallest)
            if side >= found[-1][1]:
                break
            found.append((n, side))
        if found[-1][1] > smallest and length > smallest:
            step = smallest - overlap
            found.append((-(-(length - overlap) // step), smallest))
        return found

    best: tuple[int, int, tuple[int, ...]] | None = None
    for combo in itertools.product(*[options(n) for n in lengths]):
        patch = tuple(side for _, side in combo)
        need = estimate_tile_bytes(
            model, patch, batch_size=batch_size, bytes_per_voxel=bytes_per_voxel, stream=stream
        )
        if need > max_bytes:
            continue
        tiles = math.prod(n for n, _ in combo)
        key = (tiles * math.prod(patch), tiles, patch)
        if best is None or key < best:
            best = key
    if best is not None:
        return dataclasses.replace(base, patch=best[2], overlap=overlap, blend="crop")
    need = estimate_tile_bytes(
        model,
        (smallest,) * dims,
        batch_size=batch_size,
        bytes_per_voxel=bytes_per_voxel,
        stream=stream,
    )
    raise InputError(
        f"plan_for_memory: {max_bytes / 2**20:.1f} MiB is too little; the smallest exact tile "
        f"({smallest} voxels per side, halo {radius}) needs about {need / 2**20:.1f} MiB"
    )
