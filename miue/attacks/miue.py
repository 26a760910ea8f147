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
from tqdm.std import tqdm

from ..augment import augment
from ..train import Recipe, as_float, autocast, prepare, resolve_device, sgd, train_steps
from .base import Attack, AttackConfig, project, register, source_model


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
    epochs: int = 100
    batch_size: int = 512
    pgd_steps: int = 10
    step_size: float = 0.2 / 255
    step_size_final: float = 0.0  # > 0: ramp the step linearly to this value at the last epoch (code)
    lr: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 1e-4
    min_lr: float = 1e-6
    tau: float = 0.1
    zeta: float = 0.1
    distance: str = "all"
    augment: bool = True  # App. E.3: crop + flip in generation, for θ and (differentiably) for δ
    model: str = "resnet18"
    width: float = 1.0


@register
class MIUE(Attack):
    name = "miue"
    Config = MIUEConfig

    def step_at(self, epoch: int) -> float:
        c = self.config
        if c.step_size_final <= 0 or c.epochs == 1:
            return c.step_size
        return c.step_size + (c.step_size_final - c.step_size) * epoch / (c.epochs - 1)

    def generate(self, data, *, device="cpu", progress=True, checkpoint=None, on_epoch=None):
        c = self.config
        device = resolve_device(device)
        model = prepare(source_model(c, data), device)
        recipe = Recipe(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, momentum=c.momentum,
                        weight_decay=c.weight_decay, min_lr=c.min_lr, augment=c.augment)
        opt = sgd(model, recipe)
        gen = torch.Generator().manual_seed(c.seed)
        x_all = data.images.to(device)
        y_all = data.labels.to(device)
        delta = torch.zeros(data.images.shape, device=device)
        start, history = 0, []
        if checkpoint is not None:
            restored = checkpoint.load(model=model, optimizer=opt, generators={"gen": gen}, device=device)
            if restored is not None:
                start, tensors, meta = restored
                delta, history = tensors["delta"], meta.get("history", [])
        bar = tqdm(range(start, c.epochs), desc="MI-UE", initial=start, total=c.epochs, disable=not progress,
                   leave=False, mininterval=1.0)
        for epoch in bar:
            for g in opt.param_groups:
                g["lr"] = recipe.lr_at(epoch)
            # source model optimization (Alg. 1, inner loop over θ): one pass of CE on x + δ
            poisoned = (as_float(x_all, device) + delta).clamp_(0, 1)
            order = torch.randperm(len(data), generator=gen)
            _, train_acc = train_steps(model, opt, poisoned, y_all, order, recipe, data.augmentation, gen, device)
            # poison optimization (Alg. 1, PGD on L_mi)
            model.eval()
            model.requires_grad_(False)
            alpha, losses = self.step_at(epoch), []
            order = torch.randperm(len(data), generator=gen)
            for s in range(0, len(order), c.batch_size):
                idx = order[s:s + c.batch_size].to(device)
                x, y, d = as_float(x_all[idx], device), y_all[idx], delta[idx].clone()
                for _ in range(c.pgd_steps):
                    d.requires_grad_(True)
                    inp = x + d
                    if c.augment:
                        inp = augment(inp, data.augmentation, gen)
                    with autocast(device):
                        z = model.features(inp)
                    loss = mi_loss(z, y, c.tau, c.zeta, c.distance)
                    grad, = torch.autograd.grad(loss, d)
                    d = project(d.detach() - alpha * grad.sign(), x, c.eps)
                losses.append(loss.item())
                delta[idx] = d.detach()
            model.requires_grad_(True)
            history.append({"epoch": epoch + 1, "source_train_acc": train_acc, "mi_loss": sum(losses) / len(losses),
                            "step_size": alpha, "lr": recipe.lr_at(epoch)})
            bar.set_postfix(src_acc=round(train_acc, 3), l_mi=round(history[-1]["mi_loss"], 3))
            if checkpoint is not None:
                checkpoint.save(epoch + 1, model=model, optimizer=opt, generators={"gen": gen},
                                tensors={"delta": delta}, meta={"history": history})
            if on_epoch is not None:
                on_epoch(epoch + 1, delta)
        return self._poison(data, delta, history=history)


@dataclass(frozen=True)
class MIUECodeConfig(MIUEConfig):
    lr: float = 0.1
    zeta: float = 0.0
    step_size_final: float = 0.4 / 255
    distance: str = "same-class"


@register
class MIUECode(MIUE):
    """MI-UE with the settings of the authors' public code (hala64/mi-ue), a named variant."""

    name = "miue-code"
    Config = MIUECodeConfig


