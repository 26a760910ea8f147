"""AR: autoregressive perturbations (Sandoval-Segura et al., NeurIPS 2022), no model, no optimization.

Each class owns a causal autoregressive process: per channel, a 3×3 filter b whose bottom-right tap (the
pixel being written) is 0 and whose other 8 taps sum to 1. An image's δ starts as N(0, 1) noise of size
(H + crop) × (W + crop); in raster order every pixel from row 2, column 2 on becomes Σ b ⊙ (its 3×3 window,
itself at the bottom-right); the first ``crop`` rows and columns are dropped and δ is scaled to ‖δ‖_p = ε
(l2, ε = 1, the paper's main setting; ``norm_p='linf'`` with ε = 8/255 is its l∞ variant). The recursion
runs for all images and channels at once, one pixel position at a time.

The coefficients come from the paper's greedy search: draw b ~ N(0, 1) (normalized as above), reject a
process whose trial generations diverge (raw l∞ norm above ``max_norm`` = 50, or NaN) or to which an accepted
process's matching filter (b with −1 at the written tap, so it sums to 0) responds weakly on a unit-l2 trial
(Σ ReLU(filter ∗ δ) below ``min_response``: the paper's 10 for ten 3-channel classes and 3 for a hundred;
single-channel images take 3 too, because one channel's responses are about half as large and 10 is
almost never met: measured on 4,096 draws at 28×28, no candidate reached 10 against nine accepted filters;
other sizes scale the threshold, see :func:`threshold`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..settings import setting
from .base import Attack, AttackConfig, register


@dataclass(frozen=True)
class ARConfig(AttackConfig):
    eps: float = setting(1.0, low=0, low_open=True, high=1e3, doc="budget in norm_p (l2: 1.0, linf: 8/255)")
    norm_p: str = setting("l2", choices=("l2", "linf"))
    crop: int = setting(4, low=0, doc="rows and columns dropped from the start of each generation")
    min_response: float = setting(0.0, low=0, doc="coefficient search threshold; 0: threshold() (10 for ten "
                                                  "3-channel 32×32 classes)")
    max_norm: float = setting(50.0, low=0, low_open=True, doc="coefficient search: a trial whose raw l∞ norm "
                                                              "exceeds this diverges")
    trials: int = setting(3, low=1, doc="coefficient search: generations per candidate")
    max_candidates: int = setting(1_000_000, low=1)


def normalized_coefficients(raw: torch.Tensor) -> torch.Tensor:
    """K×C×3×3 draws → filters with the written (bottom-right) tap 0 and the other taps summing to 1."""
    b = raw.clone()
    b[..., 2, 2] = 0
    return b / b.sum((-1, -2), keepdim=True)


def generate(coefficients: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Run each image's process (``coefficients``: N×C×3×3) over its start signal (N×C×H'×W'), raster order."""
    s = start.clone()
    rows, cols = s.shape[2] - 2, s.shape[3] - 2
    for i in range(rows):
        for j in range(cols):
            s[:, :, i + 2, j + 2] = (s[:, :, i:i + 3, j:j + 3] * coefficients).sum((-1, -2))
    return s


def response(filters: torch.Tensor, signals: torch.Tensor) -> torch.Tensor:
    """Σ ReLU(filter ∗ signal) for every filter (F×C×3×3) and signal (S×C×H×W): an S×F matrix."""
    out = F.conv2d(signals, filters)  # S, F, H-2, W-2
    return F.relu(out).sum((-1, -2))


def threshold(num_classes: int, channels: int, size: tuple) -> float:
    """The search's default response threshold: the paper's 10 (ten 3-channel 32×32 classes) or 3 (a hundred,
    or one channel), scaled by √(positions / 900) for other image sizes (a unit-l2 signal's response grows
    about as the square root of the filter positions; 8×8 digits would otherwise never pass)."""
    base = 10.0 if num_classes <= 10 and channels >= 3 else 3.0
    positions = (size[0] - 2) * (size[1] - 2)
    return base * (positions / 900) ** 0.5


def search(num_classes: int, channels: int, size: tuple, cfg: ARConfig, generator: torch.Generator,
           batch: int = 256) -> torch.Tensor:
    """The greedy coefficient search: ``num_classes`` processes (num_classes×C×3×3), candidates in batches."""
    need = cfg.min_response or threshold(num_classes, channels, size)
    h, w = size[0] + cfg.crop, size[1] + cfg.crop
    accepted: list[torch.Tensor] = []
    tried = 0
    while len(accepted) < num_classes:
        if tried >= cfg.max_candidates:
            raise RuntimeError(f"AR coefficient search found {len(accepted)} of {num_classes} processes in "
                               f"{tried} candidates; lower min_response or raise max_candidates")
        b = normalized_coefficients(torch.randn(batch, channels, 3, 3, generator=generator))
        starts = torch.randn(batch * cfg.trials, channels, h, w, generator=generator)
        gen = generate(b.repeat_interleave(cfg.trials, 0), starts)[:, :, cfg.crop:, cfg.crop:]
        norms = gen.flatten(1).abs().amax(1).view(batch, cfg.trials)
        ok = torch.isfinite(norms).all(1) & (norms <= cfg.max_norm).all(1)
        unit = gen / gen.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        last = unit.view(batch, cfg.trials, channels, *unit.shape[2:])[:, -1]  # the search's last trial
        for k in range(batch):
            tried += 1
            if not ok[k]:
                continue
            if accepted:
                filters = torch.stack(accepted).clone()
                filters[..., 2, 2] = -1
                if response(filters, last[k:k + 1]).min().item() < need:
                    continue
            accepted.append(b[k])
            if len(accepted) == num_classes:
                break
    return torch.stack(accepted)


@register
class Autoregressive(Attack):
    name = "ar"
    label = "AR"
    norm = "l2"
    Config = ARConfig

    @classmethod
    def norm_of(cls, config) -> str:
        if config.norm_p == "linf" and config.eps > 16 / 255:
            raise ValueError(f"AR with norm_p='linf' takes an l∞ budget (the paper's is eps=8/255), got eps="
                             f"{config.eps:g}, the l2 default; pass eps too")
        return config.norm_p

    def finish(self, state, data, device):
        c = self.config
        g = torch.Generator().manual_seed(c.seed)
        channels, h, w = data.shape
        processes = search(data.num_classes, channels, (h, w), c, g)
        starts = torch.randn(len(data), channels, h + c.crop, w + c.crop, generator=g)
        delta = generate(processes[data.labels], starts)[:, :, c.crop:, c.crop:]
        flat = delta.flatten(1)
        size = flat.norm(dim=1) if c.norm_p == "l2" else flat.abs().amax(1)
        delta = delta * (c.eps / size.clamp_min(1e-12)).view(-1, 1, 1, 1)
        return self._poison(data, delta, processes=processes.tolist())
