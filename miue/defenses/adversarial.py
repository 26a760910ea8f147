"""Adversarial training (Madry et al., ICLR 2018) as a training-side defense:
min_θ E max_{‖δ‖∞≤ρ} CE(f_θ(x + δ), y), the inner maximum by PGD from a uniform random start.

The MI-UE paper evaluates ρ ∈ {2, 4, 6, 8}/255 (AT-2 … AT-8, Table 4, App. E.4) with PGD-10. The step size is
not settled: the authors' evaluation code keeps α = 2/255 at every budget (``step_rule="fixed"``, the
default); REM and SEM, whose protocol MI-UE says it follows, use α = ρ/5 (``step_rule="fifth"``).
:attr:`AdversarialTraining.step` is the step that ran. The paper's schedule (100 epochs, lr 0.1, ×0.1 at 40
and 80, weight decay 5e-4) is the profile's ``defense_recipes["at"]``. The attack runs on the model in eval
mode (batch-norm statistics are not updated by the adversary's forward passes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models import frozen
from ..pgd import pgd
from ..settings import setting
from .base import Defense, DefenseConfig, register


@dataclass(frozen=True)
class AdversarialTrainingConfig(DefenseConfig):
    eps: float = setting(8 / 255, low=0, low_open=True, high=1, doc="l∞ budget ρ of the inner maximisation")
    steps: int = setting(10, low=1, doc="PGD steps (the paper: 10)")
    step_rule: str = setting("fixed", choices=("fixed", "fifth"),
                             doc="'fixed': α = step_size (the authors' code, 2/255); 'fifth': α = ρ/5 (REM/SEM)")
    step_size: float = setting(2 / 255, low=0, low_open=True, doc="α under step_rule 'fixed'")


@register
class AdversarialTraining(Defense):
    name = "at"
    label = "AT"
    kind = "training"
    Config = AdversarialTrainingConfig

    @property
    def step(self) -> float:
        c = self.config
        return c.step_size if c.step_rule == "fixed" else c.eps / 5

    @property
    def relative_cost(self) -> float:
        return 1.0 + self.config.steps  # each PGD step is one forward-backward pass

    def perturb(self, model, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """PGD adversarial examples x + δ of ``model`` (left in eval mode) within the l∞ budget."""
        c = self.config
        start = (torch.rand(x.shape, generator=generator) * 2 - 1).to(x.device) * c.eps
        start = (x + start).clamp(0, 1) - x
        with torch.enable_grad(), frozen(model):
            delta, _ = pgd(lambda inp: F.cross_entropy(model(inp).float(), y), x, start, eps=c.eps,
                           step_size=self.step, steps=c.steps, ascent=True)
        return (x + delta).detach()

    def hook(self, model, x, y, generator):
        return self.perturb(model, x, y, generator), y
