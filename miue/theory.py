"""The paper's two theorems on Gaussian features, where every term can be computed (Sec. 5.1, App. A, App. B).

The feature model (:class:`FeatureModel`): a label Y with prior p_Y over C classes; clean features
Z | Y ~ N(μ_Y, Σ_1,Y) (or, with ``modes``, an equal-weight mixture of such Gaussians around μ_Y); poisoned
features Z' = A_Y Z + b_Y + N(0, Σ_N,Y), the noise independent of Z. Given Y the pair is jointly Gaussian,
so Σ_Y = Cov(Z' | Y) = A_Y Cov(Z | Y) A_Yᵀ + Σ_N,Y, H(Z' | Z, Y) = ½ log det(2πe Σ_N,Y) (Lemma B.1) and

    I(Z; Z' | Y = y) = ½ log det Σ_y − ½ log det Σ_N,y                     (the Gaussian-pair MI)

in closed form. :meth:`FeatureModel.from_poison_covariance` builds A_Y from a prescribed Σ_Y, so the poisoned
intra-class covariance, the class-mean separation and the dimension d are the knobs. The unconditional
I(Z; Z') of the mixture has no closed form: :func:`mc_mi` estimates it by Monte Carlo on exact
log-densities (with its standard error) and :func:`mi_bounds` brackets it by I(Z; Z' | Y) ± H(Y).

Theorem 5.1 (Eq. 1 / Eq. 8): I(Z, Z') ≤ d/2·log(2πe) + ½ E_Y log det Σ_Y + H(Z' | Z) + E_Y C_Y √ε, with
C_Y = √2 max_{u ∈ [m_Y, M_Y]} |log u| + 1 (:func:`theorem_5_1` returns every term). Its proof (Eq. 9–11)
establishes the bound with −H(Z' | Z), for E_Y I(Z; Z' | Y); :class:`Theorem51` carries the stated, the
proved and a corrected form (the chapter "The theorems on examples" discusses the differences).

Theorem A.3 (Eq. 6): R_D(f) ≤ R_D'(f) − 4 I(Z, Z') + 4 H(Y) + ½ d_HΔH(p(Z), p(Z')) when Z' | Y = Z | Y +
N(μ_2,Y, Σ_2,Y) and det Σ_2,Y ≥ (2/(πe))^d. :class:`ShortcutSetting` is a binary instance of those
assumptions with a linear classifier, where the 0–1 risks on D and D' are closed forms.

All logarithms are natural (nats), as in ``miue.estimators``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LOG_2PIE = math.log(2 * math.pi * math.e)


# ----------------------------------------------------------------------------------------------- checks
def _array(name: str, value, ndim: int) -> np.ndarray:
    try:
        a = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array, got {value!r}") from exc
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return a


def _check_shape(name: str, a: np.ndarray, shape: tuple) -> None:
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")


def _check_covs(name: str, covs: np.ndarray, strict: bool = True) -> None:
    """Each matrix covs[i] must be symmetric and positive definite (semi-definite if not ``strict``)."""
    for i, c in enumerate(covs):
        scale = max(1.0, float(np.abs(c).max()))
        if not np.allclose(c, c.T, atol=1e-10 * scale, rtol=0):
            raise ValueError(f"{name}[{i}] must be symmetric")
        lo = float(np.linalg.eigvalsh((c + c.T) / 2).min())
        if (lo <= 0) if strict else (lo < -1e-10 * scale):
            kind = "positive definite" if strict else "positive semi-definite"
            raise ValueError(f"{name}[{i}] must be {kind}, its smallest eigenvalue is {lo:.3g}")


def _logdet(c: np.ndarray) -> float:
    sign, val = np.linalg.slogdet(c)
    if sign <= 0:
        raise ValueError("covariance matrix is not positive definite")
    return float(val)


def _sqrtm_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _std_normal_cdf(x):
    return 0.5 * np.vectorize(math.erfc)(-np.asarray(x, dtype=np.float64) / math.sqrt(2))


# ----------------------------------------------------------------------------------- Gaussian identities
def gaussian_entropy(cov) -> float:
    """Lemma B.1 (Eq. 7): H(N(μ, Σ)) = ½ log det(2πe Σ) = d/2·log(2πe) + ½ log det Σ, in nats."""
    c = _array("cov", np.atleast_2d(cov), 2)
    if c.shape[0] != c.shape[1]:
        raise ValueError(f"cov has shape {c.shape}, expected a square matrix")
    _check_covs("cov", c[None])
    return 0.5 * c.shape[0] * LOG_2PIE + 0.5 * _logdet(c)


def gaussian_pair_mi(cov_x, cov_y, cross) -> float:
    """Exact I(X; Y) of a jointly Gaussian pair with Cov X = Σ_x, Cov Y = Σ_y, Cov(X, Y) = ``cross``:
    ½ log det Σ_y − ½ log det Σ_{y|x}, Σ_{y|x} = Σ_y − Σ_xyᵀ Σ_x⁻¹ Σ_xy (nats)."""
    cx, cy = _array("cov_x", np.atleast_2d(cov_x), 2), _array("cov_y", np.atleast_2d(cov_y), 2)
    xy = _array("cross", np.atleast_2d(cross), 2)
    _check_shape("cross", xy, (cx.shape[0], cy.shape[0]))
    joint = np.block([[cx, xy], [xy.T, cy]])
    _check_covs("joint covariance [[cov_x, cross], [crossᵀ, cov_y]]", joint[None])
    cond = cy - xy.T @ np.linalg.solve(cx, xy)
    return 0.5 * (_logdet(cy) - _logdet(cond))


def c_y(m: float, big_m: float) -> float:
    """Theorem 5.1's constant C_Y = √2·max_{u ∈ [m_Y, M_Y]} |log u| + 1 for densities between m_Y and M_Y.

    |log u| is largest at an end of the interval. A density on all of ℝ^d has infimum m_Y = 0, so C_Y = ∞.
    """
    if not (isinstance(m, (int, float)) and isinstance(big_m, (int, float))) or not 0 <= m <= big_m:
        raise ValueError(f"need 0 <= m_Y <= M_Y, got m_Y={m!r}, M_Y={big_m!r}")
    if m == 0:
        return math.inf
    return math.sqrt(2) * max(abs(math.log(m)), abs(math.log(big_m))) + 1


def _mvn_logpdf(x: np.ndarray, mean: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """log N(x; mean, LLᵀ) for rows of x."""
    sol = np.linalg.solve(chol, (x - mean).T)  # (D, n)
    return -0.5 * (sol * sol).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * len(mean) * math.log(2 * math.pi)


def _mixture_logpdf(x: np.ndarray, means: np.ndarray, chols: np.ndarray, logw: np.ndarray) -> np.ndarray:
    parts = np.stack([lw + _mvn_logpdf(x, m, c) for m, c, lw in zip(means, chols, logw)])  # (M, n)
    top = parts.max(0)
    return top + np.log(np.exp(parts - top).sum(0))


# ---------------------------------------------------------------------------------------- feature model
@dataclass(frozen=True, eq=False)
class FeatureModel:
    """Clean features Z | Y ~ N(μ_Y, Σ_1,Y), poisoned Z' = A_Y Z + b_Y + N(0, Σ_N,Y), Y ~ p_Y.

    Shapes (C classes, d dimensions, K modes): ``means`` (C, d); ``clean_covs``, ``maps``, ``noise_covs``
    (C, d, d); ``offsets`` (C, d); ``priors`` (C,); ``modes`` (C, K, d): with K > 1, Z | Y is the
    equal-weight mixture of N(μ_Y + modes[Y, k], Σ_1,Y) — a non-Gaussian class (Theorem 5.1's ε > 0).
    Use :func:`feature_model` to build one with validation and defaults.
    """

    means: np.ndarray
    clean_covs: np.ndarray
    maps: np.ndarray
    offsets: np.ndarray
    noise_covs: np.ndarray
    priors: np.ndarray
    modes: np.ndarray

    # -- sizes and moments
    @property
    def d(self) -> int:
        return self.means.shape[1]

    @property
    def n_classes(self) -> int:
        return self.means.shape[0]

    @property
    def n_modes(self) -> int:
        return self.modes.shape[1]

    @property
    def is_gaussian(self) -> bool:
        """Whether every class is a single Gaussian (then ε = 0 in Theorem 5.1 and the MI is closed form)."""
        return self.n_modes == 1 and not self.modes.any()

    @property
    def clean_class_means(self) -> np.ndarray:
        return self.means + self.modes.mean(1)

    @property
    def clean_class_covs(self) -> np.ndarray:
        """Cov(Z | Y): Σ_1,Y plus the spread of the modes."""
        centred = self.modes - self.modes.mean(1, keepdims=True)
        return self.clean_covs + np.einsum("cki,ckj->cij", centred, centred) / self.n_modes

    @property
    def poison_means(self) -> np.ndarray:
        return np.einsum("cij,cj->ci", self.maps, self.clean_class_means) + self.offsets

    @property
    def poison_covs(self) -> np.ndarray:
        """Σ_Y = Cov(Z' | Y) = A_Y Cov(Z | Y) A_Yᵀ + Σ_N,Y: the intra-class covariance of Theorem 5.1."""
        return self.maps @ self.clean_class_covs @ self.maps.transpose(0, 2, 1) + self.noise_covs

    @property
    def label_entropy(self) -> float:
        """H(Y) in nats."""
        p = self.priors[self.priors > 0]
        return float(-(p * np.log(p)).sum())

    # -- transformations
    def scaled(self, s: float) -> FeatureModel:
        """The model with Σ_Y replaced by s·Σ_Y, holding μ_Y, Σ_1,Y, the poisoned class means, the modes
        and the conditional noise Σ_N,Y (so H(Z' | Z) is constant, as Remark 5.2 takes it)."""
        if not isinstance(s, (int, float)) or not s > 0:
            raise ValueError(f"scale s must be a positive number, got {s!r}")
        return from_poison_covariance(self.means, self.clean_covs, s * self.poison_covs, self.noise_covs,
                                      poison_means=self.poison_means, priors=self.priors, modes=self.modes)

    def rescaled_features(self, s: float) -> FeatureModel:
        """Z' → √s·Z': Σ_Y and Σ_N,Y both scale by s. Every MI is unchanged (MI is invariant to invertible
        maps of Z'); H(Z' | Z) falls by d/2·log(1/s)."""
        if not isinstance(s, (int, float)) or not s > 0:
            raise ValueError(f"scale s must be a positive number, got {s!r}")
        r = math.sqrt(s)
        return FeatureModel(self.means, self.clean_covs, r * self.maps, r * self.offsets, s * self.noise_covs,
                            self.priors, self.modes)

    # -- components of the joint mixture over (Z, Z')
    def _components(self, part: str, classes=None):
        """Means, Cholesky factors and log-weights of the mixture components of 'joint' (Z, Z'), 'clean' Z
        or 'poisoned' Z' (restricted to ``classes``, weights renormalized to the class when one is given)."""
        classes = range(self.n_classes) if classes is None else classes
        means, chols, logw = [], [], []
        for y in classes:
            a, s1, sn = self.maps[y], self.clean_covs[y], self.noise_covs[y]
            joint_cov = np.block([[s1, s1 @ a.T], [a @ s1, a @ s1 @ a.T + sn]])
            for k in range(self.n_modes):
                m = self.means[y] + self.modes[y, k]
                jm = np.concatenate([m, a @ m + self.offsets[y]])
                sl = {"joint": slice(None), "clean": slice(0, self.d), "poisoned": slice(self.d, None)}[part]
                means.append(jm[sl])
                chols.append(np.linalg.cholesky(joint_cov[sl, sl]))
                logw.append(math.log(self.priors[y]) - math.log(self.n_modes) if self.priors[y] > 0 else -np.inf)
        logw = np.array(logw)
        if len(list(classes)) == 1:
            logw = logw - math.log(np.exp(logw).sum())
        return np.array(means), np.array(chols), logw

    def log_density(self, part: str, x: np.ndarray, given_class: int | None = None) -> np.ndarray:
        """Exact log-density of 'joint' [z, z'] (n, 2d), 'clean' z or 'poisoned' z' (n, d) rows, optionally
        given Y = ``given_class``."""
        if part not in ("joint", "clean", "poisoned"):
            raise ValueError(f"part must be 'joint', 'clean' or 'poisoned', got {part!r}")
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        width = 2 * self.d if part == "joint" else self.d
        if x.shape[1] != width:
            raise ValueError(f"{part} points must have {width} columns, got shape {x.shape}")
        classes = None if given_class is None else [int(given_class)]
        return _mixture_logpdf(x, *self._components(part, classes))

    # -- sampling
    def sample(self, n: int, seed: int = 0, labels=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` draws (z, z', y): y ~ p_Y (or the given ``labels``), z | y from its class, z' = A_y z + b_y + noise."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        rng = np.random.default_rng(seed)
        if labels is None:
            y = rng.choice(self.n_classes, size=n, p=self.priors)
        else:
            y = np.asarray(labels, dtype=np.int64)
            if y.shape != (n,) or y.min() < 0 or y.max() >= self.n_classes:
                raise ValueError(f"labels must be n={n} class indices in [0, {self.n_classes})")
        k = rng.integers(self.n_modes, size=n)
        e1, e2 = rng.standard_normal((n, self.d)), rng.standard_normal((n, self.d))
        l1, ln = np.linalg.cholesky(self.clean_covs), np.linalg.cholesky(self.noise_covs)
        z = self.means[y] + self.modes[y, k] + np.einsum("nij,nj->ni", l1[y], e1)
        zp = np.einsum("nij,nj->ni", self.maps[y], z) + self.offsets[y] + np.einsum("nij,nj->ni", ln[y], e2)
        return z, zp, y

    def sample_balanced(self, n_per_class: int, seed: int = 0):
        """``n_per_class`` draws of every class (labels in class order)."""
        if not isinstance(n_per_class, int) or n_per_class < 1:
            raise ValueError(f"n_per_class must be a positive integer, got {n_per_class!r}")
        labels = np.repeat(np.arange(self.n_classes), n_per_class)
        return self.sample(len(labels), seed, labels=labels)


def feature_model(means, clean_covs=None, maps=None, offsets=None, noise_covs=None, priors=None,
                  modes=None) -> FeatureModel:
    """A validated :class:`FeatureModel`. Defaults: Σ_1,Y = I, A_Y = I, b_Y = 0, Σ_N,Y = I, uniform p_Y,
    one mode per class. A single (d, d) matrix for a covariance or map is used for every class."""
    mu = _array("means", means, 2)
    c, d = mu.shape
    if c < 1 or d < 1:
        raise ValueError(f"means must have shape (C, d) with C, d >= 1, got {mu.shape}")

    def per_class(name, value, default):
        if value is None:
            return np.broadcast_to(default, (c, d, d)).copy()
        a = _array(name, value, 2 if np.ndim(value) == 2 else 3)
        if a.ndim == 2:
            _check_shape(name, a, (d, d))
            return np.broadcast_to(a, (c, d, d)).copy()
        _check_shape(name, a, (c, d, d))
        return a

    eye = np.eye(d)
    s1 = per_class("clean_covs", clean_covs, eye)
    a = per_class("maps", maps, eye)
    sn = per_class("noise_covs", noise_covs, eye)
    _check_covs("clean_covs", s1)
    _check_covs("noise_covs", sn)
    b = np.zeros((c, d)) if offsets is None else _array("offsets", offsets, 2)
    _check_shape("offsets", b, (c, d))
    p = np.full(c, 1.0 / c) if priors is None else _array("priors", priors, 1)
    _check_shape("priors", p, (c,))
    if (p < 0).any() or abs(p.sum() - 1) > 1e-9:
        raise ValueError(f"priors must be non-negative and sum to 1, got {p}")
    mo = np.zeros((c, 1, d)) if modes is None else _array("modes", modes, 3)
    if mo.shape[0] != c or mo.shape[2] != d:
        raise ValueError(f"modes has shape {mo.shape}, expected ({c}, K, {d})")
    return FeatureModel(mu, (s1 + s1.transpose(0, 2, 1)) / 2, a, b, (sn + sn.transpose(0, 2, 1)) / 2, p, mo)


def from_poison_covariance(means, clean_covs, poison_covs, noise_covs, poison_means=None, priors=None,
                           modes=None) -> FeatureModel:
    """The model whose poisoned features have intra-class covariance Σ_Y = ``poison_covs`` and conditional
    noise Σ_N,Y = ``noise_covs`` (needs Σ_Y − Σ_N,Y positive semi-definite): A_Y = (Σ_Y − Σ_N,Y)^½ Cov(Z|Y)^−½,
    and b_Y puts the poisoned class means at ``poison_means`` (default: the clean class means)."""
    base = feature_model(means, clean_covs, None, None, noise_covs, priors, modes)
    c, d = base.means.shape
    sy = _array("poison_covs", poison_covs, 2 if np.ndim(poison_covs) == 2 else 3)
    _check_shape("poison_covs", sy, (d, d) if sy.ndim == 2 else (c, d, d))
    sy = np.broadcast_to(sy, (c, d, d)).copy()
    _check_covs("poison_covs", sy)
    diff = sy - base.noise_covs
    for y in range(c):
        lo = float(np.linalg.eigvalsh((diff[y] + diff[y].T) / 2).min())
        if lo < -1e-10 * max(1.0, float(np.abs(sy[y]).max())):
            raise ValueError(f"poison_covs[{y}] − noise_covs[{y}] must be positive semi-definite (Σ_Y must "
                             f"dominate the conditional noise), its smallest eigenvalue is {lo:.3g}")
    cc = base.clean_class_covs
    maps = np.stack([_sqrtm_psd(diff[y]) @ np.linalg.inv(_sqrtm_psd(cc[y])) for y in range(c)])
    target = base.clean_class_means if poison_means is None else _array("poison_means", poison_means, 2)
    _check_shape("poison_means", target, (c, d))
    offsets = target - np.einsum("cij,cj->ci", maps, base.clean_class_means)
    return FeatureModel(base.means, base.clean_covs, maps, offsets, base.noise_covs, base.priors, base.modes)


def random_spd(d: int, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """A random rotation of diag(eigenvalues uniform in [low, high])."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q = q * np.sign(np.diag(r))
    return (q * rng.uniform(low, high, d)) @ q.T


def make_model(d: int = 4, n_classes: int = 4, shift: float = 3.0, sigma_scale: float = 1.0,
               noise: float = 0.1, spread: tuple[float, float] = (1.0, 2.0), split: float = 0.0,
               seed: int = 0) -> FeatureModel:
    """An example: class means shift·u_Y (u_Y orthonormal when C ≤ d, random unit vectors otherwise) for
    both Z and Z'; Σ_1,Y = I; Σ_Y = sigma_scale·R_Y with R_Y random SPD, eigenvalues in ``spread``; Σ_N,Y =
    noise·I (needs noise ≤ sigma_scale·spread[0]); ``split`` > 0 makes each clean class two modes at
    μ_Y ± split·v_Y (v_Y a random unit vector)."""
    for name, v in (("d", d), ("n_classes", n_classes), ("seed", seed)):
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "seed" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} integer, got {v!r}")
    for name, v in (("shift", shift), ("split", split)):
        if not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{name} must be a non-negative number, got {v!r}")
    if not isinstance(sigma_scale, (int, float)) or not isinstance(noise, (int, float)) or sigma_scale <= 0 or noise <= 0:
        raise ValueError(f"sigma_scale and noise must be positive numbers, got {sigma_scale!r}, {noise!r}")
    if not 0 < spread[0] <= spread[1]:
        raise ValueError(f"spread must be (low, high) with 0 < low <= high, got {spread!r}")
    if noise > sigma_scale * spread[0]:
        raise ValueError(f"noise ({noise:g}) must not exceed sigma_scale·spread[0] ({sigma_scale * spread[0]:g}): "
                         "Σ_Y must dominate the conditional noise")
    rng = np.random.default_rng(seed)
    if n_classes <= d:
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        dirs = q[:, :n_classes].T
    else:
        dirs = rng.standard_normal((n_classes, d))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    means = shift * dirs
    sy = np.stack([sigma_scale * random_spd(d, *spread, rng) for _ in range(n_classes)])
    modes = None
    if split > 0:
        v = rng.standard_normal((n_classes, d))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        modes = np.stack([split * v, -split * v], axis=1)
    return from_poison_covariance(means, np.eye(d), sy, noise * np.eye(d), poison_means=means, modes=modes)


# --------------------------------------------------------------------------------------- information
def conditional_entropy(model: FeatureModel) -> float:
    """H(Z' | Z, Y) = E_Y ½ log det(2πe Σ_N,Y), exact for every model (Lemma B.1). It equals Theorem 5.1's
    H(Z' | Z) when Y is a function of Z (the paper's class-wise separable features, App. F)."""
    return float(sum(p * gaussian_entropy(c) for p, c in zip(model.priors, model.noise_covs) if p > 0))


def conditional_mi(model: FeatureModel, per_class: bool = False):
    """Exact E_Y I(Z; Z' | Y) = E_Y [½ log det Σ_Y − ½ log det Σ_N,Y] for Gaussian classes (the quantity the
    paper's estimators measure, App. F). ``per_class`` returns the (C,) array instead of the average."""
    if not model.is_gaussian:
        raise ValueError("the conditional MI is closed-form only for Gaussian classes (one mode); use mc_mi")
    vals = np.array([0.5 * (_logdet(sy) - _logdet(sn)) for sy, sn in zip(model.poison_covs, model.noise_covs)])
    return vals if per_class else float((model.priors * vals).sum())


def mi_bounds(model: FeatureModel) -> tuple[float, float]:
    """Deterministic bracket of the unconditional I(Z; Z'): I(Z; Z' | Y) ± H(Y), floored at 0.

    From I(Z; Z') = I(Z; Z' | Y) + I(Z; Y) − I(Z; Y | Z') with 0 ≤ I(Z; Y), I(Z; Y | Z') ≤ H(Y).
    """
    i_c, h_y = conditional_mi(model), model.label_entropy
    return max(0.0, i_c - h_y), i_c + h_y


def _check_mc(n: int, seed: int) -> None:
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}")


def mc_mi(model: FeatureModel, n: int = 20000, seed: int = 0, conditional: bool = False) -> tuple[float, float]:
    """Monte-Carlo MI on exact log-densities: mean of log p(z, z') − log p(z) − log p(z') over n draws
    (``conditional``: the class-conditional densities, giving E_Y I(Z; Z' | Y)). Returns (estimate, standard
    error); the estimate is unbiased, its error ~ N(0, se²) for large n."""
    _check_mc(n, seed)
    z, zp, y = model.sample(n, seed)
    zz = np.concatenate([z, zp], axis=1)
    if conditional:
        vals = np.empty(n)
        for c in range(model.n_classes):
            m = y == c
            if m.any():
                vals[m] = (model.log_density("joint", zz[m], c) - model.log_density("clean", z[m], c)
                           - model.log_density("poisoned", zp[m], c))
    else:
        vals = model.log_density("joint", zz) - model.log_density("clean", z) - model.log_density("poisoned", zp)
    return float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(n))


def kl_gaussian_to_class(model: FeatureModel, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Theorem 5.1's ε_Y = KL(N(μ_Y, Σ_Y) ‖ p(Z' | Y)) with (μ_Y, Σ_Y) the moments of Z' | Y, by Monte Carlo
    from the Gaussian: per-class estimates and standard errors, shapes (C,). Zero for Gaussian classes."""
    _check_mc(n, seed)
    rng = np.random.default_rng(seed)
    est, se = np.zeros(model.n_classes), np.zeros(model.n_classes)
    if model.is_gaussian:
        return est, se
    for c in range(model.n_classes):
        mu, sy = model.poison_means[c], model.poison_covs[c]
        chol = np.linalg.cholesky(sy)
        x = mu + rng.standard_normal((n, model.d)) @ chol.T
        vals = _mvn_logpdf(x, mu, chol) - model.log_density("poisoned", x, c)
        est[c], se[c] = vals.mean(), vals.std(ddof=1) / math.sqrt(n)
    return est, se


def sliced_gaussian_mi(model: FeatureModel, n_directions: int = 20000, seed: int = 0,
                       shared: bool = False) -> tuple[float, float]:
    """The true value of the paper's sliced MI (App. F, Eq. 17) for Gaussian classes: E_Y E_{θ,φ}
    I(θᵀZ; φᵀZ' | Y) = E −½ log(1 − ρ²), ρ the within-class correlation of the projections, θ and φ
    independent uniform unit vectors (``shared``: φ = θ). Monte Carlo over directions: (value, standard error)."""
    if not model.is_gaussian:
        raise ValueError("the sliced MI is closed-form per direction only for Gaussian classes")
    _check_mc(n_directions, seed)
    rng = np.random.default_rng(seed)
    th = rng.standard_normal((n_directions, model.d))
    th /= np.linalg.norm(th, axis=1, keepdims=True)
    ph = th if shared else rng.standard_normal((n_directions, model.d))
    if not shared:
        ph /= np.linalg.norm(ph, axis=1, keepdims=True)
    vals = np.zeros(n_directions)
    for p, s1, a, sy in zip(model.priors, model.clean_covs, model.maps, model.poison_covs):
        cross = s1 @ a.T  # Cov(Z, Z' | Y)
        num = np.einsum("ni,ij,nj->n", th, cross, ph)
        rho2 = num ** 2 / (np.einsum("ni,ij,nj->n", th, s1, th) * np.einsum("ni,ij,nj->n", ph, sy, ph))
        vals += p * -0.5 * np.log1p(-np.minimum(rho2, 1 - 1e-15))
    return float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(n_directions))


def sliced_mi_on_directions(model: FeatureModel, th_dirs: np.ndarray, ph_dirs: np.ndarray) -> np.ndarray:
    """The exact sliced MI of Gaussian classes on given slices: for each class c and slice k,
    I(θ_kᵀZ; φ_kᵀZ' | Y = c) = −½ log(1 − ρ²) (App. F, Eq. 17, before the mean over slices); shape (C, slices).
    What a finite-slice estimate should be compared with, since few slices move the target itself."""
    if not model.is_gaussian:
        raise ValueError("the sliced MI is closed-form per direction only for Gaussian classes")
    out = []
    for c in range(model.n_classes):
        cross = model.clean_covs[c] @ model.maps[c].T
        num = th_dirs @ cross @ ph_dirs.T
        var_a = np.einsum("si,ij,sj->s", th_dirs, model.clean_covs[c], th_dirs)
        var_b = np.einsum("si,ij,sj->s", ph_dirs, model.poison_covs[c], ph_dirs)
        rho2 = np.diag(num) ** 2 / (var_a * var_b)
        out.append(-0.5 * np.log1p(-rho2))
    return np.array(out)


# -------------------------------------------------------------------------------------------- Theorem 5.1
@dataclass(frozen=True)
class Theorem51:
    """Every term of Theorem 5.1 (Eq. 1) for a model, and the bound in three forms.

    * ``as_stated`` (Eq. 1): constant + logdet + cond_entropy + eps_term.
    * ``as_proved`` (Eq. 10 with Eq. 11): constant + logdet − cond_entropy + eps_term, a bound on
      E_Y I(Z; Z' | Y) (the proof's Eq. 9 writes this for I(Z, Z')); equality for Gaussian classes when Σ_Y
      is their covariance.
    * ``corrected``: as_proved + H(Y), a bound on the unconditional I(Z; Z') (I(Z; Z') ≤ I(Z; Z' | Y) + H(Y)).
    """

    constant: float  # d/2·log(2πe)
    logdet: float  # ½ E_Y log det Σ_Y
    cond_entropy: float  # H(Z' | Z) (here H(Z' | Z, Y), see conditional_entropy)
    eps_term: float  # E_Y C_Y √ε
    label_entropy: float  # H(Y)

    @property
    def as_stated(self) -> float:
        return self.constant + self.logdet + self.cond_entropy + self.eps_term

    @property
    def as_proved(self) -> float:
        return self.constant + self.logdet - self.cond_entropy + self.eps_term

    @property
    def corrected(self) -> float:
        return self.as_proved + self.label_entropy


def theorem_5_1(model: FeatureModel, eps=0.0, density_range=None, cond_entropy: float | None = None) -> Theorem51:
    """The terms of Theorem 5.1 with Σ_Y = Cov(Z' | Y) of ``model``.

    ``eps``: ε (a number or one per class, 0 ≤ ε < 1). ``density_range``: (m_Y, M_Y) bounds of p(Z' | Y)
    for C_Y (one pair or one per class); by default m_Y = 0 (a density on ℝ^d), so C_Y = ∞ and the term is
    ∞ for ε > 0 and 0 for ε = 0 (where Eq. 11 reads 0 ≤ 0). ``cond_entropy`` overrides H(Z' | Z) (default:
    H(Z' | Z, Y), exact).
    """
    c = model.n_classes
    try:
        e = np.full(c, float(eps)) if np.ndim(eps) == 0 else np.array(eps, dtype=np.float64)
    except (TypeError, ValueError):
        e = None
    if e is None or e.shape != (c,) or not ((e >= 0) & (e < 1)).all():
        raise ValueError(f"eps must be a number or {c} numbers in [0, 1), got {eps!r}")
    if density_range is None:
        ranges = [(0.0, math.inf)] * c
    elif np.ndim(density_range) == 1:
        ranges = [tuple(density_range)] * c
    else:
        ranges = [tuple(r) for r in density_range]
    if len(ranges) != c:
        raise ValueError(f"density_range must be one (m_Y, M_Y) pair or {c} pairs")
    terms = []
    for ey, (m, big_m) in zip(e, ranges):
        terms.append(0.0 if ey == 0 else c_y(float(m), float(big_m)) * math.sqrt(ey))
    logdets = np.array([_logdet(s) for s in model.poison_covs])
    h = conditional_entropy(model) if cond_entropy is None else float(cond_entropy)
    return Theorem51(constant=0.5 * model.d * LOG_2PIE, logdet=float(0.5 * (model.priors * logdets).sum()),
                     cond_entropy=h, eps_term=float((model.priors * np.array(terms)).sum()),
                     label_entropy=model.label_entropy)


# -------------------------------------------------------------------------------------------- Theorem A.3
A3_DET_THRESHOLD_LOG = math.log(2 / (math.pi * math.e))  # log of 2/(πe) per dimension


@dataclass(frozen=True, eq=False)
class ShortcutSetting:
    """Binary features under Theorem A.3's assumptions: Z | Y ~ N(μ_1,Y, Σ_1), Z' | Y = Z | Y + N(μ_2,Y, Σ_2)
    (noise independent of Z), g the identity (so H(g((X+X')/2)) = H((Z+Z')/2) and the entropy assumption
    holds with equality), h the linear Bayes rule for D' (LDA on the poisoned features), equal priors.

    ``shifts`` (2, d) are the class-wise poison means μ_2,Y: a shift along a direction that carries no clean
    class information is a linear shortcut.
    """

    clean_means: np.ndarray
    clean_cov: np.ndarray
    shifts: np.ndarray
    noise_cov: np.ndarray

    @property
    def d(self) -> int:
        return self.clean_means.shape[1]

    def model(self) -> FeatureModel:
        return feature_model(self.clean_means, self.clean_cov, np.eye(self.d), self.shifts, self.noise_cov,
                             priors=[0.5, 0.5])

    def classifier(self) -> tuple[np.ndarray, float]:
        """(w, c) of f(z) = 1[wᵀz + c > 0]: LDA on D' (shared covariance Σ_1 + Σ_2, equal priors)."""
        m0, m1 = self.clean_means + self.shifts
        w = np.linalg.solve(self.clean_cov + self.noise_cov, m1 - m0)
        return w, float(-w @ (m0 + m1) / 2)

    def risk(self, on: str, w=None, c=None) -> float:
        """Exact 0–1 risk of f on 'clean' D (Z) or 'poisoned' D' (Z'): ½ Σ_y Φ(∓(wᵀm_y + c)/√(wᵀSw))."""
        if on not in ("clean", "poisoned"):
            raise ValueError(f"on must be 'clean' or 'poisoned', got {on!r}")
        if w is None:
            w, c = self.classifier()
        means = self.clean_means + (self.shifts if on == "poisoned" else 0)
        cov = self.clean_cov + (self.noise_cov if on == "poisoned" else 0)
        sd = math.sqrt(float(w @ cov @ w))
        margin = (means @ w + c) / sd
        return float(0.5 * (_std_normal_cdf(margin[0]) + _std_normal_cdf(-margin[1])))

    def det_condition(self) -> bool:
        """Theorem A.3's condition det Σ_2,Y ≥ (2/(πe))^d."""
        return _logdet(self.noise_cov) >= self.d * A3_DET_THRESHOLD_LOG

    def key_step(self) -> dict:
        """The proof's per-class inequality I(Z; Z' | Y) ≤ H((Z+Z')/2 | Y): both sides, the right side with
        the correct covariance Σ_1 + Σ_2/4 and with the proof's (2Σ_1 + Σ_2)/4."""
        s1, s2 = self.clean_cov, self.noise_cov
        return {"I(Z;Z′|Y)": 0.5 * (_logdet(s1 + s2) - _logdet(s2)),
                "H((Z+Z′)/2|Y)": gaussian_entropy(s1 + s2 / 4),
                "H((Z+Z′)/2|Y), proof covariance": gaussian_entropy((2 * s1 + s2) / 4)}


def shortcut_setting(d: int = 2, separation: float = 1.0, shortcut: float = 1.0, clean_var: float = 1.0,
                     noise_var=0.5) -> ShortcutSetting:
    """Clean class means ±separation·e_1, poison shifts ±shortcut·e_2 (e_1 when d = 1), Σ_1 = clean_var·I,
    Σ_2 = noise_var·I, or diag(noise_var) for a sequence of d variances (noise per axis)."""
    if not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    for name, v in (("separation", separation), ("shortcut", shortcut)):
        if not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{name} must be a non-negative number, got {v!r}")
    if not isinstance(clean_var, (int, float)) or clean_var <= 0:
        raise ValueError(f"clean_var must be a positive number, got {clean_var!r}")
    try:
        nv = np.full(d, float(noise_var)) if np.ndim(noise_var) == 0 else np.array(noise_var, dtype=np.float64)
    except (TypeError, ValueError):
        nv = None
    if nv is None or nv.shape != (d,) or not np.isfinite(nv).all() or (nv <= 0).any():
        raise ValueError(f"noise_var must be a positive number or {d} positive numbers, got {noise_var!r}")
    e1, e2 = np.eye(d)[0], np.eye(d)[min(1, d - 1)]
    means = np.stack([-separation * e1, separation * e1])
    shifts = np.stack([-shortcut * e2, shortcut * e2])
    return ShortcutSetting(means, clean_var * np.eye(d), shifts, np.diag(nv))


def theorem_a3(setting: ShortcutSetting, mi: float, hdh: float = 2.0) -> dict:
    """Both sides of Theorem A.3 (Eq. 6) for ``setting`` with I(Z, Z') = ``mi`` (nats) and d_HΔH = ``hdh``
    (in [0, 2]; 2, its largest value, is the most favourable to the bound).

    Returns the 0–1 risks, the right-hand side, whether det Σ_2 ≥ (2/(πe))^d holds, whether the bound holds
    (risk_clean ≤ rhs) and whether it is vacuous (rhs ≥ 1, no information about a 0–1 risk).
    """
    if not isinstance(mi, (int, float)) or not math.isfinite(mi) or mi < 0:
        raise ValueError(f"mi must be a finite non-negative number, got {mi!r}")
    if not isinstance(hdh, (int, float)) or not 0 <= hdh <= 2:
        raise ValueError(f"hdh (the HΔH-divergence) must be in [0, 2], got {hdh!r}")
    r, rp = setting.risk("clean"), setting.risk("poisoned")
    rhs = rp - 4 * mi + 4 * math.log(2) + 0.5 * hdh
    return {"risk_clean": r, "risk_poisoned": rp, "rhs": rhs, "det_condition": setting.det_condition(),
            "holds": r <= rhs, "vacuous": rhs >= 1}
