"""Mixup (Zhang et al., ICLR 2018) as a training-side defense: convex combinations of pairs of images and of
their one-hot labels, λ ~ Beta(α, α) once per batch, pairs by a random permutation of the batch.
α = 1 (λ uniform) is the setting of the MI-UE paper's Table 5 and of the ISS/UEraser comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..settings import setting
from .base import Defense, DefenseConfig, register, soft_targets


@dataclass(frozen=True)
class MixupConfig(DefenseConfig):
    alpha: float = setting(1.0, low=0, low_open=True, doc="Beta(α, α) of the mixing weight")


@register
class Mixup(Defense):
    name = "mixup"
    label = "Mixup"
    kind = "training"
    Config = MixupConfig

    def hook(self, model, x, y, generator):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
        lam = float(np.random.default_rng(seed).beta(self.config.alpha, self.config.alpha))
        perm = torch.randperm(len(x), generator=generator).to(x.device)
        num_classes = model.head.out_features
        t = soft_targets(y, num_classes)
        return lam * x + (1 - lam) * x[perm], lam * t + (1 - lam) * t[perm]
