"""TUE: transferable unlearnable examples (Ren et al., ICLR 2023), the SimCLR variant.

Sample-wise δ minimising ssl_weight · NT-Xent(SimCLR views of x + δ) + csd_weight · CSD(δ, y), where the
class-wise separability discriminant is computed on the flattened perturbations alone,

    CSD = mean over class pairs i ≠ j of (s_i + s_j) / ‖c_i − c_j‖,

c_k the mean perturbation of class k in the batch and s_k the mean distance of its perturbations to c_k. As in
the official code (``get_linear_noise_csd_loss``) the spreads s_k carry no gradient, so the step separates
the class means. Each epoch trains the SimCLR backbone for ``train_steps`` batches on the perturbed views and
then sweeps every δ with ``pgd_steps`` signed steps. The SimCLR defaults (``demo.sh``) set ssl_weight = 0:
δ then does not depend on the backbone, and the backbone is not trained here (the same δ, without the cost).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..contrastive import nt_xent, simclr_augment
from ..models import frozen
from ..pgd import pgd
from ..settings import setting
from ..train import as_float, prepare
from .base import Attack, AttackConfig, register, source_model


@dataclass(frozen=True)
class TUEConfig(AttackConfig):
    epochs: int = setting(40, low=1)
    pgd_steps: int = setting(20, low=1)
    step_size: float = setting(0.8 / 255, low=0, low_open=True, high=1)
    train_steps: int = setting(20, low=1, doc="SimCLR batches between two sweeps over δ")
    batch_size: int = setting(512, low=2)
    tau: float = setting(0.5, low=0, low_open=True)
    ssl_weight: float = setting(0.0, low=0, doc="weight of the SimCLR loss in δ's objective (SimCLR demo: 0)")
    csd_weight: float = setting(0.1, low=0, doc="weight of the class-wise separability discriminant")
    lr: float = setting(0.5, low=0, low_open=True, doc="SimCLR backbone SGD learning rate")
    model: str = "resnet18"
    width: float = setting(1.0, low=0, low_open=True)


def csd_loss(delta: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class-wise separability discriminant of the flattened perturbations (spreads detached, as the code)."""
    d = delta.flatten(1).float()
    classes = labels.unique()
    if len(classes) < 2:
        return d.sum() * 0
    centers = torch.stack([d[labels == k].mean(0) for k in classes])
    spreads = torch.stack([(d[labels == k] - centers[i]).norm(dim=1).mean() for i, k in enumerate(classes)]).detach()
    dist = torch.cdist(centers, centers)
    off = ~torch.eye(len(classes), dtype=torch.bool, device=d.device)
    ratio = (spreads[:, None] + spreads[None, :]) / dist.clamp_min(1e-12)
    return ratio[off].mean()


@register
class TransferableUE(Attack):
    name = "tue"
    label = "TUE"
    Config = TUEConfig

    def start(self, data, device, checkpoint):
        c = self.config
        start = torch.rand(data.images.shape, generator=torch.Generator().manual_seed(c.seed))
        state = self.new_state(data, device, epochs=c.epochs, generators={"gen": torch.Generator().manual_seed(c.seed)},
                               tensors={"delta": ((start * 2 - 1) * c.eps).to(device)})
        if c.ssl_weight > 0:
            model = prepare(source_model(c, data), device)
            head = torch.nn.Sequential(torch.nn.Linear(model.feature_dim, model.feature_dim), torch.nn.ReLU(),
                                       torch.nn.Linear(model.feature_dim, 128)).to(device)
            both = torch.nn.ModuleDict({"model": model, "head": head})
            state.model = both
            state.optimizer = torch.optim.SGD(both.parameters(), lr=c.lr, momentum=0.9, weight_decay=1e-4)
        return state

    def _ssl(self, both, x, gen):
        return nt_xent(both["head"](both["model"].features(simclr_augment(x, gen))),
                       both["head"](both["model"].features(simclr_augment(x, gen))), self.config.tau)

    def epoch(self, state, data, epoch, device):
        c, gen = self.config, state.generators["gen"]
        x_all, y_all, delta = state.extra["x"], state.extra["y"], state.delta
        entry = {"epoch": epoch + 1}
        if c.ssl_weight > 0:  # the backbone: train_steps SimCLR batches on the perturbed images
            both = state.model
            both.train()
            for idx in torch.randperm(len(x_all), generator=gen)[:c.train_steps * c.batch_size].split(c.batch_size):
                if len(idx) < 2:
                    continue
                loss = self._ssl(both, (as_float(x_all[idx], device) + delta[idx]).clamp(0, 1), gen)
                state.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                state.optimizer.step()
            entry["ssl_loss"] = loss.item()
        losses = []
        with frozen(state.model) if c.ssl_weight > 0 else nullcontext():  # eval, input gradients only
            for idx in torch.randperm(len(x_all), generator=gen).split(c.batch_size):
                idx = idx.to(device)
                x, y = as_float(x_all[idx], device), y_all[idx]

                def loss_fn(inp, x=x, y=y):
                    loss = c.csd_weight * csd_loss(inp - x, y)
                    if c.ssl_weight > 0:
                        loss = loss + c.ssl_weight * self._ssl(state.model, inp, gen)
                    return loss

                d, loss = pgd(loss_fn, x, delta[idx].clone(), eps=c.eps, step_size=c.step_size, steps=c.pgd_steps)
                delta[idx] = d
                losses.append(float(loss))
        entry["loss"] = sum(losses) / len(losses)
        return entry

    def finish(self, state, data, device):
        return self._poison(data, state.delta, history=state.history)
