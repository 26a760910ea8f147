"""Intra-class feature covariance, the quantity Theorem 5.1 bounds the MI by (paper Sec. 5.1, Fig. 3).

For features F with labels Y, Σ_Y is the covariance of F | Y. Theorem 5.1 bounds I(g(X); g(X')) by a
constant plus ½·E_Y log det Σ_Y, so :func:`class_covariance` reports that term, computed on
Σ_Y + λI with the absolute ridge λ = :data:`RIDGE` (feature units squared): it keeps dead ReLU units
(zero variance) from sending log det to −∞, at the price of counting each of them as log λ. The trace
E_Y tr Σ_Y (total intra-class variance, which needs no ridge) is reported next to it, with the number of
near-dead dimensions.
"""

from __future__ import annotations

import torch

RIDGE = 1e-4


def class_covariance(features: torch.Tensor, labels: torch.Tensor, ridge: float = RIDGE) -> dict:
    """½·E_Y log det(Σ_Y + ridge·I), E_Y tr Σ_Y and per-class values for (n, d) ``features``."""
    f = torch.as_tensor(features).double()
    labels = torch.as_tensor(labels)
    if f.ndim != 2:
        raise ValueError(f"features must be an (n, d) matrix, got shape {tuple(f.shape)}")
    if labels.shape != (f.shape[0],):
        raise ValueError(f"labels must have one entry per row of features ({f.shape[0]}), got {tuple(labels.shape)}")
    if not torch.isfinite(f).all():
        raise ValueError("features must be finite (found NaN or inf)")
    if not ridge > 0:
        raise ValueError(f"ridge must be positive, got {ridge}")
    eye = torch.eye(f.shape[1], dtype=f.dtype)
    half_logdet, trace, dead = [], [], []
    for c in torch.unique(labels).tolist():
        fc = f[labels == c]
        if fc.shape[0] < 2:
            raise ValueError(f"class {c} has {fc.shape[0]} sample(s); the covariance needs at least 2")
        cov = torch.cov(fc.T).reshape(f.shape[1], f.shape[1])
        half_logdet.append(0.5 * torch.linalg.slogdet(cov + ridge * eye).logabsdet.item())
        trace.append(cov.trace().item())
        dead.append(int((cov.diagonal() < ridge).sum()))
    k = len(trace)
    return {"half_logdet": sum(half_logdet) / k, "trace": sum(trace) / k, "dead_dims": sum(dead) / k,
            "half_logdet_per_class": half_logdet, "trace_per_class": trace, "dim": f.shape[1], "ridge": ridge}
