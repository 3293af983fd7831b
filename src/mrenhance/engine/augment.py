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


_KEYS = ("flip", "gamma", "bias_field", "elastic", "p")


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
    - ``p``: probability (default 1) that each listed transform is applied to a sample.

    Transforms run in the order flip, elastic, bias field, gamma (geometry first). An
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

    if config.get("gamma") not in (None, False):
        half = _number(config, "gamma")
        if half > 0:
            fns.append(lambda x, y, rng: random_gamma(x, y, rng, log_gamma_range=(-half, half)))

    return compose(*(_with_probability(fn, p) for fn in fns))
