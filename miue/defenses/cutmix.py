"""CutMix (Yun et al., ICCV 2019) as a training-side defense: a box of each image is replaced by the same box
of another image of the batch and the targets are mixed by area, (1 − λ)·y_a + λ·y_b.

As the MI-UE code (``kornia.augmentation.RandomCutMixV2`` with its defaults: Beta(1, 1) box ratio, one mix,
p = 1), through kornia itself; its draws come from torch's generator, seeded from the run's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..settings import setting
from .base import Defense, DefenseConfig, register, soft_targets, torch_seed


@dataclass(frozen=True)
class CutMixConfig(DefenseConfig):
    beta: float = setting(1.0, low=0, low_open=True, doc="Beta(β, β) of the box's area ratio")
    p: float = setting(1.0, low=0, high=1, doc="probability that a batch is mixed")


@register
class CutMix(Defense):
    name = "cutmix"
    label = "CutMix"
    kind = "training"
    Config = CutMixConfig

    def hook(self, model, x, y, generator):
        import kornia.augmentation as K
        args = dict(num_mix=1, beta=self.config.beta, p=self.config.p, data_keys=["input", "class"])
        try:  # kornia >= 0.8 returns λ = 1 − pasted area with this flag; older ones return the pasted area
            mix, kept_share = K.RandomCutMixV2(**args, use_correct_lambda=True), True
        except TypeError:
            mix, kept_share = K.RandomCutMixV2(**args), False
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed(generator))
            out, label = mix(x, y)
        num_classes = model.head.out_features
        ya, yb, lam = label[0].T  # the one mix: (own label y_a, pasted label y_b, λ) per image
        pasted = 1 - lam if kept_share else lam
        t = (1 - pasted).unsqueeze(1) * soft_targets(ya.long(), num_classes) + \
            pasted.unsqueeze(1) * soft_targets(yb.long(), num_classes)
        return out, t.to(x.device)
