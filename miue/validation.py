"""Validation of the MI estimators where the truth is known (the "Measuring mutual information" chapter).

Correlated Gaussians Y = ρX + √(1−ρ²)Z with X, Z ~ N(0, I_d) have I(X_i; Y_i) = −½ log(1 − ρ²) per
coordinate, and every slice has a closed form: θᵀX and φᵀY are jointly Gaussian with correlation ρ·θᵀφ,
so I(θᵀX; φᵀY) = −½ log(1 − ρ²(θᵀφ)²) (:func:`slice_truth`). With one shared direction (φ = θ) every
slice carries the full −½ log(1 − ρ²); with Eq. 17's independent directions θᵀφ is one coordinate of a
uniform unit vector, of order 1/√d, and the sliced MI is nearly zero in high dimension
(:func:`expected_sliced_mi`).

Each study is a run with a frozen config (kind ``validation``): ``study(name, sizes)`` reads its record
or computes it. ``SIZES`` gives the sample sizes per profile.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from .progress import tqdm

from . import estimators as est
from .profiles import PROFILES
from .runs import RunStore

ESTIMATORS = ("histogram", "kde", "ksg", "mine")

# Study sizes per profile: one profile system, the sizes live in each Profile's ``mi_study``.
SIZES = {name: p.mi_study for name, p in PROFILES.items()}


def correlated_gaussians(n: int, d: int, rho: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, Y), each (n, d): X, Z ~ N(0, I_d), Y = ρX + √(1−ρ²)Z (coordinate-wise correlation ρ)."""
    if not -1 < rho < 1:
        raise ValueError(f"rho must be in (-1, 1), got {rho}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, rho * x + math.sqrt(1 - rho * rho) * torch.randn(n, d, generator=g, dtype=torch.float64)


def slice_truth(rho: float, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Exact I(θᵀX; φᵀY) per slice (columns of the (d, S) direction matrices) for :func:`correlated_gaussians`."""
    c = rho * (theta * phi).sum(0)
    return -0.5 * torch.log1p(-c * c)


def expected_sliced_mi(rho: float, d: int, shared: bool) -> float:
    """E over directions of the slice MI: −½ log(1 − ρ²) when shared; for independent uniform directions,
    ∫ −½ log(1 − ρ²t²) p_d(t) dt with p_d(t) ∝ (1 − t²)^((d−3)/2), the density of θᵀφ on S^(d−1)."""
    if shared or d == 1:
        return est.gaussian_mi(rho)
    from scipy import integrate, special
    log_norm = special.gammaln(d / 2) - 0.5 * math.log(math.pi) - special.gammaln((d - 1) / 2)
    f = lambda t: -0.5 * math.log1p(-rho * rho * t * t) * math.exp(log_norm + (d - 3) / 2 * math.log1p(-t * t))
    return integrate.quad(f, -1, 1, limit=200)[0]


def _one_d(name: str, bins: int = 100, mine: dict | None = None):
    return est._one_d(name, bins, 3, mine)


def accuracy_study(ns, rhos, repeats: int, mine_repeats: int, bins: int = 100, mine: dict | None = None,
                   progress: bool = False) -> list[dict]:
    """Every 1-D estimator on ``repeats`` independent samples of size n at correlation ρ: mean, spread and
    error against −½ log(1 − ρ²). ρ = 0 gives each estimator's bias at zero truth."""
    rows = []
    jobs = [(n, rho, name) for n in ns for rho in rhos for name in ESTIMATORS]
    for n, rho, name in tqdm(jobs, desc="accuracy", disable=not progress, leave=False):
        if name == "histogram" and n < bins:
            continue
        reps = mine_repeats if name == "mine" else repeats
        x, y = correlated_gaussians(n, reps, rho, seed=int(1000 * rho) + n)
        t0 = time.perf_counter()
        v = _one_d(name, bins, mine)(x, y).double()
        rows.append({"estimator": name, "n": n, "rho": rho, "truth": est.gaussian_mi(rho), "mean": v.mean().item(),
                     "std": v.std().item() if reps > 1 else 0.0, "repeats": reps,
                     "seconds_per_estimate": (time.perf_counter() - t0) / reps})
    return rows


def sliced_study(dims, rho: float, n: int, slices: int, mine_slices: int, bins: int = 100,
                 mine: dict | None = None, progress: bool = False) -> list[dict]:
    """Sliced MI of d-dimensional correlated Gaussians with shared and independent directions: each
    estimator's average over the slices next to the exact average over the same slices."""
    rows = []
    jobs = [(d, shared, name) for d in dims for shared in (True, False) for name in ESTIMATORS]
    for d, shared, name in tqdm(jobs, desc="sliced", disable=not progress, leave=False):
        x, y = correlated_gaussians(n, d, rho, seed=d)
        s = mine_slices if name == "mine" else slices
        g = torch.Generator().manual_seed(d + 7)
        theta = est.random_directions(d, s, g)
        phi = theta if shared else est.random_directions(d, s, g)
        v = _one_d(name, bins, mine)(x @ theta, y @ phi).double()
        truth = slice_truth(rho, theta, phi)
        rows.append({"estimator": name, "d": d, "directions": "shared" if shared else "independent (Eq. 17)",
                     "slices": s, "estimate": v.mean().item(), "truth_same_slices": truth.mean().item(),
                     "truth_expected": expected_sliced_mi(rho, d, shared)})
    return rows


def _marginal(kind: str, n: int, cols: int, g: torch.Generator) -> torch.Tensor:
    z = torch.randn(n, cols, generator=g, dtype=torch.float64)
    if kind == "gaussian":
        return z
    if kind == "laplace":
        return torch.log(torch.rand(n, cols, generator=g, dtype=torch.float64)) * torch.sign(z)  # ±Exp(1)
    if kind == "lognormal":
        return torch.exp(z)
    if kind == "relu":
        return z.clamp_min(0)
    raise ValueError(kind)


def paper_scale_study(n: int, slices: int, bins: int = 100, dims=(512,), rhos=(0.0, 0.5, 0.9, 0.99),
                      progress: bool = False) -> dict:
    """The paper's histogram setting (App. F: 100 bins; CIFAR-10 has 5,000 training images per class):
    the plug-in value at zero truth for several marginal shapes, with the Miller–Madow correction and the
    permutation (shuffled) baseline; and Eq. 17 sliced MI of correlated Gaussian features at d = 512."""
    g = torch.Generator().manual_seed(0)
    zero = []
    for kind in tqdm(("gaussian", "laplace", "lognormal", "relu"), desc="zero truth", disable=not progress,
                     leave=False):
        x, y = _marginal(kind, n, slices, g), _marginal(kind, n, slices, g)
        raw = est.histogram_mi(x, y, bins).double()
        mm = est.histogram_mi(x, y, bins, correction="miller-madow").double()
        occupied = ((est._bin_index(x, bins)[:, :, None] == torch.arange(bins)).any(0).sum(1)).double()
        zero.append({"marginal": kind, "plug_in": raw.mean().item(), "miller_madow": mm.mean().item(),
                     "occupied_bins": occupied.mean().item(), "rule_of_thumb": (bins - 1) ** 2 / (2 * n)})
    sliced = []
    for d in dims:
        for rho in rhos:
            x, y = correlated_gaussians(n, d, rho, seed=17)
            th = est.random_directions(d, slices, g)
            ph = est.random_directions(d, slices, g)
            raw = est.histogram_mi(x @ th, y @ ph, bins).double().mean().item()
            shuf = est.histogram_mi(x @ th, y[torch.randperm(n, generator=g)] @ ph, bins).double().mean().item()
            shared = est.histogram_mi(x @ th, y @ th, bins).double().mean().item()
            sliced.append({"d": d, "rho": rho, "per_coordinate_mi": est.gaussian_mi(rho),
                           "truth_independent": slice_truth(rho, th, ph).mean().item(), "raw_independent": raw,
                           "shuffled_independent": shuf, "raw_shared": shared,
                           "truth_shared": est.gaussian_mi(rho)})
    return {"zero_truth": zero, "sliced": sliced, "n": n, "bins": bins, "slices": slices}


def timing_study(slices: dict, classes: int, n_per_class: int = 1000, dim: int = 512, target_slices: int = 2000,
                 mine: dict | None = None, progress: bool = False) -> dict:
    """Wall time of a class-conditional sliced-MI estimate (``classes`` × ``n_per_class`` points, ``dim``-d
    features, shuffled baseline included) per 1-D estimator, measured with ``slices[name]`` slices and
    scaled linearly to ``target_slices`` and 10 classes (the estimate is linear in both); plus the k-NN
    estimator against scikit-learn's ``mutual_info_regression`` (k = 3) on the same 1-D data."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    fx = torch.randn(classes * n_per_class, dim, generator=g)
    fy = 0.8 * fx + 0.6 * torch.randn(classes * n_per_class, dim, generator=g)
    rows = []
    for name in tqdm(ESTIMATORS, desc="timing", disable=not progress, leave=False):
        t0 = time.perf_counter()
        est.class_conditional_mi(fx, fy, labels, n_slices=slices[name], estimator=name, seed=0, mine=mine)
        sec = time.perf_counter() - t0
        rows.append({"estimator": name, "slices_measured": slices[name], "classes_measured": classes,
                     "seconds_measured": sec, "seconds_2000_slices_10_classes": sec * target_slices / slices[name]
                     * 10 / classes})
    from sklearn.feature_selection import mutual_info_regression
    x, y = correlated_gaussians(n_per_class, 1, 0.8, seed=3)
    t0 = time.perf_counter()
    ours = est.ksg_mi(x, y).item()
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    sk = float(mutual_info_regression(x.numpy(), y[:, 0].numpy(), n_neighbors=3, random_state=0)[0])
    t_sk = time.perf_counter() - t0
    cols = slices["ksg"]
    xs, ys = correlated_gaussians(n_per_class, cols, 0.8, seed=4)
    t0 = time.perf_counter()
    est.ksg_mi(xs, ys)
    t_batch = (time.perf_counter() - t0) / cols
    t0 = time.perf_counter()
    for i in range(min(cols, 50)):
        mutual_info_regression(xs[:, i:i + 1].numpy(), ys[:, i].numpy(), n_neighbors=3, random_state=0)
    t_sk_each = (time.perf_counter() - t0) / min(cols, 50)
    return {"estimators": rows, "ksg_vs_sklearn": {
        "n": n_per_class, "rho": 0.8, "truth": est.gaussian_mi(0.8), "ours": ours, "sklearn": sk,
        "ours_seconds_single": t_ours, "sklearn_seconds_single": t_sk, "ours_seconds_per_slice_batched": t_batch,
        "sklearn_seconds_per_slice": t_sk_each}, "n_per_class": n_per_class, "dim": dim,
        "torch_threads": torch.get_num_threads()}


STUDIES = {"accuracy": accuracy_study, "sliced": sliced_study, "paper_scale": paper_scale_study,
           "timing": timing_study}


def study_config(name: str, sizes: dict) -> dict:
    """The frozen config of a study from a ``SIZES`` entry."""
    if name == "accuracy":
        args = {"ns": sizes["ns"], "rhos": sizes["rhos"], "repeats": sizes["repeats"],
                "mine_repeats": sizes["mine_repeats"], "mine": sizes["mine"]}
    elif name == "sliced":
        args = {"dims": sizes["dims"], "rho": 0.9, "n": sizes["sliced_n"], "slices": sizes["slices"],
                "mine_slices": sizes["mine_slices"], "mine": sizes["mine"]}
    elif name == "paper_scale":
        args = {"n": sizes["paper_n"], "slices": sizes["paper_slices"]}
    elif name == "timing":
        args = {"slices": sizes["timing_slices"], "classes": sizes["timing_classes"], "mine": sizes["mine"]}
    else:
        raise ValueError(f"unknown study {name!r}; choose one of {', '.join(STUDIES)}")
    # settings added later stay out at their default, so the studies keep their addresses
    return {"study": name, "args": args,
            "estimators": {k: est.estimator_address(k, est.estimator_settings(k)) for k in ESTIMATORS}}


def study(name: str, sizes: dict, store: RunStore | None = None, progress: bool = True) -> dict:
    """Record of validation study ``name`` (computed if missing)."""
    store = store or RunStore()
    cfg = study_config(name, sizes)

    def compute(ctx):
        torch.manual_seed(0)
        np.random.seed(0)
        return {"metrics": {"result": STUDIES[name](**cfg["args"], progress=progress)}}

    return store.get_or_compute("validation", cfg, compute, device="cpu", seed=0)
