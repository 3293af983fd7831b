"""Losses: intensity losses (L1, L2, Charbonnier), the WGAN-GP pieces, BCE adversarial.

Tensors are ``(batch, channel, x, y, z)`` (or ``(batch, channel, x, y)`` for 2D networks);
a critic maps a batch to one score per sample, ``(batch,)`` or ``(batch, 1)``.

The adversarial stage follows mDCSRN (Chen et al. 2018, Sec. 2.5): the generator loss is
``loss_int + lambda * loss_GAN`` (Eq. 3) with ``loss_int`` the mean absolute difference
(Eq. 4) and ``loss_GAN = -D(G(x))`` (Eq. 5); the critic is trained with WGAN-GP
(Gulrajani et al. 2017, Algorithm 1): ``D(fake) - D(real) + lambda_gp * (||grad D(x_hat)||_2
- 1)^2`` on random interpolates ``x_hat`` between real and generated samples.

The plain GAN (SRGAN, Ledig et al. 2017 Sec. 2.2) uses binary cross-entropy on
discriminator logits: :func:`bce_discriminator_loss` and :func:`bce_generator_loss`
(the non-saturating ``-log D(G(x))`` form).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from mrenhance.errors import ConfigError

__all__ = [
    "LOSSES",
    "CharbonnierLoss",
    "bce_discriminator_loss",
    "bce_generator_loss",
    "CriticTerms",
    "create_loss",
    "critic_loss",
    "critic_loss_terms",
    "generator_adversarial_loss",
    "gradient_penalty",
    "list_losses",
    "register_loss",
]

#: Registry of intensity losses: name -> factory returning an ``nn.Module`` with
#: ``forward(prediction, target) -> scalar tensor``.
LOSSES: dict[str, Callable[..., nn.Module]] = {}


def register_loss(*names: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class decorator registering a loss factory under one or more names."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        for name in names:
            if name in LOSSES:
                raise ValueError(f"loss {name!r} is already registered")
            LOSSES[name] = factory
        return factory

    return deco


def list_losses() -> list[str]:
    """The registered loss names, sorted."""
    return sorted(LOSSES)


def create_loss(name: str, **cfg: object) -> nn.Module:
    """Build a registered loss by name.

    Parameters
    ----------
    name:
        ``"l1"``, ``"l2"`` (alias ``"mse"``) or ``"charbonnier"``.
    **cfg:
        Keyword arguments of the loss (e.g. ``eps`` for Charbonnier).

    Raises
    ------
    ConfigError
        Unknown name, or arguments the loss does not take.
    """
    if name not in LOSSES:
        raise ConfigError(f"loss {name!r}: unknown loss (known: {', '.join(list_losses())})")
    try:
        return LOSSES[name](**cfg)
    except TypeError as exc:
        raise ConfigError(f"loss {name!r}: bad arguments {cfg!r} ({exc})") from None


@register_loss("l1")
class L1Loss(nn.L1Loss):
    """Mean absolute difference over all voxels (mDCSRN Eq. 4)."""

    def __init__(self) -> None:
        super().__init__(reduction="mean")


@register_loss("l2", "mse")
class L2Loss(nn.MSELoss):
    """Mean squared difference over all voxels."""

    def __init__(self) -> None:
        super().__init__(reduction="mean")


@register_loss("charbonnier")
class CharbonnierLoss(nn.Module):
    """Charbonnier (smooth L1) loss: ``mean(sqrt((pred - target)^2 + eps^2))``.

    Parameters
    ----------
    eps:
        Smoothing constant in image intensity units; the loss is ~L2 for errors << eps and
        ~L1 for errors >> eps. Its minimum (at zero error) is ``eps``.
    """

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = prediction - target
        return torch.sqrt(diff * diff + self.eps * self.eps).mean()


# --------------------------------------------------------------------------------------
# WGAN-GP
# --------------------------------------------------------------------------------------


@dataclass
class CriticTerms:
    """The parts of one critic loss evaluation (all scalar tensors).

    Attributes
    ----------
    loss:
        ``D(fake).mean() - D(real).mean() + gradient_penalty``: what the critic minimises.
    wasserstein:
        ``D(real).mean() - D(fake).mean()``: the critic's estimate of the Earth-Mover
        distance (mDCSRN Sec. 2.2 reads it as an image-quality indicator). Detached.
    gradient_penalty:
        ``lambda_gp * mean((||grad||_2 - 1)^2)``. Detached.
    """

    loss: torch.Tensor
    wasserstein: torch.Tensor
    gradient_penalty: torch.Tensor


def _scores(out: torch.Tensor, batch: int) -> torch.Tensor:
    """Critic output ``(batch,)`` or ``(batch, 1, ...)`` -> ``(batch,)``."""
    if out.shape[0] != batch or out[0].numel() != 1:
        raise ValueError(
            f"critic must return one score per sample, shape ({batch},) or ({batch}, 1); "
            f"got {tuple(out.shape)}"
        )
    return out.reshape(batch)


def _interpolates(
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``alpha * real + (1 - alpha) * fake`` with one ``alpha ~ U[0, 1)`` per sample."""
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} differ")
    batch = real.shape[0]
    if alpha is None:
        # choice: draw on the CPU so the same generator gives the same numbers on any device
        alpha = torch.rand(batch, generator=generator, dtype=torch.float32)
    if alpha.shape != (batch,):
        raise ValueError(f"alpha must have shape ({batch},), got {tuple(alpha.shape)}")
    alpha = alpha.to(device=real.device, dtype=real.dtype).view(batch, *([1] * (real.dim() - 1)))
    mixed = alpha * real.detach() + (1.0 - alpha) * fake.detach()
    return mixed.requires_grad_(True)


