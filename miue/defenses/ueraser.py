"""UEraser (Qin et al., 2023, "Learning the unlearnable: adversarial augmentations suppress unlearnable
example attacks") as a training-side defense.

Each batch goes through kornia's plasma brightness (roughness 0.3–0.7, intensity 0.5–1.0) and plasma contrast
(roughness 0.3–0.7), a channel shuffle (each with probability ``p``, the official ueraser.py's 0.5) and
kornia's TrivialAugment (one operation drawn per batch, as kornia applies it). During the adversarial epochs
every image is augmented ``repeats`` (K = 5) times and training minimises mean_i max_k CE(f(aug_k(x_i)), y_i).
The gradient of max_k is the gradient at the arg-max draw, so the draws are scored in one no-grad forward
pass (train mode, like the official loss) and the model is trained on the worst draw of each image: the
same gradient as backpropagating through the max, save that batch-norm statistics come from the chosen
draws. Variants (APBench's ``--repeat_epoch``): ``lite`` (no repeats), ``standard`` (repeats in the first
30% of epochs, the README's 60 of 200) and ``max`` (repeats in every epoch; SAL/UD's choice).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..settings import setting
from .base import Defense, DefenseConfig, register, torch_seed

REPEAT_FRACTION = {"lite": 0.0, "standard": 0.3, "max": 1.0}


@dataclass(frozen=True)
class UEraserConfig(DefenseConfig):
    variant: str = setting("max", choices=tuple(REPEAT_FRACTION), doc="lite, standard or max (see the module)")
    repeats: int = setting(5, low=1, doc="K augmented draws per image in the adversarial epochs")
    p: float = setting(0.5, low=0, high=1, doc="probability of each plasma op and of the channel shuffle")


@register
class UEraser(Defense):
    name = "ueraser"
    label = "UEraser"
    kind = "training"
    Config = UEraserConfig

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self._adversarial = self.config.variant == "max"
        self._pipeline = None

    def pipeline(self):
        if self._pipeline is None:
            import kornia.augmentation as K
            from kornia.augmentation.auto import TrivialAugment
            p = self.config.p
            self._pipeline = torch.nn.Sequential(
                K.RandomPlasmaBrightness(roughness=(0.3, 0.7), intensity=(0.5, 1.0), p=p),
                K.RandomPlasmaContrast(roughness=(0.3, 0.7), p=p),
                K.RandomChannelShuffle(p=p),
                TrivialAugment())
        return self._pipeline

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One UEraser draw for every image of ``x`` (float in [0, 1])."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed(generator))
            return self.pipeline()(x).clamp(0, 1)

    @property
    def relative_cost(self) -> float:
        return 1.0 + REPEAT_FRACTION[self.config.variant] * self.config.repeats / 3  # K scoring forward passes

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        self._adversarial = epoch < round(REPEAT_FRACTION[self.config.variant] * epochs)

    def hook(self, model, x, y, generator):
        if not self._adversarial or self.config.repeats == 1:
            return self.augment(x, generator), y
        k = self.config.repeats
        draws = torch.cat([self.augment(x, generator) for _ in range(k)])  # draw j of image i at j·n + i
        with torch.no_grad():
            loss = F.cross_entropy(model(draws).float(), y.repeat(k), reduction="none").view(k, len(x))
        worst = loss.argmax(0)
        return draws.view(k, *x.shape)[worst, torch.arange(len(x))], y
