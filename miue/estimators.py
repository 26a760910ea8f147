"""Mutual-information estimators for the paper's MI between clean and poisoned features (Sec. 4, App. F).

* :func:`histogram_mi`: the plug-in 1-D histogram estimator (Moddemeijer, 1989; App. F.1, Eq. 13) with
  ``bins`` equal-width bins on each variable's range, vectorized over many columns (slices) at once.
* :func:`kde_mi` (Gaussian kernels, Silverman bandwidth) and :func:`ksg_mi` (Kraskov k-NN, k = 3): the
  paper's other 1-D estimators (App. F.1), vectorized over slices in chunks.
* :func:`sliced_mi`: sliced MI (Goldfeld & Greenewald, 2021; App. F, Eq. 17): average 1-D MI of random
  unit projections θᵀX, φᵀY, the directions for X and Y drawn independently (``shared=True`` uses one).
* :func:`class_conditional_mi`: I(g(X), g(X')) = E_Y I(g(X)|Y, g(X')|Y) (App. F), averaged over classes,
  reported next to the same estimator on a within-class shuffled (independent) pairing: at the sample
  sizes used here the plug-in histogram is strongly biased upward, and the shuffled value is that bias.
"""

from __future__ import annotations

import math

import torch
from tqdm.std import tqdm


def _check_pair(x: torch.Tensor, y: torch.Tensor, min_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    x = x[:, None] if x.ndim == 1 else x
    y = y[:, None] if y.ndim == 1 else y
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"expected (n,) or (n, d) arrays, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of samples, got {x.shape[0]} and {y.shape[0]}")
    if x.shape[0] < min_samples:
        raise ValueError(f"need at least {min_samples} samples, got {x.shape[0]}")
    x, y = x.double(), y.double()
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("x and y must be finite (found NaN or inf)")
    return x, y


def _bin_index(v: torch.Tensor, bins: int) -> torch.Tensor:
    lo, hi = v.min(0).values, v.max(0).values
    scale = torch.where(hi > lo, bins / (hi - lo), torch.zeros_like(hi))
    return ((v - lo) * scale).long().clamp_(0, bins - 1)


