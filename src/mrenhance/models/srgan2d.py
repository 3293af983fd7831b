"""2D SRResNet / SRGAN generator (4x), its BCE discriminator and a VGG19 feature network.

The DTI super-resolution paper (Mubarka et al., Sec. 4) uses Ledig et al. 2017's SRGAN:
a 16-block SRResNet generator with two pixel-shuffle upsampling stages, a VGG-like
discriminator with a sigmoid output, and a VGG feature loss. The residual block is the one
our 3D SRResNet uses (:class:`mrenhance.models.blocks.ResidualBlock`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mrenhance.errors import ConfigError
from mrenhance.models.blocks import ResidualBlock, activation, conv, norm
from mrenhance.models.critic import SRGANCritic
from mrenhance.models.registry import register_model

__all__ = ["SRResNet2D", "VGG19Features"]

_PAPER = "Ledig et al. 2017 Fig. 4; Mubarka et al. (DTI super-resolution) Sec. 4"


@register_model(
    "srresnet-dwi-x4",
    family="srgan2d",
    task="dti",
    spatial_dims=2,
    in_channels=1,
    out_channels=1,
    description="2D SRResNet/SRGAN generator, 16 residual blocks, 4x (1,528,724 parameters)",
    paper=_PAPER,
)
class SRResNet2D(nn.Module):
    """SRResNet (Ledig et al. 2017, Fig. 4), the DTI paper's generator (Sec. 4).

    Layers: 9x9 conv in -> C + PReLU; ``n_blocks`` residual blocks (3x3 conv, BN, PReLU,
    3x3 conv, BN, skip); 3x3 conv + BN plus a global skip from the first PReLU's output;
    ``log2(upscale)`` stages of 3x3 conv C -> 4C, PixelShuffle(2), PReLU; 9x9 conv C -> out.
    1,528,724 parameters at the defaults, with one PReLU slope per layer as our 3D SRResNet.

    Choices: one image channel in and out (the paper's three-channel copy of a grey image
    is a habit of photo networks); every conv has a bias; "same" padding (zeros).

    Shapes: (batch, in_channels, x, y) -> (batch, out_channels, upscale x, upscale y).
    """

    def __init__(
        self,
        channels: int = 64,
        n_blocks: int = 16,
        upscale: int = 4,
        in_channels: int = 1,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        if upscale < 1 or upscale & (upscale - 1):
            raise ConfigError(f"SRResNet2D: upscale must be a power of 2, got {upscale}")
        self.upscale = upscale
        self.head = nn.Sequential(conv(2, in_channels, channels, 9), activation("prelu"))
        self.body = nn.Sequential(
            *[
                ResidualBlock(channels, 3, 2, norm="batch", activation="prelu")
                for _ in range(n_blocks)
            ],
            conv(2, channels, channels, 3),
            norm("batch", channels, 2),
        )
        stages: list[nn.Module] = []
        for _ in range(upscale.bit_length() - 1):
            stages += [conv(2, channels, 4 * channels, 3), nn.PixelShuffle(2), activation("prelu")]
        self.upsample = nn.Sequential(*stages)
        self.tail = conv(2, channels, out_channels, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        return self.tail(self.upsample(h + self.body(h)))


# The paper's discriminator (Sec. 4, after Ledig et al. Fig. 4): 8 3x3 convs
# (64/1, 64/2, 128/1, 128/2, 256/1, 256/2, 512/1, 512/2), BN after all but the first,
# LeakyReLU 0.2, global pooling, dense 1024, dense 1; the sigmoid is in the BCE loss
# (losses.bce_*), so the network returns a logit. Same class as the 3D WGAN critic.
register_model(
    "srgan-discriminator2d",
    family="srgan2d",
    task="dti",
    spatial_dims=2,
    in_channels=1,
    out_channels=1,
    description="2D SRGAN discriminator (BatchNorm, logit out; sigmoid in the BCE loss)",
    paper=_PAPER,
    role="critic",
    norm="batch",
)(SRGANCritic)


# torchvision's VGG19 ``features`` layout: conv widths, "M" = 2x2 max pool
_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
_VGG19 += (512, 512, 512)
_N_LAYERS = 2 * sum(item != "M" for item in _VGG19) + _VGG19.count("M")  # conv + ReLU, pools


@register_model(
    "vgg19-features",
    family="srgan2d",
    task="dti",
    spatial_dims=2,
    in_channels=1,
    out_channels=512,
    description="VGG19 features for the SRGAN perceptual loss; needs a user-supplied weights file",
    paper="Simonyan & Zisserman 2015; Ledig et al. 2017 Sec. 2.2.1 (VGG54 loss)",
    role="critic",
)
class VGG19Features(nn.Module):
    """VGG19 up to ``layer`` (torchvision ``features`` indices), for a feature loss.

    Nothing can be downloaded here: pass ``weights``, a ``.safetensors`` file holding
    torchvision's ``vgg19`` state dict (keys ``features.N.weight``/``bias``; the classifier
    keys are ignored). Without it the network refuses to build. The one-channel input is
    copied to three channels and ImageNet-normalised; ``layer`` 35 is Ledig et al.'s
    "VGG54" (the 4th conv before the 5th pooling, after its ReLU).

    Shapes: (batch, 1, x, y) -> (batch, C, x / 16, y / 16) for ``layer`` 35.
    """

    def __init__(self, weights: str = "", layer: int = 35) -> None:
        super().__init__()
        if not weights:
            raise ConfigError(
                "vgg19-features: no weights file (nothing is downloaded): set "
                "gan.feature_model.weights to a .safetensors of torchvision's vgg19 state dict"
            )
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < _N_LAYERS:
            raise ConfigError(
                f"vgg19-features: layer must be a features index in 0..{_N_LAYERS - 1} "
                f"(35 = VGG54), got {layer!r}"
            )
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"vgg19-features: weights file {path} not found")
        layers: list[nn.Module] = []
        cin = 3
        for item in _VGG19:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(item)
        self.features = nn.Sequential(*layers[: layer + 1])
        self.features.load_state_dict(_vgg19_state(path, self.features.state_dict()))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x.expand(-1, 3, -1, -1) - self.mean) / self.std)


def _vgg19_state(path: Path, want: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``features.N`` tensors of a torchvision vgg19 safetensors file that ``want``
    (a truncated ``features`` state dict) needs, checked by name, shape and value; any
    problem is one ConfigError naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        stored = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ConfigError(f"{path}: not a readable .safetensors file ({err})") from None
    state = {}
    for key in sorted(want, key=lambda k: (int(k.split(".")[0]), k)):
        name = f"features.{key}"
        if name not in stored:
            raise ConfigError(f"{path}: not a torchvision vgg19 state dict (missing {name})")
        tensor = stored[name]
        if tuple(tensor.shape) != tuple(want[key].shape):
            raise ConfigError(
                f"{path}: {name} has shape {tuple(tensor.shape)}, vgg19 needs "
                f"{tuple(want[key].shape)} (not torchvision's vgg19)"
            )
        if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
            raise ConfigError(f"{path}: {name} is not finite floating point; refused")
        state[key] = tensor.to(want[key].dtype)
    return state
