"""AP: adversarial poisoning (Fowl et al., NeurIPS 2021), the class-targeted version.

A source model is trained on clean data; then, for each sample, δ = argmin_{‖δ‖∞≤ε} CE(f(aug(x+δ)), π(y))
with π(y) = (y + 1) mod C, by ``iterations`` signed steps of ``step_ratio``·ε through differentiable crop+flip,
from a random start, over ``restarts`` restarts keeping each sample's lowest-loss result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.std import tqdm

from ..checkpoint import Checkpoint
from ..train import Recipe, evaluate, fit, prepare, resolve_device
from .base import Attack, AttackConfig, project, register, source_model
from .em import pgd_sweep


@dataclass(frozen=True)
class APConfig(AttackConfig):
    source_epochs: int = 40
    source_lr: float = 0.1
    source_weight_decay: float = 5e-4
    source_batch_size: int = 128
    restarts: int = 8
    iterations: int = 250
    step_ratio: float = 0.05  # step = 0.05·ε (τ0 in the official code)
    batch_size: int = 512
    augment: bool = True
    model: str = "resnet18"
    width: float = 1.0


@register
class AdversarialPoisoning(Attack):
    name = "ap"
    Config = APConfig

    def generate(self, data, *, device="cpu", progress=True, checkpoint=None, on_epoch=None):
        c = self.config
        device = resolve_device(device)
        model = source_model(c, data)
        recipe = Recipe(epochs=c.source_epochs, batch_size=c.source_batch_size, lr=c.source_lr,
                        weight_decay=c.source_weight_decay)
        src_ckpt = Checkpoint(checkpoint.path.with_name("source.safetensors")) if checkpoint else None
        source_history = fit(model, data, recipe, seed=c.seed, device=device, progress=progress,
                             checkpoint=src_ckpt, desc="AP source")
        model = prepare(model, device)
        gen = torch.Generator().manual_seed(c.seed + 1)
        x_all, y_all = data.images.to(device), data.labels.to(device)
        targets = (y_all + 1) % data.num_classes
        pgd = _PGD(c.eps, c.iterations, c.step_ratio * c.eps, c.batch_size)
        best, best_loss, start = torch.zeros(x_all.shape, device=device), torch.full((len(data),), float("inf"),
                                                                                       device=device), 0
        if checkpoint is not None:
            restored = checkpoint.load(generators={"gen": gen}, device=device)
            if restored is not None:
                start, tensors, _ = restored
                best, best_loss = tensors["best"], tensors["best_loss"]
        for r in tqdm(range(start, c.restarts), desc="AP restarts", initial=start, total=c.restarts,
                      disable=not progress, leave=False):
            init = (torch.randn(x_all.shape, generator=gen) * c.eps).to(device)
            init = project(init, x_all.float() / 255, c.eps)
            delta, loss = pgd_sweep(model, x_all, y_all, init, targets, pgd, device, gen,
                                    data.augmentation if c.augment else None)
            better = loss < best_loss
            best[better], best_loss[better] = delta[better], loss[better]
            if checkpoint is not None:
                checkpoint.save(r + 1, generators={"gen": gen}, tensors={"best": best, "best_loss": best_loss})
        _, success = evaluate(model, ((x_all.float() / 255 + best).clamp(0, 1), targets), device)
        return self._poison(data, best, source_history=source_history, target_success=success)


@dataclass(frozen=True)
class _PGD:
    eps: float
    pgd_steps: int
    step_size: float
    batch_size: int
