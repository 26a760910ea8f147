"""The SimCLR contrastive loss (Chen et al., ICML 2020), NT-Xent, written once for every contrastive use.

For 2N views (z1[i] and z2[i] are two views of image i) with cosine similarities s and temperature τ,

    ℓ(i, j) = −log  exp(s_ij/τ) / Σ_{k≠i} exp(s_ik/τ),     L = (1/2N) Σ_i [ℓ(i, i⁺)],

where i⁺ is the other view of i. TUE's backbone and the SimCLR victims of MI-UE's Table 20 use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """NT-Xent over the 2N views ``z1``, ``z2`` (N×d each; the i-th rows are the positive pair)."""
    if z1.shape != z2.shape or z1.dim() != 2 or len(z1) < 2:
        raise ValueError(f"nt_xent takes two N×d batches of views with N >= 2, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    if not tau > 0:
        raise ValueError(f"the temperature must be positive, got {tau}")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    s = z @ z.T / tau
    s = s.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(s, positive)
