"""Tiny models and a synthetic pair dataset for the training-engine tests (and the DDP worker).

``TinyPairs`` follows ``engine.patches.PatchDataset``'s contract: ``dataset[i]`` is
``(input, target)``, float32 arrays ``(1, 6, 6, 6)``, a pure function of ``(seed, i)``.
The task is denoising a smooth target: input = target + noise.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

PATCH = (6, 6, 6)


class TinyNet(nn.Module):
    """Conv3d(1->4) - ReLU - Conv3d(4->1) with a global residual: ~250 parameters."""

    mrenhance_name = "tiny-net"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv3d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv3d(4, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class TinyCritic(nn.Module):
    """Per-sample critic (no BatchNorm): Conv3d - LeakyReLU - spatial mean - Linear -> (B, 1)."""

    mrenhance_name = "tiny-critic"

    def __init__(self, seed: int = 1) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv3d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.leaky_relu(self.conv(x), 0.2)
        return self.head(h.mean(dim=(2, 3, 4)))


class TinyPairs:
    """Map-style dataset of (noisy, clean) patches; ``nan_from`` makes inputs NaN from there."""

    def __init__(
        self, n: int = 64, seed: int = 0, nan_from: int | None = None, log: list | None = None
    ):
        self.n, self.seed, self.nan_from, self.log = n, seed, nan_from, log

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self.log is not None:
            self.log.append(int(i))
        rng = np.random.default_rng([self.seed, int(i)])
        x, y, z = np.meshgrid(*[np.linspace(0, 1, n) for n in PATCH], indexing="ij")
        f = rng.uniform(0.5, 2.0, 3)
        clean = np.sin(np.pi * (f[0] * x + f[1] * y + f[2] * z))[None].astype(np.float32)
        noisy = (clean + 0.3 * rng.standard_normal(clean.shape)).astype(np.float32)
        if self.nan_from is not None and i >= self.nan_from:
            noisy[:] = np.nan
        return noisy, clean


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
