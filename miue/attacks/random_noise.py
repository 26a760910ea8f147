"""Random noise: δ ~ U[−ε, ε] per pixel, the paper's 'Random' row (an ineffective perturbation)."""

from __future__ import annotations

import torch

from .base import Attack, AttackConfig, register


@register
class RandomNoise(Attack):
    name = "random"
    Config = AttackConfig

    def generate(self, data, *, device="cpu", progress=True, checkpoint=None, on_epoch=None):
        g = torch.Generator().manual_seed(self.config.seed)
        delta = (torch.rand(data.images.shape, generator=g) * 2 - 1) * self.config.eps
        return self._poison(data, delta)
