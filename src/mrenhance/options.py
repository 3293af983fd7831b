"""One validation of the run options every command shares: the device and the patch axes.

``enhance``, ``evaluate``, ``ship``, ``demo`` (through :class:`mrenhance.enhance_api.Enhancer`)
and ``train`` (through :func:`mrenhance.training.train_recipe`) call these before any work,
so a mistyped option is one line (``--device banana: ...``), exit 2, not a PyTorch error
deep inside a batch.
"""

from __future__ import annotations

from typing import Any

from mrenhance.errors import InputError

__all__ = ["check_device", "check_patch_axes", "model_spatial_dims"]

_DEVICES = "cpu, cuda, cuda:N, mps or auto"


def check_device(device: Any, what: str = "--device") -> str:
    """The device string to use, or a one-line InputError naming the option.

    ``"auto"`` (or None) is CUDA when available, else MPS (Apple GPUs), else the CPU. A
    CUDA device must exist on this machine (``cuda:63`` on a 2-GPU machine is refused, as
    is ``cuda`` without CUDA); ``mps`` must be available; other PyTorch device types are
    not supported.
    """
    import torch

    text = "auto" if device is None else str(device).strip()
    if text == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"{what} {text!r}: not a device (expected {_DEVICES})") from None
    if dev.type == "cpu":
        return str(dev)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{what} {text!r}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise InputError(f"{what} {text!r}: no such GPU (this machine has {count})")
        return str(dev)
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError(f"{what} {text!r}: MPS is not available on this machine")
        return str(dev)
    raise InputError(f"{what} {text!r}: device type {dev.type!r} is not supported ({_DEVICES})")


def model_spatial_dims(model: Any) -> int | None:
    """2 or 3: the spatial axes a network takes, from the registry (by its
    ``mrenhance_name``) or its first convolution; None when neither tells."""
    name = getattr(model, "mrenhance_name", None)
    if name:
        from mrenhance.errors import ConfigError
        from mrenhance.models.registry import get_model_info

        try:
            return int(get_model_info(name).spatial_dims)
        except ConfigError:
            pass
    import torch.nn as nn

    for module in getattr(model, "modules", lambda: [])():
        if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            return 3
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            return 2
    return None


def check_patch_axes(
    patch: Any, spatial_dims: int | None, what: str = "--patch-size", model: str = "the model"
) -> Any:
    """``patch`` with one size per spatial axis of the model, or a one-line InputError.

    One int means a cube (or a square for a 2D network) and is expanded to
    ``spatial_dims`` sizes; a sequence must hold exactly ``spatial_dims`` sizes.
    """
    if spatial_dims is None or patch is None:
        return patch
    if isinstance(patch, bool):
        raise InputError(f"{what} {patch!r}: expected a size in voxels")
    if isinstance(patch, int):
        return (patch,) * spatial_dims
    sizes = tuple(patch)
    if len(sizes) != spatial_dims:
        shown = ",".join(str(s) for s in sizes)
        raise InputError(
            f"{what} {shown}: {model} is a {spatial_dims}D network; give one size or "
            f"{spatial_dims} sizes, got {len(sizes)}"
        )
    return sizes
