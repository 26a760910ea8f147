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

import numpy as np

import torch
from .progress import tqdm


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


def histogram_mi(x: torch.Tensor, y: torch.Tensor, bins: int = 100, chunk: int = 256,
                 correction: str | None = None) -> torch.Tensor:
    """Plug-in histogram MI (nats) of each column pair (x[:, s], y[:, s]); returns a tensor of shape (S,).

    Each variable is cut into ``bins`` equal-width bins over its sample range (App. F.1, Eq. 13).
    ``correction="miller-madow"`` subtracts the first-order bias (B_xy − B_x − B_y + 1)/(2N), B counting
    the occupied bins (Miller, 1955; each entropy's plug-in bias is −(B − 1)/(2N)).
    """
    if not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    if correction not in (None, "miller-madow"):
        raise ValueError(f"correction must be None or 'miller-madow', got {correction!r}")
    x, y = _check_pair(x, y, min_samples=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of columns (slices), got {x.shape[1]} and {y.shape[1]}")
    n, s_total = x.shape
    if n < bins:
        raise ValueError(f"{n} samples are fewer than the {bins} bins: use fewer bins or more samples")
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
        if correction == "miller-madow":
            occupied = (counts > 0).sum((1, 2)) - (cx > 0).sum((1, 2)) - (cy > 0).sum((1, 2)) + 1
            out[s0:s0 + s] -= occupied.double() / (2 * n)
    return out.float()


def _kth_neighbour_distance(xs: torch.Tensor, ys: torch.Tensor, k: int) -> torch.Tensor:
    """Per slice (row) and point, the max-norm distance to its k-th nearest other point of (xs, ys), (s, n).

    A k-d tree per slice (scipy's cKDTree, p = ∞): exact, O(N log N) per slice, in C. It replaced a
    vectorized search among the nearest points in x order (116 s for the 2,000-slice, 10-class, 1,000-point
    KSG estimate of ``python -m miue.bench --mi-estimator ksg`` on 2 cores)."""
    from concurrent.futures import ThreadPoolExecutor

    from scipy.spatial import cKDTree
    xs_np, ys_np = xs.numpy(), ys.numpy()
    out = np.empty(xs_np.shape)

    def one(i):  # cKDTree releases the GIL: slices run on torch's threads in parallel
        pts = np.stack([xs_np[i], ys_np[i]], 1)
        out[i] = cKDTree(pts).query(pts, k=k + 1, p=np.inf)[0][:, -1]  # the point itself is the first, at 0

    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        list(pool.map(one, range(xs_np.shape[0])))
    return torch.from_numpy(out)


def _count_within(sorted_v: torch.Tensor, v: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Per row, the number of entries of ``sorted_v`` strictly within ε of ``v`` (the point itself included)."""
    lo = torch.searchsorted(sorted_v, v - eps, side="right")
    hi = torch.searchsorted(sorted_v, v + eps, side="left")
    return hi - lo


def ksg_mi(x: torch.Tensor, y: torch.Tensor, k: int = 3) -> torch.Tensor:
    """k-NN MI (Kraskov, Stögbauer & Grassberger, 2004, algorithm 1; App. F.1, Eq. 15) per column pair.

    ε_i is the max-norm distance from (x_i, y_i) to its k-th neighbour; n_x(i), n_y(i) count points strictly
    closer than ε_i in each marginal; I = ψ(k) + ψ(N) − ⟨ψ(n_x + 1) + ψ(n_y + 1)⟩. Returns shape (S,).

    Exact, in O(N log N) per slice instead of O(N²): ε_i from a k-d tree (:func:`_kth_neighbour_distance`),
    the marginal counts from binary search in the sorted marginals.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    x, y = _check_pair(x, y, min_samples=k + 2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of columns (slices), got {x.shape[1]} and {y.shape[1]}")
    n, s_total = x.shape
    chunk = max(1, int(4e6 // n))
    psi = torch.special.digamma
    out = torch.empty(s_total, dtype=torch.float64)
    for s0 in range(0, s_total, chunk):
        xs, ys = x[:, s0:s0 + chunk].T.contiguous(), y[:, s0:s0 + chunk].T.contiguous()  # (s, n), float64
        xs, order = xs.sort(dim=1)
        ys = ys.gather(1, order)
        eps = _kth_neighbour_distance(xs, ys, k)
        eps = eps * (1 - 1e-9)  # "strictly closer": the k-th neighbour sits exactly at ε in one marginal
        nx = (_count_within(xs, xs, eps) - 1).clamp(min=0)
        ny = (_count_within(ys.sort(dim=1).values, ys, eps) - 1).clamp(min=0)
        val = psi(torch.tensor(float(k))) + psi(torch.tensor(float(n))) \
            - (psi(nx.double() + 1) + psi(ny.double() + 1)).mean(1)
        out[s0:s0 + xs.shape[0]] = val
    return out.float()


def silverman_bandwidth(v: torch.Tensor) -> torch.Tensor:
    """Silverman's rule of thumb per column of (n, S) ``v``: 0.9·min(σ, IQR/1.34)·n^(−1/5)."""
    n = v.shape[0]
    q = torch.quantile(v, torch.tensor([0.25, 0.75], dtype=v.dtype), dim=0)
    spread = torch.minimum(v.std(0), (q[1] - q[0]) / 1.34)
    spread = torch.where(spread > 0, spread, v.std(0).clamp_min(1e-12))
    return 0.9 * spread * n ** (-0.2)


KDE_EVALUATIONS = ("exact", "binned-fft")


def kde_mi(x: torch.Tensor, y: torch.Tensor, evaluation: str = "exact", grid: int = 256) -> torch.Tensor:
    """Kernel-density MI (Moon et al., 1995; App. F.1, Eq. 14) per column pair: Gaussian kernels, Silverman's
    rule-of-thumb bandwidth per variable, resubstitution estimate mean_i log p̂(x_i, y_i) / (p̂(x_i) p̂(y_i)).

    ``evaluation="exact"``: O(N²) kernel sums per slice in float32 (each sum includes the point itself, so it
    is ≥ 1 before normalization and never underflows). ``"binned-fft"``: the same densities from KDEpy's
    FFTKDE (linear binning on a ``grid``-point equidistant grid per axis, convolution by FFT), read at the
    samples by linear interpolation: O(N + grid² log grid) per slice, for thousands of points per class.
    Returns shape (S,).
    """
    if evaluation not in KDE_EVALUATIONS:
        raise ValueError(f"kde evaluation must be one of {', '.join(KDE_EVALUATIONS)}, got {evaluation!r}")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 16:
        raise ValueError(f"kde grid must be an integer >= 16, got {grid!r}")
    x, y = _check_pair(x, y, min_samples=3)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of columns (slices), got {x.shape[1]} and {y.shape[1]}")
    n, s_total = x.shape
    a = (x / silverman_bandwidth(x)).T.float()  # (S, n), in bandwidth units
    b = (y / silverman_bandwidth(y)).T.float()
    if evaluation == "binned-fft":
        return torch.tensor([_binned_kde_mi(a[i].double().numpy(), b[i].double().numpy(), grid)
                             for i in range(s_total)], dtype=torch.float32)
    chunk = max(1, int(4e6 // (n * n)))
    out = torch.empty(s_total, dtype=torch.float64)
    for s0 in range(0, s_total, chunk):
        ac, bc = a[s0:s0 + chunk], b[s0:s0 + chunk]
        kx = torch.exp(-0.5 * (ac[:, :, None] - ac[:, None, :]).square_())
        ky = torch.exp(-0.5 * (bc[:, :, None] - bc[:, None, :]).square_())
        px, py = kx.sum(2), ky.sum(2)
        pxy = kx.mul_(ky).sum(2)
        # the kernels' normalizing constants cancel, leaving a factor n: p̂(x,y)/(p̂(x)p̂(y)) = n·Σk_xy/(Σk_x Σk_y)
        out[s0:s0 + ac.shape[0]] = (pxy.double().log() - px.double().log() - py.double().log()).mean(1) + math.log(n)
    return out.float()


def _binned_kde_mi(a, b, grid: int) -> float:
    """Resubstitution KDE MI of one slice from FFT-binned densities (a, b in bandwidth units: bandwidth 1)."""
    import numpy as np
    from KDEpy import FFTKDE
    a = a - a.mean()  # KDEpy's automatic grid spans the data plus the kernel's reach
    b = b - b.mean()
    pts, dens = FFTKDE(kernel="gaussian", bw=1.0).fit(np.column_stack([a, b])).evaluate((grid, grid))
    ga, gb = np.unique(pts[:, 0]), np.unique(pts[:, 1])
    dens = dens.reshape(len(ga), len(gb))  # KDEpy's grid: the first coordinate varies slowest
    ia = np.clip((a - ga[0]) / (ga[1] - ga[0]), 0, len(ga) - 1 - 1e-9)
    ib = np.clip((b - gb[0]) / (gb[1] - gb[0]), 0, len(gb) - 1 - 1e-9)
    i0, j0 = ia.astype(int), ib.astype(int)
    fa, fb = ia - i0, ib - j0
    pab = (dens[i0, j0] * (1 - fa) * (1 - fb) + dens[i0 + 1, j0] * fa * (1 - fb)
           + dens[i0, j0 + 1] * (1 - fa) * fb + dens[i0 + 1, j0 + 1] * fa * fb)
    marginals = []
    for v in (a, b):
        gv, dv = FFTKDE(kernel="gaussian", bw=1.0).fit(v).evaluate(grid)
        marginals.append(np.interp(v, gv, dv))
    tiny = np.finfo(float).tiny
    return float(np.mean(np.log(np.maximum(pab, tiny)) - np.log(np.maximum(marginals[0], tiny))
                         - np.log(np.maximum(marginals[1], tiny))))


MINE_SETTINGS = {"batch_size": 1000, "iterations": 500, "hidden": 32, "lr": 5e-3, "eval_permutations": 10}


def mine_mi(x: torch.Tensor, y: torch.Tensor, batch_size: int = MINE_SETTINGS["batch_size"],
            iterations: int = MINE_SETTINGS["iterations"], hidden: int = MINE_SETTINGS["hidden"],
            lr: float = MINE_SETTINGS["lr"], eval_permutations: int = MINE_SETTINGS["eval_permutations"],
            seed: int = 0) -> torch.Tensor:
    """MINE (Belghazi et al., 2018; App. F.1, Eq. 16) per column pair: the Donsker–Varadhan bound
    I ≥ E_P[T] − log E_{P_X⊗P_Y}[e^T], maximized over a 2→H→H→1 ReLU network T trained with Adam on
    batches of ``batch_size`` (the paper: 1000) for ``iterations`` (the paper: 500) steps. One network per
    slice, all slices trained at once as batched matrix products. The returned value is the bound on all
    N samples, its marginal term averaged over ``eval_permutations`` shuffles of y. Shape (S,).
    """
    for name, v in (("batch_size", batch_size), ("iterations", iterations), ("hidden", hidden),
                    ("eval_permutations", eval_permutations)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    x, y = _check_pair(x, y, min_samples=4)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of columns (slices), got {x.shape[1]} and {y.shape[1]}")
    n, s = x.shape
    g = torch.Generator().manual_seed(seed)
    z = torch.stack([(x - x.mean(0)) / x.std(0).clamp_min(1e-12), (y - y.mean(0)) / y.std(0).clamp_min(1e-12)],
                    dim=2).transpose(0, 1).float()  # (S, n, 2)

    def init(fan_in, *shape):
        return (torch.rand(*shape, generator=g) * 2 - 1).mul_(1 / math.sqrt(fan_in)).requires_grad_()

    params = [init(2, s, 2, hidden), init(2, s, 1, hidden), init(hidden, s, hidden, hidden),
              init(hidden, s, 1, hidden), init(hidden, s, hidden, 1), init(hidden, s, 1, 1)]
    w1, b1, w2, b2, w3, b3 = params

    def net(inp):  # (S, B, 2) → (S, B)
        h = torch.relu(torch.baddbmm(b1, inp, w1))
        h = torch.relu(torch.baddbmm(b2, h, w2))
        return torch.baddbmm(b3, h, w3).squeeze(2)

    def dv(t_joint, t_marg):  # (S,) Donsker–Varadhan bound per slice
        return t_joint.mean(1) - (torch.logsumexp(t_marg, 1) - math.log(t_marg.shape[1]))

    opt = torch.optim.Adam(params, lr=lr)
    bsz = min(batch_size, n)
    for _ in range(iterations):
        idx = torch.randperm(n, generator=g)[:bsz]
        perm = torch.randperm(n, generator=g)[:bsz]
        joint = z[:, idx]
        marg = torch.stack([z[:, idx, 0], z[:, perm, 1]], dim=2)
        loss = -dv(net(joint), net(marg)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        t_joint = net(z)
        bounds = [dv(t_joint, net(torch.stack([z[:, :, 0], z[:, torch.randperm(n, generator=g), 1]], dim=2)))
                  for _ in range(eval_permutations)]
    return torch.stack(bounds).mean(0)


ESTIMATORS_1D = {"histogram": histogram_mi, "kde": kde_mi, "ksg": ksg_mi, "mine": mine_mi}


# Settings introduced after MI records were first written: estimator → {setting: default}. A setting listed
# here is left out of a run's address while it holds its default (see estimator_address), so adding one never
# moves an existing record. Add every new estimator setting here, with the value that reproduces the old runs.
ADDED_SETTINGS: dict[str, dict] = {"histogram": {}, "kde": {"evaluation": "exact", "grid": 256}, "ksg": {},
                                   "mine": {}}


def estimator_address(estimator: str, settings: dict) -> dict:
    """``settings`` as hashed into a run's address: added settings at their default left out."""
    added = ADDED_SETTINGS.get(estimator, {})
    return {k: v for k, v in settings.items() if not (k in added and added[k] == v)}


def estimator_settings(estimator: str) -> dict:
    """The fixed settings of a 1-D estimator, as recorded in run configs."""
    settings = {"histogram": {"bins": 100, "binning": "equal-width on the sample range"},
                "kde": {"kernel": "gaussian", "bandwidth": "silverman", "estimate": "resubstitution",
                        "evaluation": "exact", "grid": 256},
                "ksg": {"k": 3, "algorithm": 1}, "mine": dict(MINE_SETTINGS, bound="donsker-varadhan")}
    if estimator not in settings:
        raise ValueError(f"unknown 1-D estimator {estimator!r}; choose one of {', '.join(ESTIMATORS_1D)}")
    return settings[estimator]


def random_directions(dim: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` directions uniform on the unit sphere S^{dim−1}, as columns of a (dim, n) matrix."""
    d = torch.randn(dim, n, generator=generator, dtype=torch.float64)
    return d / d.norm(dim=0, keepdim=True)


def _one_d(estimator: str, bins: int, k: int, mine: dict | None = None, kde: dict | None = None):
    if estimator == "histogram":
        return lambda a, b: histogram_mi(a, b, bins)
    if estimator == "kde":
        return lambda a, b: kde_mi(a, b, **(kde or {}))
    if estimator == "ksg":
        return lambda a, b: ksg_mi(a, b, k)
    if estimator == "mine":
        return lambda a, b: mine_mi(a, b, **(mine or {}))
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
                         estimator: str = "histogram", k: int = 3, mine: dict | None = None,
                         kde: dict | None = None) -> dict:
    """The paper's feature MI (App. F): sliced MI per class, averaged over classes, with a shuffled baseline.

    Returns ``mi`` (the average), ``mi_shuffled`` (the same estimator on fy rows permuted within each
    class: an independent pairing, whose true MI is 0), ``mi_excess`` = mi − mi_shuffled, and per-class
    lists. The same slice directions are used for every class and for the shuffled pairing. The spread over
    slices says whether fewer would do: ``mi_slice_sd`` (the standard deviation over slices of the class-averaged
    per-slice MI) and ``mi_se`` (the standard error of ``mi`` from drawing ``n_slices`` directions).
    """
    fx, fy = _check_pair(fx, fy, min_samples=2)
    labels = torch.as_tensor(labels)
    if labels.shape != (fx.shape[0],):
        raise ValueError("labels must have one entry per sample")
    g = torch.Generator().manual_seed(seed)
    theta = random_directions(fx.shape[1], n_slices, g)
    phi = theta if shared else random_directions(fy.shape[1], n_slices, g)
    classes = torch.unique(labels)
    one_d = _one_d(estimator, bins, k, mine, kde)
    per, per_shuf, slices, slices_shuf = [], [], [], []
    for c in tqdm(classes.tolist(), desc="sliced MI", disable=not progress, leave=False):
        m = labels == c
        if estimator == "histogram" and m.sum() < bins:
            raise ValueError(f"class {c} has {int(m.sum())} samples: too few for {bins} bins")
        px, py = fx[m] @ theta, fy[m] @ phi
        perm = torch.randperm(px.shape[0], generator=g)
        joint, shuffled = one_d(px, py).double(), one_d(px, py[perm]).double()
        per.append(joint.mean().item())
        per_shuf.append(shuffled.mean().item())
        slices.append(joint)
        slices_shuf.append(shuffled)
    mi, mi_shuf = sum(per) / len(per), sum(per_shuf) / len(per_shuf)
    # the classes share the directions: the spread is that of the class average of each slice
    by_slice, by_slice_shuf = torch.stack(slices).mean(0), torch.stack(slices_shuf).mean(0)
    sd = by_slice.std().item() if n_slices > 1 else 0.0
    sd_shuf = by_slice_shuf.std().item() if n_slices > 1 else 0.0
    return {"mi": mi, "mi_shuffled": mi_shuf, "mi_excess": mi - mi_shuf,
            "mi_slice_sd": sd, "mi_se": sd / math.sqrt(n_slices), "mi_shuffled_se": sd_shuf / math.sqrt(n_slices),
            "mi_per_class": per,
            "mi_shuffled_per_class": per_shuf, "n_per_class": int(len(labels) / len(classes)),
            "n_slices": n_slices, "bins": bins, "shared_directions": shared, "estimator": estimator}


def gaussian_mi(rho: float) -> float:
    """Closed-form MI (nats) of a bivariate Gaussian with correlation ρ: −½·log(1 − ρ²)."""
    return -0.5 * math.log(1 - rho * rho)
