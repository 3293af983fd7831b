"""Paired augmentations for training patches: pure numpy, the generator passed in.

Every function takes ``(x, y, rng)``: an input patch ``x`` of shape (C, *spatial) and its
target ``y`` of shape (C', *spatial) (channels first, spatial (x, y, z) or (x, y) for 2D
patches), and returns a new ``(x, y)`` pair transformed *identically*: the same flip, the
same gamma, the same bias field, the same displacement. The target must follow the input,
or the network learns to undo the augmentation.

Scaled pairs (a target grid an integer multiple of the input's, ``PatchDataset(scale=...)``)
are accepted by the flip and the gamma; the bias field and the elastic warp need equal grids.

The mDCSRN paper reuses the patching and augmentation of its predecessor DCSRN (Sec. 3.1,
"the exact same process of patching and data augmentation as in [9]") without listing it;
the DTI paper suggests mirroring (Sec. 5). The recipes pick from these transforms through
:func:`build_augment`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from mrenhance.errors import ConfigError, InputError

Pair = tuple[np.ndarray, np.ndarray]
Augment = Callable[[np.ndarray, np.ndarray, np.random.Generator], Pair]

__all__ = [
    "build_augment",
    "compose",
    "random_bias_field",
    "random_blobs",
    "random_elastic",
    "random_flip",
    "random_gamma",
]


def _check_pair(x: np.ndarray, y: np.ndarray, scaled: bool = False) -> None:
    """Same spatial shape, or (``scaled``) a target grid an integer multiple of the input's
    per axis (scaled pairs: flips, gamma and bias fields keep them aligned)."""
    if scaled and x.ndim >= 2 and x.ndim == y.ndim:
        if all(m % n == 0 for n, m in zip(x.shape[1:], y.shape[1:], strict=True)):
            return
    if x.ndim < 2 or x.shape[1:] != y.shape[1:]:
        kind = "an integer multiple of the input's" if scaled else "the same"
        raise InputError(
            f"augment: input {x.shape} and target {y.shape} must be (C, *spatial) with "
            f"{kind} spatial shape"
        )


def random_flip(
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    axes: Sequence[int] = (0, 1, 2),
) -> Pair:
    """Mirror input and target together along each of ``axes`` with probability 1/2.

    Parameters
    ----------
    x, y:
        (C, *spatial) input and (C', *spatial) target patches.
    rng:
        Draws one coin per axis in ``axes`` (always, so later draws do not depend on it).
    axes:
        Spatial axes (0 = x). Axes beyond the patch's spatial dimensions are skipped, so the
        default also serves 2D patches.
    """
    _check_pair(x, y, scaled=True)
    if any(a < 0 for a in axes):
        raise InputError(f"random_flip: axes must be spatial axes >= 0, got {tuple(axes)}")
    coins = rng.random(len(axes)) < 0.5
    spatial_ndim = x.ndim - 1
    flip = tuple(1 + a for a, c in zip(axes, coins, strict=True) if c and a < spatial_ndim)
    if not flip:
        return x, y
    return np.ascontiguousarray(np.flip(x, flip)), np.ascontiguousarray(np.flip(y, flip))


def random_gamma(
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    log_gamma_range: tuple[float, float] = (-0.3, 0.3),
) -> Pair:
    """Raise both intensities to one random power ``gamma = exp(u)``, ``u ~ U(log_gamma_range)``.

    Assumes intensities normalised to [0, 1] (so the range is kept); values outside it are
    transformed as ``sign(v) * |v| ** gamma`` so negatives stay defined (choice).
    """
    _check_pair(x, y, scaled=True)
    gamma = float(np.exp(rng.uniform(*log_gamma_range)))

    def apply(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        return (np.sign(a) * np.abs(a) ** np.float32(gamma)).astype(np.float32)

    return apply(x), apply(y)


def _normalised_axes(shape: Sequence[int]) -> list[np.ndarray]:
    """Open grids in [-1, 1] along each axis of ``shape`` (broadcastable)."""
    grids = []
    for axis, n in enumerate(shape):
        g = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
        view = [1] * len(shape)
        view[axis] = n
        grids.append(g.reshape(view))
    return grids


def random_bias_field(
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    order: int = 3,
    coefficient_range: float = 0.3,
) -> Pair:
    """Multiply both patches by one smooth field ``exp(polynomial)``, as TorchIO's RandomBiasField.

    The polynomial has every monomial of total degree <= ``order`` in the normalised
    coordinates [-1, 1] of the patch (constant term excluded), each coefficient drawn
    from U(-coefficient_range, coefficient_range). The same field multiplies input and target.
    """
    _check_pair(x, y)
    grids = _normalised_axes(x.shape[1:])
    log_field = np.zeros(x.shape[1:], dtype=np.float64)
    for powers in itertools.product(range(order + 1), repeat=len(grids)):
        if not 0 < sum(powers) <= order:
            continue
        term = rng.uniform(-coefficient_range, coefficient_range)
        for g, p in zip(grids, powers, strict=True):
            if p:
                term = term * g**p
        log_field = log_field + term
    field = np.exp(log_field).astype(np.float32)
    return (np.asarray(x, np.float32) * field), (np.asarray(y, np.float32) * field)


def random_elastic(
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    sigma_vox: float = 8.0,
    alpha_vox: float = 2.0,
) -> Pair:
    """Warp both patches with one smooth random displacement (linear interpolation).

    Each displacement component is white noise U(-1, 1) smoothed by a Gaussian of
    ``sigma_vox`` voxels, then scaled so its largest magnitude is ``alpha_vox`` voxels
    (choice: Simard et al. scale by alpha directly, which ties the size of the displacement
    to sigma; here alpha is the maximum displacement). Borders repeat the edge voxel.
    """
    _check_pair(x, y)
    shape = x.shape[1:]
    coords = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    for c in coords:
        d = gaussian_filter(rng.uniform(-1.0, 1.0, shape), sigma_vox, mode="reflect")
        peak = np.abs(d).max()
        if peak > 0:
            c += (alpha_vox / peak * d).astype(np.float32)

    def warp(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        out = np.empty_like(a)
        for ch in range(a.shape[0]):
            out[ch] = map_coordinates(a[ch], coords, order=1, mode="nearest")
        return out

    return warp(x), warp(y)


def random_blobs(
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    count: tuple[int, int] = (0, 3),
    factor: tuple[float, float] = (0.3, 8.0),
    radius_vox: tuple[float, float] = (2.0, 8.0),
    edge_vox: float = 1.0,
) -> Pair:
    """Multiply both patches by soft-edged ellipsoidal blobs of random gain.

    ``n ~ U{count}`` blobs; each has a centre uniform in the patch, semi-axes uniform in
    ``radius_vox`` (voxels, one per spatial axis, axis-aligned), a logistic edge of
    ``edge_vox`` voxels and a gain ``f`` log-uniform in ``factor``; the field is
    ``prod_i (1 + (f_i - 1) w_i(x))`` with ``w_i`` in [0, 1] the blob's soft indicator. The
    same field multiplies input and target, so a target of the same kind as the input stays
    consistent (a noisy target stays an unbiased estimate of the scaled truth: learning from
    noise is kept).

    Purpose (choice, beyond the papers): lesion-like local CBF changes, far above and below
    what the training subjects hold, so a denoiser learns to keep a region's value instead of
    pulling it to normal-looking tissue (``docs/asl.md``, high CBF). Noise inside a blob is
    scaled with it.
    """
    _check_pair(x, y)
    lo, hi = (int(v) for v in count)
    if lo < 0 or hi < lo:
        raise ConfigError(f"augment.blobs.count: expected 0 <= low <= high, got {count}")
    if not 0 < factor[0] <= factor[1]:
        raise ConfigError(f"augment.blobs.factor: expected 0 < low <= high, got {factor}")
    if not 0 < radius_vox[0] <= radius_vox[1]:
        raise ConfigError(f"augment.blobs.radius: expected 0 < low <= high, got {radius_vox}")
    shape = x.shape[1:]
    n = int(rng.integers(lo, hi + 1))
    if n == 0:
        return x, y
    grids = [
        np.arange(m, dtype=np.float32).reshape([-1 if a == k else 1 for a in range(len(shape))])
        for k, m in enumerate(shape)
    ]
    field = np.ones(shape, dtype=np.float32)
    for _ in range(n):
        centre = rng.uniform(0, np.asarray(shape, float))
        radii = rng.uniform(radius_vox[0], radius_vox[1], len(shape))
        gain = float(np.exp(rng.uniform(np.log(factor[0]), np.log(factor[1]))))
        r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
        # distance outside the ellipse in voxels (approximately, along the mean radius)
        d = (np.sqrt(r2) - 1.0) * float(np.mean(radii))
        w = 1.0 / (1.0 + np.exp(np.clip(d / max(edge_vox, 1e-3), -50, 50)))
        field *= (1.0 + (gain - 1.0) * w).astype(np.float32)
    return (np.asarray(x, np.float32) * field), (np.asarray(y, np.float32) * field)


def compose(*fns: Augment) -> Augment:
    """Apply ``fns`` in order, each drawing from the same generator."""

    def composed(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Pair:
        for fn in fns:
            x, y = fn(x, y, rng)
        return x, y

    return composed


def _with_probability(fn: Augment, p: float) -> Augment:
    def maybe(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Pair:
        # The coin is always drawn, so the number of draws does not depend on p.
        return fn(x, y, rng) if rng.random() < p else (x, y)

    return maybe


_KEYS = ("flip", "gamma", "bias_field", "elastic", "blobs", "p")


def _number(config: dict[str, Any], key: str, low: float = 0.0) -> float:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise ConfigError(f"augment.{key}: expected a number >= {low}, got {value!r}")
    return float(value)


def build_augment(config: dict[str, Any] | None) -> Augment:
    """An augmentation from a recipe's ``augment`` section.

    Example::

        {"flip": true, "gamma": 0.3, "bias_field": 0.3,
         "elastic": {"alpha": 2.0, "sigma": 8.0}, "p": 0.5}

    Keys (all optional; ``false``/``null``/``0`` turns one off):

    - ``flip``: ``true`` (all spatial axes) or a list of spatial axes, see :func:`random_flip`.
    - ``gamma``: half-width of the log-gamma range, see :func:`random_gamma`.
    - ``bias_field``: coefficient range of a cubic bias field, see :func:`random_bias_field`.
    - ``elastic``: ``{"alpha": max displacement (voxels), "sigma": smoothness (voxels)}``.
    - ``blobs``: ``{"count": [low, high], "factor": [low, high], "radius": [low, high]}``
      (radius in voxels; missing keys take :func:`random_blobs`' defaults).
    - ``p``: probability (default 1) that each listed transform is applied to a sample.

    Transforms run in the order flip, elastic, bias field, blobs, gamma (geometry first). An
    unknown key or a wrong value raises :class:`mrenhance.errors.ConfigError`.
    """
    config = dict(config or {})
    unknown = sorted(set(config) - set(_KEYS))
    if unknown:
        raise ConfigError(f"augment: unknown key(s) {unknown}; known: {list(_KEYS)}")
    p = _number(config, "p") if "p" in config else 1.0
    if p > 1.0:
        raise ConfigError(f"augment.p: expected a probability in [0, 1], got {p}")
    fns: list[Augment] = []

    flip = config.get("flip")
    if flip:
        if flip is True:
            axes: tuple[int, ...] = (0, 1, 2)
        elif isinstance(flip, (list, tuple)) and all(
            isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in flip
        ):
            axes = tuple(flip)
        else:
            raise ConfigError(f"augment.flip: expected true or a list of axes, got {flip!r}")
        fns.append(lambda x, y, rng: random_flip(x, y, rng, axes=axes))

    elastic = config.get("elastic")
    if elastic:
        if not isinstance(elastic, dict) or set(elastic) - {"alpha", "sigma"}:
            raise ConfigError(
                f"augment.elastic: expected {{'alpha': voxels, 'sigma': voxels}}, got {elastic!r}"
            )
        alpha = _number({"alpha": elastic.get("alpha", 2.0)}, "alpha")
        sigma = _number({"sigma": elastic.get("sigma", 8.0)}, "sigma")
        fns.append(lambda x, y, rng: random_elastic(x, y, rng, sigma_vox=sigma, alpha_vox=alpha))

    if config.get("bias_field") not in (None, False):
        coefficient = _number(config, "bias_field")
        if coefficient > 0:
            fns.append(
                lambda x, y, rng: random_bias_field(x, y, rng, coefficient_range=coefficient)
            )

    blobs = config.get("blobs")
    if blobs:
        fns.append(_blobs_from_config(blobs))

    if config.get("gamma") not in (None, False):
        half = _number(config, "gamma")
        if half > 0:
            fns.append(lambda x, y, rng: random_gamma(x, y, rng, log_gamma_range=(-half, half)))

    return compose(*(_with_probability(fn, p) for fn in fns))


def _pair_of_numbers(value: Any, key: str) -> tuple[float, float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
        or not 0 <= value[0] <= value[1]
    ):
        raise ConfigError(
            f"augment.blobs.{key}: expected [low, high] with 0 <= low <= high, got {value!r}"
        )
    return float(value[0]), float(value[1])


def _blobs_from_config(blobs: Any) -> Augment:
    """:func:`random_blobs` from ``{"count", "factor", "radius"}`` (all optional)."""
    if not isinstance(blobs, dict) or set(blobs) - {"count", "factor", "radius"}:
        raise ConfigError(
            f"augment.blobs: expected {{'count': [lo, hi], 'factor': [lo, hi], "
            f"'radius': [lo, hi]}}, got {blobs!r}"
        )
    count = _pair_of_numbers(blobs.get("count", [0, 3]), "count")
    if any(v != int(v) for v in count):
        raise ConfigError(f"augment.blobs.count: expected whole numbers, got {count}")
    factor = _pair_of_numbers(blobs.get("factor", [0.3, 8.0]), "factor")
    radius = _pair_of_numbers(blobs.get("radius", [2.0, 8.0]), "radius")
    if factor[0] <= 0 or radius[0] <= 0 or factor[1] > 100 or radius[1] > 1000:
        raise ConfigError(
            f"augment.blobs: factor must lie in (0, 100] and radius in (0, 1000], "
            f"got {factor}, {radius}"
        )
    c = (int(count[0]), int(count[1]))
    return lambda x, y, rng: random_blobs(x, y, rng, count=c, factor=factor, radius_vox=radius)
