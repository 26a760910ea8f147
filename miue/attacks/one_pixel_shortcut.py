"""OPS: the one-pixel shortcut (Wu et al., ICLR 2023), an l0 poison with no model.

For each class in turn, the pixel position p and the corner colour v ∈ {0, 1}^C that maximize

    mean_j |v − x_j(p)| / std_j |v − x_j(p)|   (over the class's images j, channels pooled)

are chosen, excluding (position, colour) pairs an earlier class took; then pixel p of every image of the
class is set to v. Each image changes in exactly one pixel (ε = 1 under l0); there is no l∞ bound.
Any number of classes (the official search loops over ten).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..settings import setting
from .base import Attack, AttackConfig, register


@dataclass(frozen=True)
class OPSConfig(AttackConfig):
    eps: float = setting(1.0, low=1, high=1, doc="l0 budget: one pixel per image")


def search(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[tuple[int, int, tuple]]:
    """(row, column, colour) per class, by the score above; colours are corners of the unit cube."""
    x = images.float() / 255
    c, h, w = x.shape[1:]
    colours = torch.tensor([[(k >> i) & 1 for i in range(c)] for k in range(2 ** c)], dtype=torch.float32)
    taken = torch.zeros(len(colours), h, w, dtype=torch.bool)
    chosen = []
    for cls in range(num_classes):
        xs = x[labels == cls]
        if not len(xs):
            raise ValueError(f"OPS needs images of every class; class {cls} has none in this set")
        scores = torch.empty(len(colours), h, w)
        for k, v in enumerate(colours):
            d = (v.view(1, c, 1, 1) - xs).abs()  # n, C, H, W
            pooled = d.transpose(0, 1).reshape(c * len(xs), h, w)
            scores[k] = pooled.mean(0) / (pooled.std(0) + 1e-6)
        scores[taken] = -torch.inf
        k, at = divmod(int(scores.flatten().argmax()), h * w)
        r, col = divmod(at, w)
        taken[k, r, col] = True
        chosen.append((r, col, tuple(colours[k].tolist())))
    return chosen


@register
class OnePixelShortcut(Attack):
    name = "ops"
    label = "OPS"
    norm = "l0"
    Config = OPSConfig

    def finish(self, state, data, device):
        chosen = search(data.images, data.labels, data.num_classes)
        x = data.images.float() / 255
        delta = torch.zeros_like(x)
        for cls, (r, col, colour) in enumerate(chosen):
            rows = data.labels == cls
            v = torch.tensor(colour).view(1, -1)
            delta[rows, :, r, col] = v - x[rows, :, r, col]
        return self._poison(data, delta, pixels=[[r, col, list(v)] for r, col, v in chosen])
