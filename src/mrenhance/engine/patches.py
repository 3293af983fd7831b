"""Training patches from paired volumes, and the regular grid shared with inference.

:class:`PatchDataset` is a map-style dataset: sample ``i`` depends on ``(seed, i)`` alone
(``numpy.random.default_rng([seed, i])``), so a distributed trainer that shards indices
across ranks sees exactly the patches a single process would, in any order.

Sampling follows the papers: the PVS network samples 3D patches "which contain a part of
brain region" (Sec. 3, 60^3 patches), hence the mask and ``min_mask_fraction``; the
mDCSRN paper keeps training, validation and test patches apart (Sec. 3.1), hence
``region`` (e.g. the training slabs of a single volume, so held-out slabs are never seen).

Items are dicts ``{"inputs": (C, *patch), "target": (C', *patch * scale)[, "mask": (1,
*patch)]}``. Three variations serve the methods beyond 3D T1 SR: **scaled pairs** (the
target on a grid ``scale`` times finer per axis, e.g. (4, 4, 1) for in-plane DWI SR),
**re-drawn targets** (a provider draws a new target per sample, e.g. another noisy
repetition for learning-from-noise ASL denoising, Noise2Noise, Lehtinen et al. 2018) and
**2D patches** (slices of 3D volumes perpendicular to ``slice_axis``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from mrenhance.errors import InputError

Augment = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
Box = tuple[slice, ...]
#: ``provider(subject, box, rng) -> (C', *box shape)`` or ``(*box shape)`` target array:
#: ``box`` is the target-grid region (3 slices over x, y, z) of the sample.
TargetProvider = Callable[[int, Box, np.random.Generator], np.ndarray]

__all__ = ["PatchDataset", "TargetProvider", "axis_starts", "patch_corners"]


def axis_starts(length: int, patch: int, stride: int) -> list[int]:
    """Start indices of windows of size ``patch`` stepping by ``stride`` that cover ``length``.

    The last window is shifted back to end exactly at ``length`` (never past it), so windows
    may overlap more at the end. A window larger than ``length`` gives ``[0]``: the caller
    pads.

    Parameters
    ----------
    length, patch, stride:
        Sizes in voxels along one axis; ``patch >= 1``, ``stride >= 1``.
    """
    if patch < 1 or stride < 1:
        raise InputError(f"patch grid: patch ({patch}) and stride ({stride}) must be >= 1")
    last = max(length - patch, 0)
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def patch_corners(
    shape: Sequence[int], patch_size: Sequence[int], stride: Sequence[int] | int
) -> list[tuple[int, ...]]:
    """Corners of a regular grid of patches covering an array of ``shape``.

    Parameters
    ----------
    shape:
        Spatial shape, e.g. (x, y, z), in voxels.
    patch_size:
        Patch size per axis, voxels (same length as ``shape``).
    stride:
        Step between patches per axis (or one int for all), voxels. Along each axis the last
        patch ends at the border (see :func:`axis_starts`); a patch larger than the array
        along an axis gives the single start 0 (the caller pads).

    Returns
    -------
    list of tuple of int
        Patch corners in C order (last axis fastest); ``len`` is the product of the numbers
        of starts per axis.
    """
    shape = tuple(int(n) for n in shape)
    patch = tuple(int(p) for p in patch_size)
    strides = (int(stride),) * len(shape) if np.isscalar(stride) else tuple(int(s) for s in stride)
    if not len(shape) == len(patch) == len(strides):
        raise InputError(
            f"patch grid: shape {shape}, patch_size {patch} and stride {strides} "
            "must have the same length"
        )
    per_axis = [axis_starts(n, p, s) for n, p, s in zip(shape, patch, strides, strict=True)]
    return list(itertools.product(*per_axis))


def _box_sums(mask: np.ndarray, patch: tuple[int, ...]) -> np.ndarray:
    """Number of mask voxels in every patch-sized box, indexed by the box's corner.

    A summed-area table (exact integer arithmetic, unlike a float ``uniform_filter``) with
    inclusion-exclusion over the 2^ndim corners of the box: O(voxels) for any patch size.
    Returns an int64 array of shape ``mask.shape - patch + 1``.
    """
    table = np.zeros(tuple(n + 1 for n in mask.shape), dtype=np.int64)
    table[tuple(slice(1, None) for _ in mask.shape)] = mask
    for axis in range(mask.ndim):
        np.cumsum(table, axis=axis, out=table)
    out_shape = tuple(n - p + 1 for n, p in zip(mask.shape, patch, strict=True))
    sums = np.zeros(out_shape, dtype=np.int64)
    for upper in itertools.product((0, 1), repeat=mask.ndim):
        index = tuple(
            slice(p, p + m) if u else slice(0, m)
            for u, p, m in zip(upper, patch, out_shape, strict=True)
        )
        sign = -1 if (mask.ndim - sum(upper)) % 2 else 1
        sums += sign * table[index]
    return sums


class PatchDataset(torch.utils.data.Dataset):
    """Random (input, target) patch pairs from paired volumes, deterministic in (seed, i).

    Parameters
    ----------
    inputs, targets:
        Paired volumes, one per subject: (x, y, z) arrays (one channel) or, with
        ``channel_axis``, (x, y, z, c) arrays (e.g. the time points of a perfusion series)
        whose channel axis is moved first. Inputs and targets may differ in channels, not in
        spatial shape. Arrays are kept by reference (not copied); each patch is copied to
        float32.
    patch_size:
        (px, py, pz) voxels for 3D patches, or (pa, pb) for 2D patches taken from slices
        perpendicular to ``slice_axis`` (the two remaining axes, in order).
    mask:
        Optional (x, y, z) boolean arrays, one per subject (e.g. a brain mask): only patches
        holding at least one mask voxel and at least ``min_mask_fraction`` of their voxels in
        the mask are sampled (PVS paper, Sec. 3).
    min_mask_fraction:
        Fraction in [0, 1] of the patch's voxels that must lie in the mask.
    length:
        What ``len()`` returns: the number of samples in an "epoch" (indices 0..length-1).
    seed:
        Sample ``i`` is drawn with ``numpy.random.default_rng([seed, i])``.
    augment:
        Optional ``augment(input, target, rng) -> (input, target)`` applied to each pair
        with the sample's own generator (see :mod:`mrenhance.engine.augment`).
    channel_axis:
        Axis of 4D arrays that holds channels (e.g. -1); ``None``: every array is 3D.
    region:
        Optional boxes (tuples of slices over x, y, z) that every patch must lie entirely
        within, e.g. the training slabs of a volume. Either a list of boxes applied to every
        subject, or a list with one list of boxes per subject.
    slice_axis:
        For 2D patches: the axis the slices are perpendicular to (default 2, axial for RAS).
    scale:
        Scaled pairs: integer factors (sx, sy, sz) of the target grid over the input grid
        (targets have spatial shape ``input shape * scale``). The target patch of an input
        patch at corner ``c`` with size ``p`` is the region ``[c * s, (c + p) * s)`` of the
        finer grid. Default (1, 1, 1). For 2D patches the slice axis must have factor 1.
    target_provider:
        Re-drawn targets: ``provider(subject, box, rng)`` returns the target for the
        target-grid ``box`` (3 slices), drawing from ``rng`` =
        ``default_rng([seed, i, 1])`` (its own stream: corners and augmentation are those
        without a provider). ``targets`` may then be None (their grid is ``input * scale``).
    return_mask:
        Add ``"mask"``: the ``(1, *patch)`` float32 patch of ``mask`` (1 inside).

    Notes
    -----
    Sampling: a subject uniformly, then a patch corner uniformly among the corners allowed
    by ``mask``/``region`` (all corners otherwise). With a mask or a region the allowed
    corners are precomputed once per subject (4 bytes per corner).
    """

    def __init__(
        self,
        inputs: list[np.ndarray],
        targets: list[np.ndarray] | None,
        patch_size: tuple[int, ...],
        *,
        mask: list[np.ndarray] | None = None,
        min_mask_fraction: float = 0.0,
        length: int = 10**9,
        seed: int = 0,
        augment: Augment | None = None,
        channel_axis: int | None = None,
        region: list[Box] | list[list[Box]] | None = None,
        slice_axis: int = 2,
        scale: Sequence[int] | int = 1,
        target_provider: TargetProvider | None = None,
        return_mask: bool = False,
    ) -> None:
        if targets is None and target_provider is None:
            raise InputError("PatchDataset: need targets or a target_provider")
        if targets is None:
            targets = [None] * len(inputs)
        if len(inputs) != len(targets) or not inputs:
            raise InputError(
                f"PatchDataset: need as many targets as inputs (at least one), "
                f"got {len(inputs)} inputs and {len(targets)} targets"
            )
        if not 0.0 <= min_mask_fraction <= 1.0:
            raise InputError(
                f"PatchDataset: min_mask_fraction must be in [0, 1], got {min_mask_fraction}"
            )
        if length < 1:
            raise InputError(f"PatchDataset: length must be >= 1, got {length}")
        patch_size = tuple(int(p) for p in patch_size)
        if len(patch_size) not in (2, 3) or min(patch_size) < 1:
            raise InputError(
                f"PatchDataset: patch_size must be 2 or 3 positive sizes, got {patch_size}"
            )
        self.patch_size = patch_size
        self.is_2d = len(patch_size) == 2
        if self.is_2d:
            if slice_axis not in (0, 1, 2, -1, -2, -3):
                raise InputError(f"PatchDataset: slice_axis must be 0, 1 or 2, got {slice_axis}")
            self.slice_axis = slice_axis % 3
            box = list(patch_size)
            box.insert(self.slice_axis, 1)
            self._box = tuple(box)
        else:
            self.slice_axis = None
            self._box = patch_size
        scale = (int(scale),) * 3 if np.isscalar(scale) else tuple(int(f) for f in scale)
        if len(scale) != 3 or min(scale) < 1:
            raise InputError(f"PatchDataset: scale must be 3 integers >= 1, got {scale}")
        if self.is_2d and scale[self.slice_axis] != 1:
            raise InputError(
                f"PatchDataset: scale {scale} must be 1 along the slice axis "
                f"{self.slice_axis} of 2D patches"
            )
        self.scale = scale
        self.target_provider = target_provider
        self.return_mask = bool(return_mask)
        if return_mask and mask is None:
            raise InputError("PatchDataset: return_mask needs a mask")
        if return_mask and augment is not None:
            raise InputError(
                "PatchDataset: return_mask with augment is not supported (the mask would "
                "not follow the transform)"
            )
        self.channel_axis = channel_axis
        self.inputs = [self._channels_first(a, "input", k) for k, a in enumerate(inputs)]
        self.targets = [
            None if a is None else self._channels_first(a, "target", k)
            for k, a in enumerate(targets)
        ]
        self.masks = None if mask is None else [np.asarray(m) for m in mask]
        self.length = int(length)
        self.seed = int(seed)
        self.augment = augment

        shapes = []
        for k, (x, y) in enumerate(zip(self.inputs, self.targets, strict=True)):
            want = tuple(n * f for n, f in zip(x.shape[1:], scale, strict=True))
            if y is not None and y.shape[1:] != want:
                times = "" if scale == (1, 1, 1) else f" times scale {scale} = {want}"
                raise InputError(
                    f"PatchDataset: subject {k}: input spatial shape {x.shape[1:]}{times} "
                    f"differs from target spatial shape {y.shape[1:]}"
                )
            if any(n < p for n, p in zip(x.shape[1:], self._box, strict=True)):
                raise InputError(
                    f"PatchDataset: subject {k}: patch {self._box} is larger than the "
                    f"volume {x.shape[1:]}"
                )
            shapes.append(x.shape[1:])
        if mask is not None and len(mask) != len(self.inputs):
            raise InputError(
                f"PatchDataset: need one mask per subject, got {len(mask)} for {len(inputs)}"
            )
        boxes = self._normalise_region(region, shapes)
        # Per subject: None (every corner allowed) or the flat indices of allowed corners.
        self._allowed: list[np.ndarray | None] = []
        self._corner_shapes = [
            tuple(n - p + 1 for n, p in zip(s, self._box, strict=True)) for s in shapes
        ]
        for k, shape in enumerate(shapes):
            m = None if mask is None else mask[k]
            b = None if boxes is None else boxes[k]
            self._allowed.append(self._allowed_corners(k, shape, m, min_mask_fraction, b))

    # -- construction helpers -------------------------------------------------------------

    def _channels_first(self, arr: np.ndarray, what: str, k: int) -> np.ndarray:
        arr = np.asarray(arr)
        if arr.ndim == 3:
            return arr[None]
        if arr.ndim == 4 and self.channel_axis is not None:
            return np.moveaxis(arr, self.channel_axis, 0)
        hint = " (set channel_axis for 4D arrays)" if arr.ndim == 4 else ""
        raise InputError(
            f"PatchDataset: {what} {k}: expected an (x, y, z) array{hint}, "
            f"got shape {tuple(arr.shape)}"
        )

    @staticmethod
    def _normalise_region(
        region: Any, shapes: list[tuple[int, ...]]
    ) -> list[list[tuple[slice, ...]]] | None:
        if region is None:
            return None
        region = list(region)
        if region and all(
            isinstance(r, (list, tuple)) and r and isinstance(r[0], slice) for r in region
        ):
            per_subject = [region] * len(shapes)
        elif len(region) == len(shapes):
            per_subject = [list(r) for r in region]
        else:
            raise InputError(
                "PatchDataset: region must be a list of boxes (tuples of slices) or one list "
                f"of boxes per subject ({len(shapes)} subjects)"
            )
        out = []
        for shape, boxes in zip(shapes, per_subject, strict=True):
            clean = []
            for box in boxes:
                if len(box) != 3 or not all(isinstance(s, slice) for s in box):
                    raise InputError(f"PatchDataset: region box {box} must be 3 slices (x, y, z)")
                bounds = [s.indices(n) for s, n in zip(box, shape, strict=True)]
                if any(step != 1 for _, _, step in bounds):
                    raise InputError(f"PatchDataset: region box {box} must not have steps")
                clean.append(tuple(slice(a, b) for a, b, _ in bounds))
            out.append(clean)
        return out

    def _allowed_corners(
        self,
        k: int,
        shape: tuple[int, ...],
        mask: np.ndarray | None,
        min_fraction: float,
        boxes: list[tuple[slice, ...]] | None,
    ) -> np.ndarray | None:
        if mask is None and boxes is None:
            return None
        corner_shape = self._corner_shapes[k]
        allowed = np.ones(corner_shape, dtype=bool)
        if boxes is not None:
            in_region = np.zeros(corner_shape, dtype=bool)
            for box in boxes:
                # Corners c with box.start <= c and c + patch <= box.stop.
                index = tuple(
                    slice(s.start, max(s.start, s.stop - p + 1))
                    for s, p in zip(box, self._box, strict=True)
                )
                in_region[index] = True
            allowed &= in_region
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != shape:
                raise InputError(
                    f"PatchDataset: subject {k}: mask shape {mask.shape} differs from the "
                    f"volume's spatial shape {shape}"
                )
            counts = _box_sums(mask.astype(bool), self._box)
            needed = max(1, math.ceil(min_fraction * math.prod(self._box) - 1e-9))
            allowed &= counts >= needed
        flat = np.flatnonzero(allowed)
        if flat.size == 0:
            why = []
            if mask is not None:
                why.append(f"holding >= {min_fraction:g} of mask voxels")
            if boxes is not None:
                why.append("inside the region")
            raise InputError(
                f"PatchDataset: subject {k}: no {self._box} patch is {' and '.join(why)}"
            )
        dtype = np.int32 if flat[-1] < np.iinfo(np.int32).max else np.int64
        return flat.astype(dtype)

    # -- sampling -------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.length

    def corner(self, i: int) -> tuple[int, tuple[int, ...], np.random.Generator]:
        """Subject index, patch corner (x, y, z) and the generator, for sample ``i``.

        The generator has already drawn the subject and corner; augmentation continues
        drawing from it.
        """
        if not -self.length <= i < self.length:
            raise IndexError(f"PatchDataset index {i} out of range for length {self.length}")
        i = i % self.length
        rng = np.random.default_rng([self.seed, i])
        k = int(rng.integers(len(self.inputs)))
        allowed = self._allowed[k]
        shape = self._corner_shapes[k]
        if allowed is None:
            corner = tuple(int(rng.integers(n)) for n in shape)
        else:
            flat = int(allowed[rng.integers(allowed.size)])
            corner = tuple(int(c) for c in np.unravel_index(flat, shape))
        return k, corner, rng

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        """``{"inputs": (C, *patch), "target": (C', *patch * scale)[, "mask"]}`` float32
        arrays, deterministic in ``i``."""
        k, corner, rng = self.corner(int(i))
        box = tuple(slice(c, c + p) for c, p in zip(corner, self._box, strict=True))
        fine = tuple(slice(b.start * f, b.stop * f) for b, f in zip(box, self.scale, strict=True))
        x = np.array(self.inputs[k][(slice(None), *box)], dtype=np.float32)
        if self.target_provider is not None:
            drawn = np.asarray(
                self.target_provider(
                    k, fine, np.random.default_rng([self.seed, int(i) % self.length, 1])
                ),
                dtype=np.float32,
            )
            y = drawn[None] if drawn.ndim == 3 else np.array(drawn)
            want = tuple(b.stop - b.start for b in fine)
            if y.shape[1:] != want:
                raise InputError(
                    f"PatchDataset: target_provider returned shape {drawn.shape} for a {want} box"
                )
        else:
            target = self.targets[k]
            assert target is not None
            y = np.array(target[(slice(None), *fine)], dtype=np.float32)
        m = None
        if self.return_mask:
            assert self.masks is not None
            m = np.array(self.masks[k][box], dtype=np.float32)[None]
        if self.is_2d:
            x = x.squeeze(1 + self.slice_axis)
            y = y.squeeze(1 + self.slice_axis)
            m = None if m is None else m.squeeze(1 + self.slice_axis)
        if self.augment is not None:
            x, y = self.augment(x, y, rng)
            x = np.ascontiguousarray(x, dtype=np.float32)
            y = np.ascontiguousarray(y, dtype=np.float32)
        item = {"inputs": x, "target": y}
        if m is not None:
            item["mask"] = m
        return item
