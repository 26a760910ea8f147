"""Cutout (DeVries & Taylor, 2017) as a training-side defense: one square hole of side ``length`` zeroed at
a uniformly random centre of each (already cropped and flipped) image; the hole may leave the image.

``length`` 16 is the CIFAR-10 setting (the MI-UE code's cutout.py: "cifar10: 16, cifar100: 8"); the default,
0, takes half the image side: 16 on 32-pixel images, 14 on Fashion-MNIST's 28, 4 on 8×8 digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..settings import setting
from .base import Defense, DefenseConfig, register


def cutout(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """``x`` with one ``length``×``length`` hole per image (centre uniform over the pixels, clipped)."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1), generator=generator)
    cx = torch.randint(0, w, (n, 1, 1), generator=generator)
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    half = length // 2
    hole = ((rows >= cy - half) & (rows < cy - half + length) & (cols >= cx - half) & (cols < cx - half + length))
    return x * (~hole).unsqueeze(1).to(x.device, x.dtype)


@dataclass(frozen=True)
class CutoutConfig(DefenseConfig):
    length: int = setting(0, low=0, doc="side of the hole in pixels; 0: half the image side (CIFAR-10: 16, "
                                        "CIFAR-100: 8)")


@register
class Cutout(Defense):
    name = "cutout"
    label = "Cutout"
    kind = "training"
    Config = CutoutConfig

    def hook(self, model, x, y, generator):
        return cutout(x, self.config.length or x.shape[-1] // 2, generator), y
