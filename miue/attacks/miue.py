"""MI-UE: Mutual Information Unlearnable Examples (Algorithm 1, loss Eq. 2, min-min Eq. 3).

Each epoch trains the source model θ for one pass of cross-entropy on the augmented poisoned data, then
runs ``pgd_steps`` signed steps on δ per batch to minimize L_mi (Eq. 2), projecting to the ε-ball:

    L_mi = log(1 + Σ_{k: y_k≠y_j} exp(s_jk/τ) / Σ_{k: y_k=y_j} exp(s_jk/τ)) + ζ·log(1 + Σ_k ‖g_j − g_k‖₂)

with s_jk the cosine similarity of poisoned features g(x+δ). The paper's settings (App. E.4) are the
defaults of ``miue``; ``miue-code`` holds the authors' public code's settings (source lr 0.1, ζ = 0,
PGD step ramped 0.2→0.4/255, distance over same-class pairs divided by the feature dimension).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..pgd import pgd
from ..settings import setting
from ..train import Recipe, as_float, autocast, prepare, sgd, train_steps
from .base import Attack, AttackConfig, AttackState, register, source_model


def mi_loss(z: torch.Tensor, y: torch.Tensor, tau: float = 0.1, zeta: float = 0.1,
            distance: str = "all") -> torch.Tensor:
    """Eq. 2 averaged over the batch. ``distance``: 'all' (paper) or 'same-class' (code: same-class pairs / d)."""
    zn = F.normalize(z.float(), dim=1)
    s = zn @ zn.T / tau
    same = y[:, None] == y[None, :]
    neg_inf = torch.finfo(s.dtype).min
    pos = torch.logsumexp(s.masked_fill(~same, neg_inf), dim=1)
    neg = torch.logsumexp(s.masked_fill(same, neg_inf), dim=1)
    loss = F.softplus(neg - pos)  # log(1 + Σneg/Σpos), stable
    if zeta:
        zf = z.float()
        sq = (zf * zf).sum(1)
        d2 = (sq[:, None] + sq[None, :] - 2 * zf @ zf.T).clamp_min(1e-12)
        eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
        dist = torch.where(eye, torch.zeros_like(d2), d2.sqrt())
        if distance == "all":
            total = dist.sum(1)
        elif distance == "same-class":
            total = (dist * same).sum(1) / z.shape[1]
        else:
            raise ValueError(f"distance must be 'all' or 'same-class', got {distance!r}")
        loss = loss + zeta * torch.log1p(total)
    return loss.mean()


@dataclass(frozen=True)
class MIUEConfig(AttackConfig):
    epochs: int = setting(100, low=1, doc="generation epochs (Alg. 1 outer loop)")
    batch_size: int = setting(512, low=2)
    pgd_steps: int = setting(10, low=1)
    step_size: float = setting(0.2 / 255, low=0, low_open=True, high=1)
    step_size_final: float = setting(0.0, low=0, high=1,
                                     doc="> 0: ramp the step linearly to this value at the last epoch (code)")
    lr: float = setting(0.5, low=0, low_open=True)
    momentum: float = setting(0.9, low=0, high=1, high_open=True)
    weight_decay: float = setting(1e-4, low=0)
    min_lr: float = setting(1e-6, low=0)
    tau: float = setting(0.1, low=0, low_open=True, doc="temperature τ of Eq. 2")
    zeta: float = setting(0.1, low=0, doc="balancing strength ζ of Eq. 2")
    distance: str = setting("all", choices=("all", "same-class"))
    augment: bool = True  # App. E.3: crop + flip in generation, for θ and (differentiably) for δ
    model: str = "resnet18"
    width: float = setting(1.0, low=0, low_open=True)


@register
class MIUE(Attack):
    name = "miue"
    label = "MI-UE"
    Config = MIUEConfig

    def step_at(self, epoch: int) -> float:
        c = self.config
        if c.step_size_final <= 0 or c.epochs == 1:
            return c.step_size
        return c.step_size + (c.step_size_final - c.step_size) * epoch / (c.epochs - 1)

    def start(self, data, device, checkpoint):
        c = self.config
        model = prepare(source_model(c, data), device)
        recipe = Recipe(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, momentum=c.momentum,
                        weight_decay=c.weight_decay, min_lr=c.min_lr, augment=c.augment)
        return AttackState(epochs=c.epochs, model=model, optimizer=sgd(model, recipe),
                           generators={"gen": torch.Generator().manual_seed(c.seed)},
                           tensors={"delta": torch.zeros(data.images.shape, device=device)},
                           extra={"recipe": recipe, "x": data.images.to(device), "y": data.labels.to(device)})

    def epoch(self, state, data, epoch, device):
        c, gen, recipe, model = self.config, state.generators["gen"], state.extra["recipe"], state.model
        x_all, y_all, delta = state.extra["x"], state.extra["y"], state.delta
        for g in state.optimizer.param_groups:
            g["lr"] = recipe.lr_at(epoch)
        # source model optimization (Alg. 1, inner loop over θ): one pass of CE on x + δ
        poisoned = (as_float(x_all, device) + delta).clamp_(0, 1)
        order = torch.randperm(len(data), generator=gen)
        _, train_acc = train_steps(model, state.optimizer, poisoned, y_all, order, recipe, data.augmentation, gen,
                                   device)
        # poison optimization (Alg. 1, PGD on L_mi)
        model.eval()
        model.requires_grad_(False)
        alpha, losses = self.step_at(epoch), []

        def loss_fn(inp, y):
            with autocast(device):
                z = model.features(inp)
            return mi_loss(z, y, c.tau, c.zeta, c.distance)

        order = torch.randperm(len(data), generator=gen)
        for s in range(0, len(order), c.batch_size):
            idx = order[s:s + c.batch_size].to(device)
            x, y = as_float(x_all[idx], device), y_all[idx]
            d, loss = pgd(lambda inp, y=y: loss_fn(inp, y), x, delta[idx].clone(), eps=c.eps, step_size=alpha,
                          steps=c.pgd_steps, augmentation=data.augmentation if c.augment else None, generator=gen)
            losses.append(loss.item())
            delta[idx] = d
        model.requires_grad_(True)
        return {"epoch": epoch + 1, "source_train_acc": train_acc, "mi_loss": sum(losses) / len(losses),
                "step_size": alpha, "lr": recipe.lr_at(epoch)}


@dataclass(frozen=True)
class MIUECodeConfig(MIUEConfig):
    lr: float = setting(0.1, low=0, low_open=True)
    zeta: float = setting(0.0, low=0)
    step_size_final: float = setting(0.4 / 255, low=0, high=1)
    distance: str = setting("same-class", choices=("all", "same-class"))


@register
class MIUECode(MIUE):
    """MI-UE with the settings of the authors' public code (hala64/mi-ue), a named variant."""

    name = "miue-code"
    label = "MI-UE (code)"
    Config = MIUECodeConfig


