"""The noise generator GUE and DeepConfuse train: a small UNet (diffusers' ``UNet2DModel``) whose output,
squashed by ε·tanh, is the perturbation of its input image."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...train import as_float


class Generator(torch.nn.Module):
    """δ_a(x) = ε·tanh(UNet(x)) at the input's size (padded to a multiple of 8 inside)."""

    def __init__(self, channels: int, width: int, eps: float):
        super().__init__()
        from diffusers import UNet2DModel
        self.unet = UNet2DModel(sample_size=32, in_channels=channels, out_channels=channels,
                                block_out_channels=(width, 2 * width, 2 * width), layers_per_block=1,
                                down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
                                norm_num_groups=min(8, width))
        self.eps = eps

    @torch.no_grad()
    def perturb_set(self, images: torch.Tensor, device, batch_size: int = 500) -> torch.Tensor:
        """δ for every image of a uint8 set (the generator in eval mode)."""
        self.eval()
        return torch.cat([self(as_float(images[idx], device)) for idx in torch.arange(len(images)).split(batch_size)])

    def forward(self, x):
        h, w = x.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        out = self.unet(F.pad(x * 2 - 1, (0, pw, 0, ph)), 0).sample[..., :h, :w]
        return self.eps * torch.tanh(out)
