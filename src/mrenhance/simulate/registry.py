"""The simulators behind ``mrenhance simulate <name>``, found by registration.

A simulator adapts one pure forward model (``simulate/<forward>.py``) to the command line:
its options, and ``apply(data, options, rng) -> (data, step)`` where ``data`` is the
(x, y, z[, t]) float32 image, ``options`` the parsed options as a dict, ``rng`` a seeded
``numpy.random.Generator`` and ``step`` the provenance line. Every simulator also takes
``--snr``/``--noise``/``--seed`` (noise on top of its own degradation); ``snr="required"``
makes ``--snr`` mandatory (``noise`` alone would otherwise write an unchanged copy).

Add one with :func:`register_simulator` (below, beside its siblings, or from any module
imported before :func:`mrenhance.cli.main`); the command lists whatever is registered.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mrenhance.errors import InputError

__all__ = ["Simulator", "SIMULATORS", "register_simulator", "get_simulator", "add_noise"]

Apply = Callable[[np.ndarray, Mapping[str, Any], np.random.Generator], tuple[np.ndarray, str]]


@dataclass(frozen=True)
class Simulator:
    """One ``mrenhance simulate`` subcommand (see the module docstring)."""

    name: str
    help: str
    apply: Apply
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    snr: str = "optional"  # "optional" or "required"
    example: str = ""


SIMULATORS: dict[str, Simulator] = {}


def register_simulator(
    name: str,
    *,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    snr: str = "optional",
    example: str = "",
) -> Callable[[Apply], Apply]:
    """Decorator: register ``apply`` as the simulator ``name``."""
    if snr not in ("optional", "required"):
        raise ValueError(f"snr must be 'optional' or 'required', got {snr!r}")

    def deco(apply: Apply) -> Apply:
        if name in SIMULATORS and SIMULATORS[name].apply is not apply:
            raise ValueError(f"a simulator named {name!r} is registered already")
        SIMULATORS[name] = Simulator(name, help, apply, add_arguments, snr, example)
        return apply

    return deco


def get_simulator(name: str) -> Simulator:
    """The simulator registered as ``name`` (InputError listing the known ones)."""
    if name not in SIMULATORS:
        raise InputError(f"unknown simulator {name!r}; known: {', '.join(sorted(SIMULATORS))}")
    return SIMULATORS[name]


def add_noise(
    data: np.ndarray, snr: float, kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """Rician or Gaussian noise at ``snr`` (mean signal / sigma); returns data and step."""
    from mrenhance.simulate.noise import add_gaussian_noise, add_rician_noise

    noise = add_rician_noise if kind == "rician" else add_gaussian_noise
    return noise(data, snr, rng), f"{kind} snr={snr}"


# ---------------------------------------------------------------------------- built-ins
def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def _kspace_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--factors",
        type=_floats,
        default=(2.0, 2.0, 1.0),
        help="k-space truncation per axis (default 2,2,1)",
    )
    p.add_argument(
        "--taper",
        choices=("hamming", "tukey"),
        default=None,
        help="window on the kept k-space (default: none, plain truncation)",
    )


@register_simulator(
    "kspace",
    help="truncate k-space (mDCSRN Sec. 2.6: the LR input on the HR grid)",
    add_arguments=_kspace_arguments,
    example="mrenhance simulate kspace t1.nii.gz -o lr.nii.gz --factors 2,2,1",
)
def _kspace(
    data: np.ndarray, options: Mapping[str, Any], rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    from mrenhance.simulate.kspace import truncate_kspace

    out = truncate_kspace(data, options["factors"], taper=options["taper"], output="same_grid")
    return out, f"simulate kspace factors={options['factors']} taper={options['taper']}"


def _thick_slice_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--slice-factor", type=int, default=3, help="slice thickness in voxels (default 3)"
    )
    p.add_argument("--axis", type=int, default=2, help="slice axis: 0, 1 or 2 (default 2)")


@register_simulator(
    "thick-slice",
    help="thick slices along one axis, back on the input grid",
    add_arguments=_thick_slice_arguments,
    example="mrenhance simulate thick-slice t1.nii.gz -o thick.nii.gz --slice-factor 3",
)
def _thick_slice(
    data: np.ndarray, options: Mapping[str, Any], rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    from mrenhance.simulate.kspace import thick_slice

    out = thick_slice(data, options["slice_factor"], axis=options["axis"])
    return out, f"simulate thick-slice factor={options['slice_factor']} axis={options['axis']}"


@register_simulator(
    "noise",
    help="Rician or Gaussian noise at an SNR (--snr is required)",
    snr="required",
    example="mrenhance simulate noise t1.nii.gz -o noisy.nii.gz --snr 20",
)
def _noise(
    data: np.ndarray, options: Mapping[str, Any], rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    out, step = add_noise(data, options["snr"], options["noise"], rng)
    return out, f"simulate noise {step} seed={options['seed']}"