def _penalty(scores: torch.Tensor, interp: torch.Tensor, lambda_gp: float) -> torch.Tensor:
    # create_graph=True: the penalty is differentiated again w.r.t. the critic's weights.
    (grad,) = torch.autograd.grad(scores.sum(), interp, create_graph=True)
    grad = grad.float().flatten(1)
    # choice: +1e-12 under the root keeps the gradient finite where grad == 0
    norm = torch.sqrt((grad * grad).sum(dim=1) + 1e-12)
    return lambda_gp * ((norm - 1.0) ** 2).mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    lambda_gp: float = 10.0,
    *,
    alpha: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP gradient penalty (Gulrajani et al. 2017, Eq. 3).

    Parameters
    ----------
    critic:
        Maps ``(batch, channel, *spatial)`` to scores ``(batch,)`` or ``(batch, 1)``. Must
        treat samples independently (no BatchNorm; mDCSRN's critic uses LayerNorm).
    real, fake:
        ``(batch, channel, *spatial)`` tensors; both are detached here.
    lambda_gp:
        Penalty weight (10 in WGAN-GP and mDCSRN).
    alpha:
        Optional ``(batch,)`` interpolation weights in [0, 1]; drawn uniformly if omitted.
    generator:
        ``torch.Generator`` (CPU) for drawing ``alpha``; the global RNG if omitted.

    Returns
    -------
    torch.Tensor
        Scalar ``lambda_gp * mean_i (||d D(x_i) / d x_i||_2 - 1)^2`` over interpolates
        ``x_i = alpha_i real_i + (1 - alpha_i) fake_i``; differentiable w.r.t. the critic's
        parameters.
    """
    interp = _interpolates(real, fake, alpha, generator)
    scores = _scores(critic(interp), real.shape[0])
    return _penalty(scores, interp, lambda_gp)


def critic_loss_terms(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    lambda_gp: float = 10.0,
    *,
    alpha: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> CriticTerms:
    """WGAN-GP critic loss and its parts, from one critic forward pass.

    Real, fake and interpolated samples go through the critic as one concatenated batch
    ``(3 * batch, channel, *spatial)``: one forward call, which also keeps
    ``DistributedDataParallel`` to its one-forward-one-backward rule. Shapes and
    arguments as in :func:`gradient_penalty`; ``fake`` is detached (the generator is not
    trained by this loss).
    """
    batch = real.shape[0]
    interp = _interpolates(real, fake, alpha, generator)
    both = torch.cat([real.detach(), fake.detach(), interp], dim=0)
    scores = _scores(critic(both), 3 * batch)
    d_real, d_fake, d_interp = scores[:batch], scores[batch : 2 * batch], scores[2 * batch :]
    gp = _penalty(d_interp, interp, lambda_gp)
    wasserstein = d_real.float().mean() - d_fake.float().mean()
    return CriticTerms(
        loss=gp - wasserstein, wasserstein=wasserstein.detach(), gradient_penalty=gp.detach()
    )


def critic_loss(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    lambda_gp: float = 10.0,
    *,
    alpha: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP critic loss ``D(fake).mean() - D(real).mean() + GP`` (scalar tensor).

    See :func:`critic_loss_terms` (which also returns the Wasserstein estimate and the GP).
    """
    return critic_loss_terms(critic, real, fake, lambda_gp, alpha=alpha, generator=generator).loss


def generator_adversarial_loss(
    critic: Callable[[torch.Tensor], torch.Tensor], fake: torch.Tensor
) -> torch.Tensor:
    """Adversarial loss of the generator, ``-D(fake).mean()`` (mDCSRN Eq. 5).

    Parameters
    ----------
    critic:
        Maps ``(batch, channel, *spatial)`` to ``(batch,)`` or ``(batch, 1)`` scores.
    fake:
        Generator output ``(batch, channel, *spatial)``, not detached: the gradient flows
        back into the generator.

    Returns
    -------
    torch.Tensor
        Scalar; weighted by ``adv_weight`` (mDCSRN's lambda = 0.001, Eq. 3) by the caller.
    """
    return -_scores(critic(fake), fake.shape[0]).float().mean()


# --------------------------------------------------------------------------------------
# BCE adversarial (SRGAN)
# --------------------------------------------------------------------------------------


def bce_discriminator_loss(
    discriminator: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``BCE(D(real), 1) + BCE(D(fake), 0)`` on logits, real and fake in one forward pass.

    Parameters
    ----------
    discriminator:
        Maps ``(batch, channel, *spatial)`` to one logit per sample, ``(batch,)`` or
        ``(batch, 1)`` (no final sigmoid: the loss applies it, stably).
    real, fake:
        ``(batch, channel, *spatial)``; ``fake`` is detached here.

    Returns
    -------
    (loss, d_real, d_fake)
        The scalar loss (mean over samples of each term, summed), and the detached mean
        probabilities the discriminator gives real and fake samples.
    """
    batch = real.shape[0]
    both = torch.cat([real.detach(), fake.detach()], dim=0)
    logits = _scores(discriminator(both), 2 * batch).float()
    real_logits, fake_logits = logits[:batch], logits[batch:]
    bce = nn.functional.binary_cross_entropy_with_logits
    loss = bce(real_logits, torch.ones_like(real_logits)) + bce(
        fake_logits, torch.zeros_like(fake_logits)
    )
    return (
        loss,
        torch.sigmoid(real_logits).mean().detach(),
        torch.sigmoid(fake_logits).mean().detach(),
    )


def bce_generator_loss(
    discriminator: Callable[[torch.Tensor], torch.Tensor], fake: torch.Tensor
) -> torch.Tensor:
    """Non-saturating generator loss ``BCE(D(fake), 1) = -mean log sigmoid(D(fake))``.

    Ledig et al. 2017 Eq. 6; weighted by ``adv_weight`` (1e-3) by the caller.
    """
    logits = _scores(discriminator(fake), fake.shape[0]).float()
    return nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
