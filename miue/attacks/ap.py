"""AP: adversarial poisoning (Fowl et al., NeurIPS 2021), the class-targeted version.

A source model is trained on clean data; then, for each sample, δ = argmin_{‖δ‖∞≤ε} CE(f(aug(x+δ)), π(y))
with π(y) = (y + 1) mod C, by ``iterations`` signed steps of ``step_ratio``·ε through differentiable crop+flip,
from a random start, over ``restarts`` restarts keeping each sample's lowest-loss result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checkpoint import Checkpoint
from ..settings import setting
from ..train import Recipe, evaluate, fit, prepare
from .base import Attack, AttackConfig, project, register, source_model
from .shared.sweep import pgd_sweep


@dataclass(frozen=True)
class APConfig(AttackConfig):
    source_epochs: int = setting(40, low=1)
    source_lr: float = setting(0.1, low=0, low_open=True)
    source_weight_decay: float = setting(5e-4, low=0)
    source_batch_size: int = setting(128, low=1)
    restarts: int = setting(8, low=1)
    iterations: int = setting(250, low=1)
    step_ratio: float = setting(0.05, low=0, low_open=True, high=1)  # step = 0.05·ε (τ0 in the official code)
    batch_size: int = setting(512, low=1)
    augment: bool = True
    model: str = "resnet18"
    width: float = setting(1.0, low=0, low_open=True)
    mi_weight: float = setting(0.0, low=0, added=True,
                               doc="weight of the MINE estimate of I(g(x); g(x+δ)) added to the loss (Table 8)")


@dataclass(frozen=True)
class _PGD:
    eps: float
    pgd_steps: int
    step_size: float
    batch_size: int


@register
class AdversarialPoisoning(Attack):
    name = "ap"
    label = "AP"
    Config = APConfig

    @classmethod
    def work(cls, config: dict, n: int) -> float:
        """The source model's epochs, then ``restarts`` × ``iterations`` PGD steps on every image."""
        return n * (config["source_epochs"] + config["restarts"] * config["iterations"])

    def start(self, data, device, checkpoint):
        c = self.config
        model = source_model(c, data)
        recipe = Recipe(epochs=c.source_epochs, batch_size=c.source_batch_size, lr=c.source_lr,
                        weight_decay=c.source_weight_decay)
        src_ckpt = Checkpoint(checkpoint.path.with_name("source.safetensors")) if checkpoint else None
        source_history = fit(model, data, recipe, seed=c.seed, device=device, progress=self.progress,
                             checkpoint=src_ckpt, desc="AP source")
        model = prepare(model, device)
        x_all = data.images.to(device)
        return self.new_state(data, device, epochs=c.restarts,
                              generators={"gen": torch.Generator().manual_seed(c.seed + 1)},
                              tensors={"delta": torch.zeros(x_all.shape, device=device),
                                       "best_loss": torch.full((len(data),), float("inf"), device=device)},
                              extra={"model": model, "source_history": source_history})

    def epoch(self, state, data, r, device):
        c, gen = self.config, state.generators["gen"]
        x_all, y_all = state.extra["x"], state.extra["y"]
        init = (torch.randn(x_all.shape, generator=gen) * c.eps).to(device)
        init = project(init, x_all.float() / 255, c.eps)
        pgd_cfg = _PGD(c.eps, c.iterations, c.step_ratio * c.eps, c.batch_size)
        mi_reg = None
        if c.mi_weight:
            from .shared.mi_regularizer import MIRegularizer
            mi_reg = MIRegularizer(state.extra["model"].feature_dim, c.mi_weight, device, seed=c.seed + r)
        delta, loss = pgd_sweep(state.extra["model"], x_all, y_all, init, (y_all + 1) % data.num_classes, pgd_cfg,
                                device, gen, data.augmentation if c.augment else None, mi_reg=mi_reg)
        best, best_loss = state.tensors["delta"], state.tensors["best_loss"]
        better = loss < best_loss
        best[better], best_loss[better] = delta[better], loss[better]
        return {"restart": r + 1, "mean_target_loss": float(best_loss.mean())}

    def finish(self, state, data, device):
        x_all, y_all = state.extra["x"], state.extra["y"]
        targets = (y_all + 1) % data.num_classes
        _, success = evaluate(state.extra["model"], ((x_all.float() / 255 + state.delta).clamp(0, 1), targets), device)
        return self._poison(data, state.delta, source_history=state.extra["source_history"], target_success=success)