def histogram_mi(x: torch.Tensor, y: torch.Tensor, bins: int = 100, chunk: int = 256) -> torch.Tensor:
    """Plug-in histogram MI (nats) of each column pair (x[:, s], y[:, s]); returns a tensor of shape (S,).

    Each variable is cut into ``bins`` equal-width bins over its sample range (App. F.1, Eq. 13).
    """
    if not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    x, y = _check_pair(x, y, min_samples=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of columns (slices), got {x.shape[1]} and {y.shape[1]}")
    n, s_total = x.shape
    out = torch.empty(s_total, dtype=torch.float64)
    for s0 in range(0, s_total, chunk):
        ix, iy = _bin_index(x[:, s0:s0 + chunk], bins), _bin_index(y[:, s0:s0 + chunk], bins)
        s = ix.shape[1]
        offset = torch.arange(s)[None, :] * bins * bins
        counts = torch.bincount((ix * bins + iy + offset).flatten(), minlength=s * bins * bins)
        counts = counts.view(s, bins, bins).double()
        cx, cy = counts.sum(2, keepdim=True), counts.sum(1, keepdim=True)
        ratio = torch.where(counts > 0, counts * n / (cx * cy).clamp_min(1), torch.ones_like(counts))
        out[s0:s0 + s] = (counts * ratio.log()).sum((1, 2)) / n
    return out.float()


def ksg_mi(x: torch.Tensor, y: torch.Tensor, k: int = 3, chunk: int = 8) -> torch.Tensor:
    """k-NN MI (Kraskov, Stögbauer & Grassberger, 2004, algorithm 1; App. F.1, Eq. 15) per column pair.

    ε_i is the max-norm distance from (x_i, y_i) to its k-th neighbour; n_x(i), n_y(i) count points strictly
    closer than ε_i in each marginal; I = ψ(k) + ψ(N) − ⟨ψ(n_x + 1) + ψ(n_y + 1)⟩. Returns shape (S,).
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    x, y = _check_pair(x, y, min_samples=k + 2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of columns (slices), got {x.shape[1]} and {y.shape[1]}")
    n = x.shape[0]
    out = torch.empty(x.shape[1], dtype=torch.float64)
    for s0 in range(0, x.shape[1], chunk):
        xs, ys = x[:, s0:s0 + chunk].T.float(), y[:, s0:s0 + chunk].T.float()  # (s, n)
        dx = (xs[:, :, None] - xs[:, None, :]).abs()
        dy = (ys[:, :, None] - ys[:, None, :]).abs()
        joint = torch.maximum(dx, dy)
        joint.diagonal(dim1=1, dim2=2).fill_(float("inf"))
        eps = joint.topk(k, dim=2, largest=False).values[:, :, -1:]  # (s, n, 1)
        nx = (dx < eps).sum(2) - 1  # minus the point itself
        ny = (dy < eps).sum(2) - 1
        psi = torch.special.digamma
        val = psi(torch.tensor(float(k))) + psi(torch.tensor(float(n))) \
            - (psi(nx.double() + 1) + psi(ny.double() + 1)).mean(1)
        out[s0:s0 + xs.shape[0]] = val
    return out.float()


def kde_mi(x: torch.Tensor, y: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Kernel-density MI (App. F.1, Eq. 14) per column pair: Gaussian kernels, Silverman's rule-of-thumb
    bandwidth per variable (0.9·min(σ, IQR/1.34)·n^(−1/5)), resubstitution estimate
    mean_i log p̂(x_i, y_i) / (p̂(x_i) p̂(y_i)). Returns shape (S,)."""
    x, y = _check_pair(x, y, min_samples=3)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of columns (slices), got {x.shape[1]} and {y.shape[1]}")
    n = x.shape[0]

    def bandwidth(v):  # (n, s) → (s,)
        q = torch.quantile(v, torch.tensor([0.25, 0.75], dtype=v.dtype), dim=0)
        spread = torch.minimum(v.std(0), (q[1] - q[0]) / 1.34)
        spread = torch.where(spread > 0, spread, v.std(0).clamp_min(1e-12))
        return 0.9 * spread * n ** (-0.2)

    out = torch.empty(x.shape[1], dtype=torch.float64)
    for s0 in range(0, x.shape[1], chunk):
        xs, ys = x[:, s0:s0 + chunk], y[:, s0:s0 + chunk]
        hx, hy = bandwidth(xs), bandwidth(ys)
        kx = -0.5 * ((xs.T[:, :, None] - xs.T[:, None, :]) / hx[:, None, None]) ** 2  # (s, n, n) log-kernels
        ky = -0.5 * ((ys.T[:, :, None] - ys.T[:, None, :]) / hy[:, None, None]) ** 2
        log_px = torch.logsumexp(kx, 2)
        log_py = torch.logsumexp(ky, 2)
        log_pxy = torch.logsumexp(kx + ky, 2)
        # normalizing constants: p̂(x) = Σ exp(kx)/(n·hx·√2π), p̂(x,y) = Σ exp(kx+ky)/(n·hx·hy·2π); they cancel but n
        out[s0:s0 + xs.shape[1]] = (log_pxy - log_px - log_py).mean(1) + math.log(n)
    return out.float()


ESTIMATORS_1D = {"histogram": histogram_mi, "kde": kde_mi, "ksg": ksg_mi}


def random_directions(dim: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` directions uniform on the unit sphere S^{dim−1}, as columns of a (dim, n) matrix."""
    d = torch.randn(dim, n, generator=generator, dtype=torch.float64)
    return d / d.norm(dim=0, keepdim=True)


def _one_d(estimator: str, bins: int, k: int):
    if estimator == "histogram":
        return lambda a, b: histogram_mi(a, b, bins)
    if estimator == "kde":
        return kde_mi
    if estimator == "ksg":
        return lambda a, b: ksg_mi(a, b, k)
    raise ValueError(f"unknown 1-D estimator {estimator!r}; choose one of {', '.join(ESTIMATORS_1D)}")


def sliced_mi(x: torch.Tensor, y: torch.Tensor, n_slices: int = 2000, bins: int = 100, shared: bool = False,
              seed: int = 0, return_slices: bool = False, estimator: str = "histogram", k: int = 3):
    """Sliced MI (Eq. 17) with the histogram estimator per slice: mean over ``n_slices`` of I(θᵀX; φᵀY).

    θ and φ are drawn independently on their unit spheres (Eq. 17); ``shared=True`` uses φ = θ (needs
    equal dimensions). ``estimator`` picks the 1-D estimator: 'histogram' (default), 'kde' or 'ksg'.
    """
    x, y = _check_pair(x, y, min_samples=2)
    if shared and x.shape[1] != y.shape[1]:
        raise ValueError("shared directions need x and y of the same dimension")
    g = torch.Generator().manual_seed(seed)
    theta = random_directions(x.shape[1], n_slices, g)
    phi = theta if shared else random_directions(y.shape[1], n_slices, g)
    per_slice = _one_d(estimator, bins, k)(x @ theta, y @ phi)
    return (per_slice.mean().item(), per_slice) if return_slices else per_slice.mean().item()


def class_conditional_mi(fx: torch.Tensor, fy: torch.Tensor, labels: torch.Tensor, n_slices: int = 2000,
                         bins: int = 100, shared: bool = False, seed: int = 0, progress: bool = False,
                         estimator: str = "histogram", k: int = 3) -> dict:
    """The paper's feature MI (App. F): sliced MI per class, averaged over classes, with a shuffled baseline.

    Returns ``mi`` (the average), ``mi_shuffled`` (the same estimator on fy rows permuted within each
    class: an independent pairing, whose true MI is 0), ``mi_excess`` = mi − mi_shuffled, and per-class
    lists. The same slice directions are used for every class and for the shuffled pairing.
    """
    fx, fy = _check_pair(fx, fy, min_samples=2)
    labels = torch.as_tensor(labels)
    if labels.shape != (fx.shape[0],):
        raise ValueError("labels must have one entry per sample")
    g = torch.Generator().manual_seed(seed)
    theta = random_directions(fx.shape[1], n_slices, g)
    phi = theta if shared else random_directions(fy.shape[1], n_slices, g)
    classes = torch.unique(labels)
    one_d = _one_d(estimator, bins, k)
    per, per_shuf = [], []
    for c in tqdm(classes.tolist(), desc="sliced MI", disable=not progress, leave=False):
        m = labels == c
        if estimator == "histogram" and m.sum() < bins // 10 + 2:
            raise ValueError(f"class {c} has {int(m.sum())} samples: too few for {bins} bins")
        px, py = fx[m] @ theta, fy[m] @ phi
        perm = torch.randperm(px.shape[0], generator=g)
        per.append(one_d(px, py).mean().item())
        per_shuf.append(one_d(px, py[perm]).mean().item())
    mi, mi_shuf = sum(per) / len(per), sum(per_shuf) / len(per_shuf)
    return {"mi": mi, "mi_shuffled": mi_shuf, "mi_excess": mi - mi_shuf, "mi_per_class": per,
            "mi_shuffled_per_class": per_shuf, "n_per_class": int(len(labels) / len(classes)),
            "n_slices": n_slices, "bins": bins, "shared_directions": shared, "estimator": estimator}


def gaussian_mi(rho: float) -> float:
    """Closed-form MI (nats) of a bivariate Gaussian with correlation ρ: −½·log(1 − ρ²)."""
    return -0.5 * math.log(1 - rho * rho)
