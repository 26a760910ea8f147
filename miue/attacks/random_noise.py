"""Random noise: δ ~ U[−ε, ε] per pixel, the paper's 'Random' row (an ineffective perturbation)."""

from __future__ import annotations

import torch

from .base import Attack, AttackConfig, AttackState, register


@register
class RandomNoise(Attack):
    name = "random"
    label = "Random"
    Config = AttackConfig

    def start(self, data, device, checkpoint):
        g = torch.Generator().manual_seed(self.config.seed)
        delta = (torch.rand(data.images.shape, generator=g) * 2 - 1) * self.config.eps
        return AttackState(epochs=0, tensors={"delta": delta})

    def finish(self, state, data, device):
        return self._poison(data, state.delta)
