"""LSP: linearly separable synthetic patches (Yu et al., KDD 2022), an l2 poison with no model.

Synthetic points are drawn class by class from scikit-learn's ``make_classification`` (one Gaussian
cluster per class, ``class_sep`` 10, every feature informative) in (⌈H/patch⌉² · C) dimensions (the patch
shrinks to keep at least the paper's 4 × 4 grid: 7 px on 28-px Fashion-MNIST); each is
reshaped to a ⌈H/patch⌉ × ⌈W/patch⌉ × C grid, every value blown up to a patch × patch square, cropped to
H × W and scaled to ‖δ‖₂ = ε. The paper's ε is √(C·H·W) · 6/255 (``eps`` 0 asks for that rule; 1.30 on
CIFAR-10, 0.66 on Fashion-MNIST). Image i of class c gets the i-th synthetic point of class c.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..settings import setting
from .base import Attack, AttackConfig, register


@dataclass(frozen=True)
class LSPConfig(AttackConfig):
    eps: float = setting(0.0, low=0, high=1e3, doc="l2 budget per image; 0: √(C·H·W)·pixel_eps (the paper's rule)")
    pixel_eps: float = setting(6 / 255, low=0, low_open=True, high=1, doc="the l∞-equivalent size of the rule")
    patch: int = setting(8, low=1, doc="side of the square each synthetic feature fills")
    class_sep: float = setting(10.0, low=0, low_open=True, doc="make_classification's class separation")


def budget(cfg: LSPConfig, shape) -> float:
    """The l2 budget: ``eps`` or, at 0, √(C·H·W)·pixel_eps."""
    return cfg.eps or math.sqrt(math.prod(shape)) * cfg.pixel_eps


def patches(labels: torch.Tensor, num_classes: int, shape, patch: int, class_sep: float, seed: int) -> torch.Tensor:
    """One unit-l2 patch image (C×H×W) per label, linearly separable by class."""
    from sklearn.datasets import make_classification
    c, h, w = shape
    patch = min(patch, max(1, min(h, w) // 4))  # at least the paper's 4×4 grid (28 px: patch 7, 8 px: 2)
    gh, gw = math.ceil(h / patch), math.ceil(w / patch)
    counts = torch.bincount(labels, minlength=num_classes)
    per_class = int(counts.max())
    points, point_labels = make_classification(
        n_samples=per_class * num_classes, n_features=gh * gw * c, n_informative=gh * gw * c, n_redundant=0,
        n_repeated=0, n_classes=num_classes, n_clusters_per_class=1, class_sep=class_sep, flip_y=0.0,
        weights=None, shuffle=True, random_state=seed)
    points, point_labels = torch.from_numpy(points).float(), torch.from_numpy(point_labels)
    grid = points.view(-1, gh, gw, c).permute(0, 3, 1, 2)
    images = grid.repeat_interleave(patch, 2).repeat_interleave(patch, 3)[:, :, :h, :w]
    images = images / images.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    out = torch.empty(len(labels), c, h, w)
    for cls in range(num_classes):
        rows = (labels == cls).nonzero().flatten()
        out[rows] = images[point_labels == cls][:len(rows)]
    return out


@register
class LinearSeparablePatches(Attack):
    name = "lsp"
    label = "LSP"
    norm = "l2"
    Config = LSPConfig

    def finish(self, state, data, device):
        c = self.config
        eps = budget(c, data.shape)
        delta = patches(data.labels, data.num_classes, data.shape, c.patch, c.class_sep, c.seed) * eps
        return self._poison(data, delta, eps=eps)
