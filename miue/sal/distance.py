"""The learnable threshold β (SAL/UD Eq. 4), the learnable-parameter count #LP and the unlearnable distance UD
(Eq. 5): arithmetic on SAL values, no model."""

from __future__ import annotations

import math

import numpy as np


def _matrix(values) -> np.ndarray:
    """SAL values as an (epochs × layers) float array from an array, list of lists or list of dicts."""
    if isinstance(values, dict):
        values = [values]
    if isinstance(values, (list, tuple)) and values and isinstance(values[0], dict):
        keys = list(values[0])
        if any(set(v) != set(keys) for v in values):
            raise ValueError("every epoch's SAL dict must have the same layers")
        values = [[v[k] for k in keys] for v in values]
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.size == 0 or not np.isfinite(arr).all():
        raise ValueError(f"SAL values must be a non-empty finite (epochs × layers) array, got shape {arr.shape}")
    return arr


def learnable_threshold(values) -> float:
    """Learnable threshold β (SAL/UD Eq. 4) from the clean model's SALs.

    ``values``: one epoch's layer SALs (1-D) or epochs × layers (2-D array, or a list of per-epoch dicts
    layer → SAL). Per epoch, the layer SALs are split by 2-means (scikit-learn KMeans, n_init=10,
    random_state=0) and the two centres averaged; β is the mean of that over the epochs.
    """
    from sklearn.cluster import KMeans
    arr = _matrix(values)
    if arr.shape[1] < 2:
        raise ValueError(f"2-means needs at least two layer SALs per epoch, got {arr.shape[1]}")
    out = []
    for row in arr:
        if np.ptp(row) == 0:  # one distinct value: both centres coincide with it
            out.append(float(row[0]))
            continue
        km = KMeans(n_clusters=2, n_init=10, random_state=0).fit(row.reshape(-1, 1))
        out.append(float(km.cluster_centers_.mean()))
    return float(np.mean(out))


def learnable_counts(values, beta: float, sizes: dict | None = None) -> np.ndarray:
    """λ(SAL(θ, ε, t), β) of Eq. 5 for each epoch: the number of layers whose SAL exceeds ``beta``.

    With ``sizes`` (layer → number of weights; ``values`` then as per-epoch dicts) each learnable layer counts
    its number of scalar weights instead (a variant; the paper counts layers).
    """
    if isinstance(beta, bool) or not (isinstance(beta, (int, float, np.floating)) and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number, got {beta!r}")
    if sizes is None:
        return (_matrix(values) > beta).sum(axis=1).astype(float)
    if isinstance(values, dict):
        values = [values]
    if not (isinstance(values, (list, tuple)) and values and all(isinstance(v, dict) for v in values)):
        raise ValueError("with sizes, values must be per-epoch dicts layer → SAL")
    return np.array([sum(sizes[k] for k, s in v.items() if s > beta) for v in values], dtype=float)


def learnable_parameters(values, beta: float, sizes: dict | None = None) -> float:
    """#LP: the mean over the measured epochs of :func:`learnable_counts` (unit: layers, or weights with sizes)."""
    return float(learnable_counts(values, beta, sizes).mean())


def unlearnable_distance(lp_poisoned: float, lp_clean: float) -> float:
    """UD (SAL/UD Eq. 5): #LP of the poisoned model over #LP of the clean model (same architecture, same β)."""
    for name, v in (("lp_poisoned", lp_poisoned), ("lp_clean", lp_clean)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if lp_clean == 0:
        raise ValueError("lp_clean is 0: the clean model has no learnable layer above β, so UD is undefined")
    return float(lp_poisoned) / float(lp_clean)
