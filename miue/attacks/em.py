"""EM: error-minimizing noise (Huang et al., ICLR 2021), sample-wise, bi-level min-min.

    min_θ min_{‖δ_i‖∞≤ε} Σ_i CE(f_θ(x_i + δ_i), y_i)

Rounds alternate ``train_steps`` SGD batches on x + δ with a PGD sweep over the whole set (signed
gradient *descent*, model in eval mode), until training accuracy on x + δ exceeds 1 − ``stop_error``
(the official stop condition, 99%) or ``max_rounds`` is reached. δ starts at zero; no augmentation
in generation, as in the official code (see methods.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.std import tqdm

from ..augment import augment
from ..train import Recipe, as_float, autocast, evaluate, prepare, resolve_device, sgd, train_steps
from .base import Attack, AttackConfig, project, register, source_model


@dataclass(frozen=True)
class EMConfig(AttackConfig):
    pgd_steps: int = 20
    step_size: float = 0.8 / 255
    train_steps: int = 10
    batch_size: int = 512
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float = 5.0
    stop_error: float = 0.01
    max_rounds: int = 100
    model: str = "resnet18"
    width: float = 1.0


def pgd_sweep(model, x_all, y_all, delta, targets, cfg, device, generator=None, aug_spec=None,
              restarts_loss=False):
    """Signed-gradient descent of CE(f(x+δ), target) for every batch; returns (δ, per-sample final loss)."""
    model.eval()
    model.requires_grad_(False)
    final = torch.empty(len(x_all), device=device)
    for s in range(0, len(x_all), cfg.batch_size):
        sl = slice(s, s + cfg.batch_size)
        x, t, d = as_float(x_all[sl], device), targets[sl], delta[sl].clone()
        for _ in range(cfg.pgd_steps):
            d.requires_grad_(True)
            inp = x + d
            if aug_spec is not None:
                inp = augment(inp, aug_spec, generator)
            with autocast(device):
                loss = F.cross_entropy(model(inp).float(), t)
            grad, = torch.autograd.grad(loss, d)
            d = project(d.detach() - cfg.step_size * grad.sign(), x, cfg.eps)
        with torch.no_grad(), autocast(device):
            final[sl] = F.cross_entropy(model(x + d).float(), t, reduction="none")
        delta[sl] = d.detach()
    model.requires_grad_(True)
    return delta, final


@register
class ErrorMinimizing(Attack):
    name = "em"
    Config = EMConfig

    def generate(self, data, *, device="cpu", progress=True, checkpoint=None, on_epoch=None):
        c = self.config
        device = resolve_device(device)
        model = prepare(source_model(c, data), device)
        recipe = Recipe(epochs=1, batch_size=c.batch_size, lr=c.lr, momentum=c.momentum,
                        weight_decay=c.weight_decay, schedule="constant", augment=False, grad_clip=c.grad_clip)
        opt = sgd(model, recipe)
        gen = torch.Generator().manual_seed(c.seed)
        x_all, y_all = data.images.to(device), data.labels.to(device)
        delta = torch.zeros(data.images.shape, device=device)
        start, history, order, cursor = 0, [], torch.randperm(len(data), generator=gen), 0
        if checkpoint is not None:
            restored = checkpoint.load(model=model, optimizer=opt, generators={"gen": gen}, device=device)
            if restored is not None:
                start, tensors, meta = restored
                delta, order, history = tensors["delta"], tensors["order"].cpu(), meta["history"]
                cursor = meta["cursor"]
        bar = tqdm(range(start, c.max_rounds), desc="EM", initial=start, total=c.max_rounds,
                   disable=not progress, leave=False, mininterval=1.0)
        for rnd in bar:
            if history and history[-1]["train_acc"] > 1 - c.stop_error:
                break
            # θ: train_steps batches on x + δ, continuing through a shuffled pass
            need = c.train_steps * c.batch_size
            if cursor + need > len(order):
                order, cursor = torch.randperm(len(data), generator=gen), 0
            batch_idx = order[cursor:cursor + need]
            cursor += need
            poisoned = (as_float(x_all, device) + delta).clamp_(0, 1)
            train_steps(model, opt, poisoned, y_all, batch_idx, recipe, None, gen, device)
            # δ: PGD sweep over the whole set, minimizing the error
            delta, _ = pgd_sweep(model, x_all, y_all, delta, y_all, c, device)
            _, acc = evaluate(model, ((as_float(x_all, device) + delta).clamp_(0, 1), y_all), device)
            history.append({"round": rnd + 1, "train_acc": acc})
            bar.set_postfix(train_acc=round(acc, 4))
            if checkpoint is not None:
                checkpoint.save(rnd + 1, model=model, optimizer=opt, generators={"gen": gen},
                                tensors={"delta": delta, "order": order}, meta={"history": history, "cursor": cursor})
            if on_epoch is not None:
                on_epoch(rnd + 1, delta)
        converged = bool(history) and history[-1]["train_acc"] > 1 - c.stop_error
        return self._poison(data, delta, history=history, converged=converged, rounds=len(history))
