"""D-VAE (Yu et al., ICML 2024, "Purify unlearnable examples via rate-constrained variational autoencoders")
as a fitted data-side defense.

A VAE with class-wise embeddings and two decoder heads, a reconstruction x̂ and a perturbation estimate p̂,
trained on the published set with

    MSE(x̂, x) + MSE(clip(x̂ + p̂), x) + w · max(KL, KL_target)  [+ max(MSE(p̂, 0), 0.002) after epoch 10]

where the KL floor is the rate constraint (w = 0.01 when KL_target ≥ 1, else 0.5; the official code's).
Stage 1 (KL_target 1.0) gives x₁ = clip(x − p̂); stage 2 trains a fresh VAE (KL_target 3.0) on x₁ and the
purified set is that VAE's reconstruction of clip(x₁ − p̂₂). Adam lr 5e-3 with cosine decay, batch 128, 60
epochs per stage. The perturbation head is bounded, p̂ = 16/255 · tanh(·) (``bound``): unbounded, it grew
to a mean |p̂| above 1 here before the penalty starts at epoch 10, and clip(x − p̂) erased the images (how the
official head is bounded is unverified). The official model is a ResNet-18 VAE with a 256-dimensional latent; this one is a small
convolutional VAE with a spatial latent (4 channels at 1/4 resolution: 256 numbers on 32-pixel images, 196 on
28-pixel ones). The KL is averaged over latent elements (how the official code normalises it is unverified).
The state is both stages' weights, so the purified set can be rebuilt from the artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..settings import setting
from .base import Defense, DefenseConfig, register


class DisentanglingVAE(nn.Module):
    """Encoder → spatial latent (+ a learned class embedding) → two heads: x̂ (sigmoid) and p̂."""

    def __init__(self, channels: int, size: int, num_classes: int, width: int = 32, latent: int = 4,
                 bound: float = 16 / 255):
        super().__init__()
        self.bound = bound
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * latent, 1))
        side = (size + 3) // 4
        self.embedding = nn.Parameter(torch.zeros(num_classes, latent, side, side))
        self.decoder = nn.Sequential(
            nn.Conv2d(latent, 2 * width, 3, 1, 1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.to_image = nn.Conv2d(width, channels, 3, 1, 1)
        self.to_perturbation = nn.Conv2d(width, channels, 3, 1, 1)
        self.size = size

    def forward(self, x, y, sample: bool = True):
        mu, logvar = self.encoder(x).chunk(2, 1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        h = self.decoder(z + self.embedding[y])[..., :self.size, :self.size]
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).mean()
        return torch.sigmoid(self.to_image(h)), self.bound * torch.tanh(self.to_perturbation(h)), kl


@dataclass(frozen=True)
class DVAEConfig(DefenseConfig):
    epochs: int = setting(60, low=1, doc="epochs of each stage's VAE (official: 60)")
    batch_size: int = setting(128, low=1)
    lr: float = setting(5e-3, low=0, low_open=True, doc="Adam learning rate, cosine-decayed")
    kl_targets: Tuple[float, ...] = setting((1.0, 3.0), doc="the rate constraint (KL floor) of stage 1 and stage 2")
    width: int = setting(32, low=1, doc="channels of the VAE's first layer")
    bound: float = setting(16 / 255, low=0, low_open=True, high=1,
                           doc="p̂ = bound · tanh(·): the perturbation head's l∞ range (twice the 8/255 budget)")


def _as_float(images):
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


@register
class DVAE(Defense):
    name = "d-vae"
    label = "D-VAE"
    kind = "data"
    fitted = True
    Config = DVAEConfig

    def _vae(self, images, num_classes):
        return DisentanglingVAE(images.shape[1], images.shape[-1], num_classes, self.config.width,
                                bound=self.config.bound)

    def _train_stage(self, x, y, num_classes, kl_target, device, generator):
        c = self.config
        vae = self._vae(x, num_classes).to(device)
        opt = torch.optim.Adam(vae.parameters(), lr=c.lr)
        steps = c.epochs * -(-len(x) // c.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        w = 0.01 if kl_target >= 1 else 0.5
        vae.train()
        for epoch in range(c.epochs):
            for idx in torch.randperm(len(x), generator=generator).split(c.batch_size):
                xb, yb = x[idx].to(device), y[idx].to(device)
                rec, pert, kl = vae(xb, yb)
                loss = F.mse_loss(rec, xb) + F.mse_loss((rec + pert).clamp(0, 1), xb) + w * torch.clamp(kl, min=kl_target)
                if epoch >= 10:
                    loss = loss + torch.clamp(pert.pow(2).mean(), min=0.002)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        return vae.eval()

    @staticmethod
    @torch.no_grad()
    def _apply(vae, x, y, device, batch_size=500):
        recs, perts = [], []
        for idx in torch.arange(len(x)).split(batch_size):
            rec, pert, _ = vae(x[idx].to(device), y[idx].to(device), sample=False)
            recs.append(rec.cpu())
            perts.append(pert.cpu())
        return torch.cat(recs), torch.cat(perts)

    def fit(self, images, labels, device):
        if len(self.config.kl_targets) != 2:
            raise ValueError(f"D-VAE has two stages: kl_targets needs two values, got {self.config.kl_targets!r}")
        g = torch.Generator().manual_seed(self.config.seed)
        num_classes = int(labels.max()) + 1
        x = _as_float(images)
        state = {"labels": labels.clone()}
        for stage, target in enumerate(self.config.kl_targets, start=1):
            vae = self._train_stage(x, labels, num_classes, target, device, g)
            state.update({f"stage{stage}.{k}": v.detach().cpu() for k, v in vae.state_dict().items()})
            if stage == 1:
                _, pert = self._apply(vae, x, labels, device)
                x = (x - pert).clamp(0, 1)
        return state

    def purify(self, images, state=None):
        if state is None or "labels" not in state:
            raise ValueError("D-VAE purifies with its two fitted VAEs: pass the state fit returned")
        labels = state["labels"]
        if len(labels) != len(images):
            raise ValueError(f"this D-VAE was fitted on {len(labels)} images, not these {len(images)}")
        num_classes = int(labels.max()) + 1
        x = _as_float(images)
        vaes = []
        for stage in (1, 2):
            vae = self._vae(images, num_classes)
            vae.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(f"stage{stage}.")})
            vaes.append(vae.eval())
        cpu = torch.device("cpu")
        _, p1 = self._apply(vaes[0], x, labels, cpu)
        x1 = (x - p1).clamp(0, 1)
        _, p2 = self._apply(vaes[1], x1, labels, cpu)
        rec, _ = self._apply(vaes[1], (x1 - p2).clamp(0, 1), labels, cpu)
        return (rec * 255).round().clamp(0, 255).to(torch.uint8)
