import math

import pytest
import torch
from torch import nn

from mrenhance.errors import ConfigError
from mrenhance.losses import (
    LOSSES,
    create_loss,
    critic_loss,
    critic_loss_terms,
    generator_adversarial_loss,
    gradient_penalty,
)


class LinearCritic(nn.Module):
    """D(x) = <w, x> + b: its input gradient is w everywhere, so GP = lambda (||w|| - 1)^2."""

    def __init__(self, shape: tuple[int, ...], norm: float) -> None:
        super().__init__()
        w = torch.randn(shape, generator=torch.Generator().manual_seed(1))
        self.w = nn.Parameter(w * norm / w.norm())
        self.b = nn.Parameter(torch.tensor(0.3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1, keepdim=True) + self.b


def _pair(batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, 1, 4, 4, 4, generator=g), torch.rand(batch, 1, 4, 4, 4, generator=g)


def test_intensity_losses_match_hand_values():
    pred = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    target = torch.tensor([[1.0, 0.0, 3.0, 8.0]])
    assert create_loss("l1")(pred, target).item() == pytest.approx(6 / 4)
    assert create_loss("l2")(pred, target).item() == pytest.approx(20 / 4)
    assert create_loss("mse")(pred, target).item() == pytest.approx(20 / 4)
    expected = (0.1 + math.sqrt(4.01) + 0.1 + math.sqrt(16.01)) / 4
    assert create_loss("charbonnier", eps=0.1)(pred, target).item() == pytest.approx(expected)


def test_registry_names_and_unknown_loss():
    assert {"l1", "l2", "mse", "charbonnier"} <= set(LOSSES)
    with pytest.raises(ConfigError, match=r"loss 'l3': unknown loss \(known: charbonnier, l1"):
        create_loss("l3")
    with pytest.raises(ConfigError, match="bad arguments"):
        create_loss("l1", eps=1.0)


def test_gradient_penalty_is_zero_for_unit_norm_linear_critic():
    real, fake = _pair()
    gp = gradient_penalty(LinearCritic((1, 4, 4, 4), norm=1.0), real, fake, lambda_gp=10.0)
    assert gp.item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_penalty_value_and_its_gradient_for_norm_two_critic():
    critic = LinearCritic((1, 4, 4, 4), norm=2.0)
    real, fake = _pair()
    gp = gradient_penalty(critic, real, fake, lambda_gp=10.0)
    assert gp.item() == pytest.approx(10.0 * (2.0 - 1.0) ** 2, rel=1e-5)
    # create_graph=True: the penalty trains the critic; d/dw lambda (||w|| - 1)^2
    gp.backward()
    w = critic.w.detach()
    expected = 2 * 10.0 * (w.norm() - 1.0) * w / w.norm()
    torch.testing.assert_close(critic.w.grad, expected, rtol=1e-4, atol=1e-6)


def test_gradient_penalty_positive_for_nonlinear_critic_and_uses_alpha():
    def critic(x):  # gradient 2x: its norm varies with x
        return (x**2).flatten(1).sum(1)

    real, fake = _pair(2)
    alpha = torch.tensor([0.25, 1.0])
    gp = gradient_penalty(critic, real, fake, lambda_gp=10.0, alpha=alpha)
    mix = alpha.view(2, 1, 1, 1, 1) * real + (1 - alpha.view(2, 1, 1, 1, 1)) * fake
    expected = 10.0 * ((2 * mix).flatten(1).norm(dim=1) - 1).pow(2).mean()
    assert gp.item() > 0
    assert gp.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradient_penalty_draws_one_alpha_per_sample_from_the_generator():
    def critic(x):
        return (x**2).flatten(1).sum(1)

    real, fake = _pair(4)
    a = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(5))
    b = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(5))
    c = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(6))
    assert a.item() == b.item()
    assert a.item() != c.item()


def test_critic_loss_signs_and_terms():
    critic = LinearCritic((1, 4, 4, 4), norm=1.0)
    real = torch.ones(2, 1, 4, 4, 4)
    fake = torch.zeros(2, 1, 4, 4, 4)
    d_real = critic(real).mean()
    d_fake = critic(fake).mean()
    terms = critic_loss_terms(critic, real, fake, lambda_gp=10.0)
    assert terms.wasserstein.item() == pytest.approx((d_real - d_fake).item(), rel=1e-6)
    assert terms.gradient_penalty.item() == pytest.approx(0.0, abs=1e-6)
    # the critic minimises D(fake) - D(real): lower when it scores real above fake
    assert terms.loss.item() == pytest.approx((d_fake - d_real).item(), rel=1e-5)
    flipped = critic_loss(critic, fake, real, lambda_gp=10.0)
    assert flipped.item() == pytest.approx(-terms.loss.item(), rel=1e-5)


def test_generator_adversarial_loss_is_minus_mean_score_and_pushes_score_up():
    critic = LinearCritic((1, 4, 4, 4), norm=1.0)
    fake = torch.zeros(2, 1, 4, 4, 4, requires_grad=True)
    loss = generator_adversarial_loss(critic, fake)
    assert loss.item() == pytest.approx(-critic(fake).mean().item(), rel=1e-6)
    loss.backward()
    # a small step against the gradient raises the critic's score of the fake
    stepped = (fake - 0.1 * fake.grad).detach()
    assert critic(stepped).mean() > critic(fake.detach()).mean()


def test_critic_with_wrong_output_shape_is_refused():
    real, fake = _pair(2)
    with pytest.raises(ValueError, match="one score per sample"):
        gradient_penalty(lambda x: x, real, fake)
