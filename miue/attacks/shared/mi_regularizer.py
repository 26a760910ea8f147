"""MI as a regulariser of other UEs (MI-UE Table 8): a poison that also minimises a MINE estimate of the mutual
information between the clean and the poisoned features, I(g(x); g(x + δ)).

A statistics network T (an MLP on the concatenated feature pair) is trained alongside the poison to maximise
the Donsker–Varadhan bound (Belghazi et al., 2018; the paper's App. F.1 estimator)

    I ≥ E_joint[T(g(x), g(x+δ))] − log E_{shuffled pairs}[exp T(g(x), g(x+δ'))],

and each PGD step on δ descends the attack's own loss plus ``weight`` times that bound. T is updated for
``steps`` Adam steps on each batch before the batch's PGD, on its current features. T lives in memory only: a
resumed generation starts it afresh (it re-fits within a few batches).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class StatisticsNetwork(nn.Module):
    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, a, b):
        return self.net(torch.cat([a, b], 1)).squeeze(1)


def donsker_varadhan(t: nn.Module, a: torch.Tensor, b: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """The DV lower bound on I(a; b) from joint pairs (a_i, b_i) and shuffled pairs (a_i, b_perm(i))."""
    marginal = t(a, b[perm])
    return t(a, b).mean() - (torch.logsumexp(marginal, 0) - math.log(len(marginal)))


class MIRegularizer:
    """Holds T; ``fit_batch`` trains it on a batch's feature pairs, ``penalty`` is the term PGD descends."""

    def __init__(self, dim: int, weight: float, device, steps: int = 5, lr: float = 1e-3, seed: int = 0):
        torch.manual_seed(seed)
        self.t = StatisticsNetwork(dim).to(device)
        self.opt = torch.optim.Adam(self.t.parameters(), lr=lr)
        self.weight, self.steps = weight, steps
        self.gen = torch.Generator().manual_seed(seed)
        self.last = float("nan")

    def _perm(self, n, device):
        return torch.randperm(n, generator=self.gen).to(device)

    def fit_batch(self, clean_features: torch.Tensor, poisoned_features: torch.Tensor) -> float:
        a, b = clean_features.detach().float(), poisoned_features.detach().float()
        with torch.enable_grad():
            for _ in range(self.steps):
                bound = donsker_varadhan(self.t, a, b, self._perm(len(a), a.device))
                self.opt.zero_grad(set_to_none=True)
                (-bound).backward()
                self.opt.step()
        self.last = float(bound.detach())
        return self.last

    def penalty(self, clean_features: torch.Tensor, poisoned_features: torch.Tensor) -> torch.Tensor:
        self.t.requires_grad_(False)
        try:
            return self.weight * donsker_varadhan(self.t, clean_features.detach().float(), poisoned_features.float(),
                                                  self._perm(len(clean_features), clean_features.device))
        finally:
            self.t.requires_grad_(True)
